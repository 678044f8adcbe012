"""Settings come from the environment, and a bad environment stops the service with every reason."""

from __future__ import annotations

import dataclasses

import pytest

from servicekit.config import ConfigError, ServiceSettings, describe, load

VALID = {"DATABASE_URL": "postgresql+psycopg2://u:p@db:5432/auth_db", "JWT_SECRET": "k" * 32}


def test_defaults_apply_when_only_required_settings_are_given():
    settings = load(ServiceSettings, VALID)

    assert settings.jwt_issuer == "platform-auth"
    assert settings.db_pool_size == 5
    assert settings.log_level == "INFO"


def test_values_are_converted_to_the_declared_types():
    settings = load(ServiceSettings, {**VALID, "DB_POOL_SIZE": " 12 ", "LOG_LEVEL": "DEBUG"})

    assert settings.db_pool_size == 12
    assert settings.log_level == "DEBUG"


def test_every_problem_is_reported_at_once():
    with pytest.raises(ConfigError) as raised:
        load(ServiceSettings, {"JWT_SECRET": "short", "DB_POOL_SIZE": "many", "LOG_LEVEL": "LOUD"})

    message = str(raised.value)
    assert "DATABASE_URL is required" in message
    assert "JWT_SECRET must be at least 32 bytes long" in message
    assert "DB_POOL_SIZE must be an integer" in message
    assert "LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR" in message


def test_a_jwt_secret_of_31_bytes_is_refused_and_32_accepted():
    with pytest.raises(ConfigError):
        load(ServiceSettings, {**VALID, "JWT_SECRET": "k" * 31})
    assert load(ServiceSettings, {**VALID, "JWT_SECRET": "é" * 16}).jwt_secret == "é" * 16


def test_numbers_below_their_minimum_are_refused():
    with pytest.raises(ConfigError, match="DB_POOL_SIZE must be at least 1"):
        load(ServiceSettings, {**VALID, "DB_POOL_SIZE": "0"})


def test_settings_are_immutable():
    settings = load(ServiceSettings, VALID)
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.jwt_secret = "x" * 40


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
