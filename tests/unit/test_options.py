"""The typed option groups config.py hands to each consumer (pgtwist.options)."""

from __future__ import annotations

import dataclasses

import pytest

from pgtwist import options
from pgtwist.config import parse_config
from pgtwist.params import PARAMS

ONE = {"backend_hostname0": "127.0.0.1"}
GROUPS = {"pool": options.PoolOptions, "session": options.SessionOptions,
          "auth": options.AuthOptions, "tls": options.TLSOptions,
          "classifier": options.ClassifierOptions}


def parse(extra=None):
    return parse_config({**ONE, **(extra or {})}, env={}, check_files=False)


def test_every_group_hangs_on_the_config_and_is_frozen():
    config = parse()
    for name, cls in GROUPS.items():
        group = getattr(config, name)
        assert type(group) is cls
        field = dataclasses.fields(cls)[0].name
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(group, field, None)


def test_defaults_come_from_the_parameter_table():
    pool = parse().pool
    assert pool.max_idle == PARAMS["max_pool"].default
    assert pool.connect_rate == PARAMS["backend_connect_rate"].default
    assert pool.connect_burst == PARAMS["backend_connect_burst"].default
    assert pool.connect_timeout == PARAMS["connect_timeout"].default / 1000.0
    assert pool.mode == "session" and not pool.transaction


def test_units_are_converted_once():
    config = parse({"connect_timeout": "2s", "checkout_timeout": "2min",
                    "connection_life_time": "1h", "client_idle_limit": "90s",
                    "authentication_timeout": 0, "classify_max_length": "16kB",
                    "max_message_length": "1MB"})
    assert config.pool.connect_timeout == 2.0
    assert config.pool.checkout_timeout == 120.0
    assert config.pool.connection_life_time == 3600.0
    assert config.session.client_idle_limit == 90.0
    assert config.session.authentication_timeout == 0.0
    assert config.classifier.max_length == 16 * 1024
    assert config.session.max_message_length == 1 << 20


def test_transaction_mode_and_auth_and_tls_groups():
    config = parse({"pool_mode": "transaction", "auth_user": "lookup",
                    "allow_clear_text_frontend_auth": True, "ssl_require": True,
                    "ssl_ciphers": "HIGH", "ssl_prefer_server_ciphers": True})
    assert config.pool.transaction
    assert config.auth.auth_user == "lookup" and "$1" in config.auth.auth_query
    assert config.auth.allow_clear_text_frontend_auth
    assert config.session.ssl_require
    assert (config.tls.enabled, config.tls.ciphers, config.tls.prefer_server_ciphers) == (
        False, "HIGH", True)


def test_secrets_stay_out_of_the_config_repr():
    config = parse({"auth_user": "lookup", "sr_check_password": "hunter2"})
    assert "hunter2" not in repr(config)
