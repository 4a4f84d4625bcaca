"""Crypto payment pages, on the `payments` blueprint (/pay). Thin: parse, call the crypto provider (crypto/), render.

Customer: /pay/<reference>/crypto shows the ETH price and the "Pay with wallet" button
(static/js/wallet.js), and a status fragment that polls itself until the payment is
confirmed; refund addresses are confirmed at /pay/<reference>/crypto/refunds/<id>.
Staff: /pay/crypto/review lists payments the rules sent to review.
Development only: /pay/crypto/demo-wallet backs the demo wallet offered to browsers
without one (refused at start-up in production).
"""

from __future__ import annotations

from flask import (Flask, abort, current_app, flash, jsonify, redirect, render_template, request,
                   url_for)
from flask_login import current_user

from ..extensions import db
from ..hire_access import hire_visible_to
from ..integrations import chain
from ..models import Hire, utcnow
from ..models.crypto import CryptoRefund
from ..security import allow
from ..settings import settings, settings_of
from ..web import add_errors, form_status, render, see_other, wants_fragment
from . import bp, crypto
from .crypto_forms import ActionForm, RefundAddressForm, WalletTxForm

# The only wallet requests the demo wallet answers; anything else is refused.
DEMO_WALLET_METHODS = ("eth_requestAccounts", "eth_accounts", "eth_chainId", "eth_sendTransaction")
USER_REJECTED = 4001
UNSUPPORTED_METHOD = 4200


def demo_wallet_enabled(app: Flask | None = None) -> bool:
    app = app or current_app
    return bool(settings_of(app).payments.crypto_demo_wallet) and app.config["ENV_NAME"] == "development"


def _own_hire(reference: str) -> Hire:
    """The signed-in customer's hire, or 404 (someone else's hire does not exist for them).

    Every page that calls this admits customers only, so the hires they may see
    (app/hire_access.py) are their own."""
    hire = hire_visible_to(reference, current_user)
    if hire is None:
        abort(404)
    return hire


def _wallet(quote, status) -> dict | None:
    """What wallet.js needs to ask the wallet for the payment (no secrets, nothing to sign)."""
    if quote is None or not status.can_pay:
        return None
    return {
        "contract": quote.contract_address,
        "chain_id": hex(quote.chain_id),
        "chain_name": settings().payments.chain_name,
        "value": hex(quote.amount_wei),
        "data": chain.pay_calldata(quote.booking_ref),
        "expires_ms": int(quote.expires_at.timestamp() * 1000),
        "quote_id": quote.id,
        "sent_url": url_for("payments.crypto_sent", reference=quote.hire.reference),
        "demo_url": url_for("payments.crypto_demo_wallet") if demo_wallet_enabled() else "",
    }


@bp.get("/<reference>/crypto")
@allow("customer")
def crypto_start(reference: str):
    """The ETH price (locked for QUOTE_MINUTES), the wallet button and the payment's status."""
    hire = _own_hire(reference)
    now = utcnow()
    quote = crypto.quote_for_page(hire, now)
    status = crypto.payment_status(hire, now)
    return render_template("payments/crypto.html", hire=hire, quote=quote, status=status,
                           wallet=_wallet(quote, status), form=ActionForm(),
                           format_eth=crypto.format_eth)


@bp.post("/<reference>/crypto/quote")
@allow("customer")
def crypto_new_quote(reference: str):
    """A new price after the last one expired."""
    hire = _own_hire(reference)
    form = ActionForm()
    if form.validate_on_submit():
        try:
            crypto.create_quote(hire, utcnow())
        except crypto.CryptoError as exc:
            flash(str(exc), "error")
    return see_other(url_for("payments.crypto_start", reference=reference))


@bp.post("/<reference>/crypto/sent")
@allow("customer")
def crypto_sent(reference: str):
    """wallet.js reports the transaction hash the wallet returned (shown, never trusted)."""
    hire = _own_hire(reference)
    form = WalletTxForm()
    if form.validate_on_submit():
        try:
            crypto.report_wallet_tx(hire, form.quote_id.data, form.tx_hash.data, utcnow())
        except crypto.CryptoError as exc:
            return jsonify(ok=False, errors={"": str(exc)}), 422
        response = jsonify(ok=True)
        response.headers["HX-Trigger"] = "crypto-status-changed"
        return response
    return jsonify(ok=False, errors={k: v[0] for k, v in form.errors.items()}), 422


@bp.get("/<reference>/crypto/status")
@allow("customer")
def crypto_status(reference: str):
    """The self-replacing status fragment; asks for a chain scan when one is due."""
    hire = _own_hire(reference)
    if not wants_fragment():
        return redirect(url_for("payments.crypto_start", reference=reference))
    now = utcnow()
    crypto.request_scan(now)
    status = crypto.payment_status(hire, now)
    return render_template("payments/partials/_crypto_status.html", hire=hire, status=status,
                           form=ActionForm(), format_eth=crypto.format_eth)


