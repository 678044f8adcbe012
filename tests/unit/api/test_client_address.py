"""Who the client is: the TCP peer, unless proxies we trust say whom they forward for."""

from __future__ import annotations

import pytest

from api.clients import client_address, limit_key, parse_networks

INGRESS = parse_networks("10.0.0.0/8")


def test_the_peer_is_the_client_when_no_proxy_is_trusted():
    assert client_address("203.0.113.7", "198.51.100.1", ()) == "203.0.113.7"


def test_x_forwarded_for_from_an_untrusted_peer_is_ignored():
    assert client_address("203.0.113.7", "198.51.100.1", INGRESS) == "203.0.113.7"


def test_x_forwarded_for_from_a_trusted_peer_names_the_client():
    assert client_address("10.1.2.3", "198.51.100.1", INGRESS) == "198.51.100.1"


def test_entries_a_client_wrote_itself_left_of_the_proxys_are_ignored():
    assert client_address("10.1.2.3", "1.2.3.4, 5.6.7.8, 198.51.100.1", INGRESS) == "198.51.100.1"


def test_a_chain_of_trusted_proxies_is_followed_to_the_first_untrusted_hop():
    trusted = parse_networks("10.0.0.0/8, 192.168.0.0/16")
    assert client_address("10.1.2.3", "1.2.3.4, 198.51.100.1, 192.168.1.1", trusted) == "198.51.100.1"


def test_a_trusted_proxy_forwarding_garbage_is_taken_as_the_client_itself():
    assert client_address("10.1.2.3", "1.2.3.4, not-an-address", INGRESS) == "10.1.2.3"


def test_a_trusted_peer_without_x_forwarded_for_is_the_client():
    assert client_address("10.1.2.3", None, INGRESS) == "10.1.2.3"


def test_an_ipv4_mapped_ipv6_peer_is_its_ipv4_address():
    assert client_address("::ffff:10.1.2.3", "198.51.100.1", INGRESS) == "198.51.100.1"


@pytest.mark.parametrize(
    ("address", "key"),
    [("203.0.113.7", "203.0.113.7"), ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64")],
)
def test_limits_count_ipv4_addresses_and_ipv6_64s(address, key):
    assert limit_key(address) == key


def test_bad_trusted_proxies_are_refused_at_start():
    from api.config import ApiSettings
    from servicekit import config
    from servicekit.config import ConfigError

    environ = {
        "DATABASE_URL": "postgresql://x",
        "JWT_SECRET": "k" * 32,
        "AUTH_SERVICE_URL": "http://auth",
        "IMAGES_SERVICE_URL": "http://images",
        "TRUSTED_PROXIES": "10.0.0.0/8, 10.0.0.300/32",
    }
    with pytest.raises(ConfigError, match="TRUSTED_PROXIES must be comma-separated CIDRs"):
        config.load(ApiSettings, environ)
