"""Production checks in one function (issue 16): `check_production(config)`.

`create_app` calls it with the finished config. Fail closed: every environment that is not
explicitly development or test (`LOCAL_ENVS`: production, staging, a typo, no ACME_ENV at all)
is production-like and gets every check; a start with any problem is refused, with all of
them listed at once so that one deploy fixes them all. Before this, some checks tested
`ENV_NAME == "production"` exactly, so a staging server skipped them.

What a production-like start needs:
- a real SECRET_KEY (not the development one, at least SECRET_KEY_MIN_LENGTH characters);
- password hashing at OWASP's minimum (not the tests' cheap PASSWORD_HASH_* costs);
- real mail (MAIL_BACKEND smtp, not the development outbox);
- no crypto demo wallet (CRYPTO_DEMO_WALLET);
- a Stripe webhook secret whenever a Stripe key is set (else no payment would ever be heard of);
- no publicly known development key as the crypto refund wallet (CHAIN_HOT_WALLET_KEY).
What production-like also changes, in create_app and app/request_hooks.py: Secure cookies
and HSTS. The development conveniences (the Stripe and licence stand-ins, the mail outbox
page, the development ticker) each ask for ENV_NAME == "development" itself.
"""

from __future__ import annotations

from typing import Any, Mapping

from .config import LOCAL_ENVS
from .integrations.chain import is_public_dev_key

# OWASP's minimum for argon2id.
MIN_HASH_MEMORY_KIB = 19 * 1024
MIN_HASH_TIME_COST = 2


def is_production_like(env_name: str) -> bool:
    """Anything not explicitly development or test is treated as production."""
    return env_name not in LOCAL_ENVS


def production_problems(config: Mapping[str, Any]) -> list[str]:
    """What would make this config unsafe to run as production (empty: nothing)."""
    problems = []
    key = config["SECRET_KEY"]
    if key in ("", config["INSECURE_DEV_SECRET"]) or len(key) < config["SECRET_KEY_MIN_LENGTH"]:
        problems.append(f"without a real SECRET_KEY (at least {config['SECRET_KEY_MIN_LENGTH']} "
                        "characters, from the environment)")
    if (config["PASSWORD_HASH_MEMORY_KIB"] < MIN_HASH_MEMORY_KIB
            or config["PASSWORD_HASH_TIME_COST"] < MIN_HASH_TIME_COST):
        problems.append("with the tests' cheap password hashing (PASSWORD_HASH_*): OWASP asks for "
                        "at least 19 MiB, 2 passes")
    if config["MAIL_BACKEND"] == "outbox":
        problems.append("with the development mail outbox: set MAIL_BACKEND=smtp")
    if config["CRYPTO_DEMO_WALLET"]:
        problems.append("with the crypto demo wallet, which is for development only: unset "
                        "CRYPTO_DEMO_WALLET")
    if config["STRIPE_SECRET_KEY"] and not config["STRIPE_WEBHOOK_SECRET"]:
        problems.append("with STRIPE_SECRET_KEY set but not STRIPE_WEBHOOK_SECRET: set both "
                        "(from the vault) or neither")
    if config["CHAIN_HOT_WALLET_KEY"] and is_public_dev_key(config["CHAIN_HOT_WALLET_KEY"]):
        problems.append("with a publicly known development key as CHAIN_HOT_WALLET_KEY")
    return problems


def check_production(config: Mapping[str, Any]) -> None:
    """Refuse a production-like start with any problem, listing them all (RuntimeError)."""
    if not is_production_like(config["ENV_NAME"]):
        return
    problems = production_problems(config)
    if problems:
        raise RuntimeError(
            f"Refusing to start in ACME_ENV={config['ENV_NAME']!r} "
            + ("; ".join(problems) if len(problems) == 1
               else "".join(f"\n- {p}" for p in problems))
            + ". For a local run set ACME_ENV=development.")
