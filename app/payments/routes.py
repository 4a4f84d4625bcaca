"""Card payment pages and Stripe's webhook, on the `payments` blueprint (/pay).

Thin: parse, call services, render. Customer pages are for the hire's own customer only
(anyone else gets 404: other people's bookings do not exist for them); the receipt is
also open to staff; the webhook is public (Stripe calls it) and the only CSRF-exempt route:
its signature is its proof.
"""

from __future__ import annotations

from flask import Response, abort, jsonify, redirect, request, url_for
from flask_login import current_user

from ..extensions import csrf
from ..hire_access import hire_visible_to
from ..integrations import stripe_client
from ..queueing import enqueue
from ..logging_setup import log
from ..models import Hire, utcnow
from ..security import allow
from ..web import add_errors, form_status, render, see_other, wants_fragment
from . import bp, ledger
from . import card as stripe_card
from .forms import CardPaymentForm
from .ledger import PaymentError, PaymentNotFound



def _hire(reference: str) -> Hire:
    """The hire if the signed-in person may see it (app/hire_access.py), or 404.

    The customer pages admit customers only (their own hires); the receipt also staff."""
    hire = hire_visible_to(reference, current_user)
    if hire is None:
        abort(404)
    return hire


@bp.get("/<reference>")
@allow("customer")
def start(reference: str):
    """The frozen price lines and the choice of Card or Crypto (after booking's confirm)."""
    hire = _hire(reference)
    status = stripe_card.card_status(hire, utcnow())
    if status.stage == "confirmed":
        return redirect(url_for("payments.receipt", reference=reference))
    return render("payments/start.html", "payments/start.html", hire=hire, card_status=status,
                  amount_due=ledger.amount_due_pence(hire), crypto_url=url_for("payments.crypto_start", reference=hire.reference),
                  card_available=stripe_client.is_configured(),
                  under_review=stripe_card.under_review(hire),
                  came_back=request.args.get("cancelled") == "1")


@bp.route("/<reference>/card", methods=["GET", "POST"])
@allow("customer")
def card(reference: str):
    """Confirm step: the amount to pay by card. POST records the payment and opens Checkout."""
    hire = _hire(reference)
    due = ledger.amount_due_pence(hire)
    form = CardPaymentForm()
    if request.method == "GET":
        form.amount_pence.data = due
    if form.validate_on_submit():
        try:
            stripe_card.start_card_checkout(
                hire, current_user, amount_pence=form.amount_pence.data,
                # Stripe substitutes {CHECKOUT_SESSION_ID}; it must not be URL-encoded.
                success_url=url_for("payments.card_return", reference=reference, _external=True)
                + "?session_id={CHECKOUT_SESSION_ID}",
                cancel_url=url_for("payments.start", reference=reference, cancelled=1, _external=True),
                now=utcnow())
        except PaymentNotFound:
            abort(404)
        except PaymentError as exc:
            add_errors(form, {"": exc.message})
            form.amount_pence.raw_data = None
            form.amount_pence.data = ledger.amount_due_pence(hire)
        else:
            return see_other(url_for("payments.card_continue", reference=reference))
    status = form_status(form)
    return render("payments/card.html", "payments/partials/_card_form.html", status,
                  hire=hire, form=form, amount_due=form.amount_pence.data or due)


@bp.get("/<reference>/card/continue")
@allow("customer")
def card_continue(reference: str):
    """Waits for the Checkout Session (created by a job), then sends the browser to it."""
    hire = _hire(reference)
    status = stripe_card.card_status(hire, utcnow())
    if status.stage == "confirmed":
        return see_other(url_for("payments.receipt", reference=reference))
    if wants_fragment() and status.stage in ("ready", "declined") and status.checkout_url:
        # A navigation, not a form's redirect: CSP's form-action does not apply.
        response = Response(status=204)
        response.headers["HX-Redirect"] = status.checkout_url
        return response
    return render("payments/continue.html", "payments/partials/_continue.html", hire=hire,
                  card_status=status)


@bp.get("/<reference>/return")
@allow("customer")
def card_return(reference: str):
    """Back from Checkout: "Payment processing", turning into "Confirmed" by itself."""
    hire = _hire(reference)
    stripe_card.record_checkout_return(hire, request.args.get("session_id", ""), now=utcnow())
    return render("payments/processing.html", "payments/partials/_status.html", hire=hire,
                  card_status=stripe_card.card_status(hire, utcnow()))


@bp.get("/<reference>/status")
@allow("customer")
def status(reference: str):
    """The self-replacing status fragment the processing page polls."""
    hire = _hire(reference)
    now = utcnow()
    stripe_card.recheck_returned_checkout(hire, now=now)
    return render("payments/processing.html", "payments/partials/_status.html", hire=hire,
                  card_status=stripe_card.card_status(hire, now))


@bp.get("/<reference>/receipt")
@allow("customer", "staff", "admin")
def receipt(reference: str):
    """Every payment, hold, capture and refund of a hire (its customer, or staff)."""
    hire = _hire(reference)
    return render("payments/receipt.html", "payments/receipt.html", hire=hire,
                  lines=ledger.receipt_lines(hire), amount_due=ledger.amount_due_pence(hire),
                  net_paid=ledger.net_paid_pence(hire), hold=ledger.latest_hold(hire),
                  card_status=stripe_card.card_status(hire, utcnow()))


@bp.post("/webhooks/stripe")
@allow("public")
@csrf.exempt
def stripe_webhook():
    """Stripe's events: verified on the raw body, stored once, answered at once, applied in a job."""
    payload = request.get_data()
    try:
        event = stripe_client.construct_event(payload, request.headers.get("Stripe-Signature"))
    except ValueError as exc:
        log().warning("stripe webhook refused", reason=str(exc)[:200])
        return jsonify(error="invalid signature"), 400
    row = stripe_card.store_event(event, now=utcnow())
    if row is not None:
        enqueue("app.jobs.payments.process_stripe_event", row.id)
    return jsonify(received=True), 200
