"""Fail closed (issue 15 §2): only an environment that says it is development or test may run
with the development secret key; anything else, including no ACME_ENV at all, refuses to
start without a real one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from app import create_app
from app.config import Config, TestConfig
from tests.conftest import PASSWORD_HASHING, make_test_config

ROOT = Path(__file__).resolve().parent.parent
REAL_KEY = "k" * Config.SECRET_KEY_MIN_LENGTH
NOT_LOCAL = ["production", "staging", "Production", "prod", "production ", "", "dev", "testing"]


@pytest.mark.parametrize("env_name", NOT_LOCAL)
@pytest.mark.parametrize("key", [Config.INSECURE_DEV_SECRET, "", "k" * (Config.SECRET_KEY_MIN_LENGTH - 1)])
def test_any_environment_not_explicitly_local_refuses_a_weak_secret_key(_schema, env_name, key):
    with pytest.raises(RuntimeError, match="SECRET_KEY"):
        create_app(make_test_config(ENV_NAME=env_name, SECRET_KEY=key, MAIL_BACKEND="smtp"))


@pytest.mark.parametrize("env_name", ["staging", "prod"])
def test_a_production_like_environment_starts_with_a_real_key_and_secure_cookies(_schema, env_name):
    app = create_app(make_test_config(ENV_NAME=env_name, SECRET_KEY=REAL_KEY, MAIL_BACKEND="smtp"))
    assert app.config["SESSION_COOKIE_SECURE"] and app.config["REMEMBER_COOKIE_SECURE"]


@pytest.mark.parametrize("env_name", ["development", "test"])
def test_development_and_test_still_start_with_the_development_key(_schema, env_name):
    app = create_app(make_test_config(ENV_NAME=env_name, SECRET_KEY=Config.INSECURE_DEV_SECRET))
    assert app.config["SECRET_KEY"] == Config.INSECURE_DEV_SECRET


def _start_wsgi(_schema, **env_overrides) -> subprocess.CompletedProcess:
    """Import wsgi.py (what Gunicorn and `flask` do) in a fresh process with this environment."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("FLASK_") and k not in ("ACME_ENV", "SECRET_KEY", "REDIS_URL")}
    env.update(DATABASE_URL=_schema, MAIL_BACKEND="smtp", **env_overrides)
    return subprocess.run([sys.executable, "-c", "import wsgi; print(wsgi.app.config['ENV_NAME'])"],
                          cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def test_no_acme_env_and_no_secret_key_refuses_to_start(_schema):
    started = _start_wsgi(_schema)
    assert started.returncode != 0
    assert "Refusing to start" in started.stderr and "SECRET_KEY" in started.stderr


def test_no_acme_env_with_a_real_key_starts_as_production(_schema):
    started = _start_wsgi(_schema, SECRET_KEY=REAL_KEY)
    assert started.returncode == 0, started.stderr
    assert started.stdout.split() == ["production"]
    local = _start_wsgi(_schema, ACME_ENV="development")
    assert local.returncode == 0, local.stderr
    assert local.stdout.split() == ["development"]


def test_production_refuses_the_tests_cheap_password_hashing(_schema):
    """The tests hash passwords cheaply (TestConfig); a server never does."""
    cheap = {k: getattr(TestConfig, k) for k in PASSWORD_HASHING}
    with pytest.raises(RuntimeError, match="cheap password hashing"):
        create_app(make_test_config(ENV_NAME="production", SECRET_KEY=REAL_KEY, MAIL_BACKEND="smtp",
                                    **cheap))


# --- one function, every production-like environment (issue 16) ---------------------------

def _production_like(env_name: str, **overrides):
    config = dict(ENV_NAME=env_name, SECRET_KEY=REAL_KEY, MAIL_BACKEND="smtp")
    config.update(overrides)
    return make_test_config(**config)


@pytest.mark.parametrize("env_name", ["production", "staging"])
@pytest.mark.parametrize("overrides, problem", [
    ({"MAIL_BACKEND": "outbox"}, "mail outbox"),
    ({"CRYPTO_DEMO_WALLET": True}, "CRYPTO_DEMO_WALLET"),
    ({"STRIPE_SECRET_KEY": "sk_live_x", "STRIPE_WEBHOOK_SECRET": ""}, "STRIPE_WEBHOOK_SECRET"),
])
def test_staging_gets_every_check_production_gets(_schema, env_name, overrides, problem):
    """Before, these three were checked for ENV_NAME == "production" only: staging started."""
    with pytest.raises(RuntimeError, match=problem):
        create_app(_production_like(env_name, **overrides))


def test_a_public_development_key_cannot_send_refunds(_schema):
    from app.integrations.chain import dev_chain_keys
    with pytest.raises(RuntimeError, match="CHAIN_HOT_WALLET_KEY"):
        create_app(_production_like("staging", CHAIN_HOT_WALLET_KEY=dev_chain_keys()[1]))


def test_every_problem_is_listed_at_once(_schema):
    cheap = {k: getattr(TestConfig, k) for k in PASSWORD_HASHING}
    with pytest.raises(RuntimeError) as refused:
        create_app(_production_like("staging", SECRET_KEY="", MAIL_BACKEND="outbox",
                                    CRYPTO_DEMO_WALLET=True, **cheap))
    message = str(refused.value)
    assert message.startswith("Refusing to start in ACME_ENV='staging'")
    for problem in ("SECRET_KEY", "cheap password hashing", "mail outbox", "CRYPTO_DEMO_WALLET"):
        assert problem in message


def test_development_keeps_its_conveniences(make_app):
    """The demo wallet and the outbox are what development runs with."""
    app = make_app(ENV_NAME="development", CRYPTO_DEMO_WALLET=True, MAIL_BACKEND="outbox",
                   STRIPE_SECRET_KEY="sk_test_x", STRIPE_WEBHOOK_SECRET="")
    assert app.config["CRYPTO_DEMO_WALLET"]


def test_staging_answers_with_hsts(make_app):
    app = make_app(ENV_NAME="staging", SECRET_KEY=REAL_KEY, MAIL_BACKEND="smtp",
                   SESSION_COOKIE_SECURE=False)
    response = app.test_client().get("/healthz", base_url="https://localhost")
    assert "max-age=" in response.headers.get("Strict-Transport-Security", "")
