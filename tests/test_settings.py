"""Settings in one typed place per domain (app/settings.py, issue 16): built from app.config,
the same keys and environment variables, rebuilt when a test changes the config."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from app.config import Config
from app.settings import WatchedConfig, build, domain_of, settings

ROOT = Path(__file__).resolve().parent.parent
CONFIG_READ = re.compile(r"""(?:config|cfg)\[["']([A-Z_0-9]+)["']\]""")


def test_every_setting_is_a_config_key():
    """A field with no config key of its name (a typo) fails here, not in production."""
    config = {k: getattr(Config, k) for k in dir(Config) if k.isupper()}
    built = build(config)
    assert built.money.late_fee_per_hour_pence == Config.LATE_FEE_PER_HOUR_PENCE
    assert built.payments.chain_id == Config.CHAIN_ID
    assert built.security.password_min_length == Config.PASSWORD_MIN_LENGTH
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.money.vat_percent = 0  # type: ignore[misc]


def test_a_config_change_after_create_app_is_seen(app):
    first = settings()
    assert settings() is first  # built once, not per read
    app.config["LATE_FEE_PER_HOUR_PENCE"] = 1
    assert settings().money.late_fee_per_hour_pence == 1
    app.config.update(CONDITION_PANELS=("front",))
    assert settings().counter.condition_panels == ("front",)
    app.config["LATE_FEE_PER_HOUR_PENCE"] = True  # == 1, but another value
    assert settings().money.late_fee_per_hour_pence is True


def test_writing_a_setting_its_own_value_keeps_the_settings(app):
    """Talisman writes SESSION_COOKIE_SECURE = True on every request of a production app:
    the settings are not built again for it (issue 19: they were, on every request)."""
    first = settings()
    app.config["SESSION_COOKIE_SECURE"] = app.config["SESSION_COOKIE_SECURE"]
    app.config["LATE_FEE_PER_HOUR_PENCE"] = int(str(app.config["LATE_FEE_PER_HOUR_PENCE"]))
    assert settings() is first


def test_the_environment_sets_the_same_keys(monkeypatch):
    """FLASK_-prefixed variables (what create_app applies, and Ansible's templates set)."""
    monkeypatch.setenv("FLASK_VAT_PERCENT", "17")
    monkeypatch.setenv("FLASK_SIGNIN_RATE_LIMIT", "3 per minute")
    config = WatchedConfig(".")
    config.from_object(Config)
    config.from_prefixed_env()
    built = build(config)
    assert built.money.vat_percent == 17
    assert built.security.signin_rate_limit == "3 per minute"


def test_no_module_reads_a_domain_setting_from_app_config():
    """Services read `settings().<domain>`; app.config keeps the rest (environment, storage...).
    The factory and the production checks (app/production.py) read the config itself."""
    allowed = {"app/config.py", "app/settings.py", "app/__init__.py", "app/production.py"}
    readers = {}
    for path in (ROOT / "app").rglob("*.py"):
        name = str(path.relative_to(ROOT))
        if name in allowed:
            continue
        keys = {k for k in CONFIG_READ.findall(path.read_text()) if domain_of(k)}
        if keys:
            readers[name] = sorted(keys)
    assert readers == {}
