"""Settings come from the environment, and a bad environment stops the service with every reason."""

from __future__ import annotations

import dataclasses

import pytest

from servicekit.config import ConfigError, ServiceSettings, TokenSettings, describe, load

VALID = {"DATABASE_URL": "postgresql+psycopg2://u:p@db:5432/auth_db"}


def test_defaults_apply_when_only_required_settings_are_given():
    settings = load(TokenSettings, VALID)

    assert settings.jwt_issuer == "platform-auth"
    assert settings.db_pool_size == 5
    assert settings.log_level == "INFO"


def test_values_are_converted_to_the_declared_types():
    settings = load(ServiceSettings, {**VALID, "DB_POOL_SIZE": " 12 ", "LOG_LEVEL": "DEBUG"})

    assert settings.db_pool_size == 12
    assert settings.log_level == "DEBUG"


def test_every_problem_is_reported_at_once():
    with pytest.raises(ConfigError) as raised:
        load(ServiceSettings, {"MAX_REQUEST_BYTES": "12", "DB_POOL_SIZE": "many", "LOG_LEVEL": "LOUD"})

    message = str(raised.value)
    assert "DATABASE_URL is required" in message
    assert "MAX_REQUEST_BYTES must be at least 1024, got 12" in message
    assert "DB_POOL_SIZE must be an integer" in message
    assert "LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR" in message


def test_the_shared_settings_hold_no_token_key_or_claim():
    # The api loads only these: it never signs or checks a token itself.
    variables = {variable for variable, _default, _doc in describe(ServiceSettings)}

    assert not {variable for variable in variables if variable.startswith("JWT")}


def test_numbers_below_their_minimum_are_refused():
    with pytest.raises(ConfigError, match="DB_POOL_SIZE must be at least 1"):
        load(ServiceSettings, {**VALID, "DB_POOL_SIZE": "0"})


def test_settings_are_immutable():
    settings = load(ServiceSettings, VALID)
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.log_level = "DEBUG"


def test_every_setting_is_documented():
    for variable, _default, doc in describe(ServiceSettings):
        assert variable.isupper()
        assert doc


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "NaN"])
def test_numbers_that_are_not_finite_are_refused(value):
    from servicekit.config import setting

    @dataclasses.dataclass(frozen=True)
    class WithTimeout(ServiceSettings):
        timeout_seconds: float = setting("TIMEOUT_SECONDS", 2.0, doc="a timeout", minimum=0.1)

    with pytest.raises(ConfigError, match="TIMEOUT_SECONDS must be a number: expected a finite number"):
        load(WithTimeout, {**VALID, "TIMEOUT_SECONDS": value})
