"""Payments: card (Stripe Checkout, deposit holds, saved-card charges, refunds, webhooks) and
crypto (its own module, crypto_routes, on this same blueprint)."""

from flask import Blueprint

bp = Blueprint("payments", __name__)

from . import routes  # noqa: E402,F401

# Crypto half of issue 5 (its own module on this blueprint).
try:
    from . import crypto_routes  # noqa: E402,F401
except ModuleNotFoundError as exc:  # only a missing module, never an error inside it
    if exc.name != f"{__name__}.crypto_routes":
        raise