@bp.route("/<reference>/crypto/refunds/<int:refund_id>", methods=["GET", "POST"])
@allow("customer")
def crypto_refund_address(reference: str, refund_id: int):
    """The customer confirms the address their refund goes to."""
    hire = _own_hire(reference)
    refund = db.session.get(CryptoRefund, refund_id)
    if refund is None or refund.hire_id != hire.id:
        abort(404)
    form = RefundAddressForm(data={"address": refund.suggested_address} if request.method == "GET" else None)
    if refund.state == "awaiting_address" and form.validate_on_submit():
        try:
            crypto.confirm_refund_address(refund, current_user, form.address.data, utcnow())
        except crypto.CryptoError as exc:
            add_errors(form, {"address": str(exc)})
        else:
            crypto.queue_refund(refund)
            flash("Thank you: your refund is on its way to that address.", "success")
            return see_other(url_for("payments.crypto_start", reference=reference))
    return render("payments/crypto_refund.html", "payments/partials/_crypto_refund_form.html",
                  form_status(form), hire=hire, refund=refund, form=form,
                  format_eth=crypto.format_eth)


@bp.get("/crypto/review")
@allow("staff", "admin")
def crypto_review():
    """Staff: crypto payments the rules would not accept on their own."""
    now = utcnow()
    return render_template("payments/crypto_review.html", payments=crypto.review_queue(), now=now,
                           value_now=lambda p: crypto.value_now_pence(p, now), form=ActionForm(),
                           can_accept=crypto.can_accept, format_eth=crypto.format_eth)


@bp.post("/crypto/review/<int:payment_id>/accept")
@allow("staff", "admin")
def crypto_review_accept(payment_id: int):
    """Staff accept the payment as paying its booking (the hire is confirmed)."""
    if ActionForm().validate_on_submit():
        try:
            payment = crypto.accept_reviewed(payment_id, current_user, utcnow())
        except crypto.CryptoError as exc:
            flash(str(exc), "error")
        else:
            flash(f"Payment accepted; booking {payment.quote.hire.reference} is confirmed.", "success")
    return see_other(url_for("payments.crypto_review"))


@bp.post("/crypto/review/<int:payment_id>/refund")
@allow("staff", "admin")
def crypto_review_refund(payment_id: int):
    """Staff return the payment in full; the customer is asked to confirm the address."""
    if ActionForm().validate_on_submit():
        try:
            refund = crypto.refund_reviewed(payment_id, current_user, utcnow())
        except crypto.CryptoError as exc:
            flash(str(exc), "error")
        else:
            flash(f"Refund of {crypto.format_eth(refund.amount_wei)} ETH requested; the customer "
                  "has been asked to confirm the address.", "success")
    return see_other(url_for("payments.crypto_review"))


@bp.post("/crypto/demo-wallet")
@allow("customer")
def crypto_demo_wallet():
    """Development only: answer the demo wallet's requests with the local node's demo account.

    Stands in for the customer's own wallet (which would talk to its own node): only the
    requests a payment needs, and only a call of pay() on our contract is sent.
    """
    if not demo_wallet_enabled():
        abort(404)
    body = request.get_json(silent=True) or {}
    method, params = body.get("method"), body.get("params") or []
    payments = settings().payments
    account = payments.crypto_demo_wallet_address
    if method not in DEMO_WALLET_METHODS:
        return jsonify(error={"code": UNSUPPORTED_METHOD, "message": f"{method} is not supported"})
    if method in ("eth_requestAccounts", "eth_accounts"):
        return jsonify(result=[account])
    if method == "eth_chainId":
        return jsonify(result=hex(payments.chain_id))
    tx = params[0] if params and isinstance(params[0], dict) else {}
    data = str(tx.get("data", ""))
    if (str(tx.get("from", "")).lower() != account.lower()
            or str(tx.get("to", "")).lower() != payments.chain_contract_address.lower()
            or not data.startswith(chain.pay_calldata("0x" + "00" * 32)[:10])):
        return jsonify(error={"code": USER_REJECTED, "message": "The demo wallet only pays ACME bookings."})
    try:
        tx_hash = chain.demo_wallet_send({"from": account, "to": tx["to"],
                                          "value": tx.get("value", "0x0"), "data": data})
    except (chain.ChainError, chain.ChainRefused) as exc:
        return jsonify(error={"code": -32603, "message": f"The demo chain did not take it: {exc}"})
    return jsonify(result=tx_hash)
