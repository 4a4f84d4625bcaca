"""A dearer change or an extension paid in ETH (issue 18): the confirmed hire gets a quote for
exactly the difference it owes (no deposit), the payment is read from the local chain by the
real watcher job, and the paid signal carries the quote's pence, so paperwork invoices a dearer
change's difference as it does for a card; an extension (invoiced when made) is not invoiced
twice."""

from __future__ import annotations


import pytest
from sqlalchemy import select

from app.booking.extending import end_token, extend_hire, preview_extension
from app.booking.seed import seed_rate_tables
from app.extensions import db
from app.models import HireState, Payment, utcnow
from app.models.crypto import ChainPayment, CryptoRefund
from app.paperwork import invoices_of
from app.paperwork.invoicing import split_gross
from app.payments import amount_due_pence, crypto
from tests import factories
from tests.conftest import csrf_token
from tests.crypto_chain import chain_env, settle_fully  # noqa: F401
from tests.test_booking import FMT, as_utc, local_day


def paid_in_eth(chain_env, customer, days=2):
    """A hire booked and paid in ETH through the contract, confirmed by the watcher."""
    seed_rate_tables()
    hire = factories.make_hire(customer=customer, state=HireState.HELD, start=as_utc(local_day(10)), days=days)
    quote = crypto.create_quote(hire, utcnow())
    assert quote.purpose == "rental"
    chain_env.pay(quote)
    settle_fully(chain_env)
    db.session.expire_all()
    assert hire.state == "confirmed" and amount_due_pence(hire) == 0
    return hire


def pay_difference_in_eth(client, chain_env, hire):
    """The customer opens the crypto page for what the hire owes and pays it from the wallet."""
    due = amount_due_pence(hire)
    page = client.get(f"/pay/{hire.reference}/crypto")
    assert page.status_code == 200
    quote = crypto.latest_quote(hire)
    assert (quote.purpose, quote.amount_pence, quote.deposit_pence, quote.state) == ("difference", due, 0, "open")
    html = page.get_data(as_text=True)
    assert crypto.format_eth(quote.amount_wei) in html  # the ETH to send
    assert "What your booking still owes after its change or extension" in html
    assert crypto.payment_status(hire, utcnow()).can_pay
    chain_env.pay(quote)
    settle_fully(chain_env)
    db.session.expire_all()
    return quote


def test_a_dearer_change_paid_in_eth_is_invoiced_for_the_difference(app, client, auth, chain_env):
    customer = auth.sign_in_as("customer")
    hire = paid_in_eth(chain_env, customer)
    paid = hire.total_pence
    [booking] = invoices_of(hire)
    url = f"/book/hires/{hire.reference}/change"
    response = client.post(url, data={"pickup_at": local_day(10).strftime(FMT),
                                      "return_at": local_day(14).strftime(FMT),
                                      "csrf_token": csrf_token(client, url)})
    assert response.status_code == 303 and response.headers["Location"].endswith(f"/pay/{hire.reference}")
    db.session.expire_all()
    difference = hire.total_pence - paid
    assert difference > 0 and amount_due_pence(hire) == difference
    assert "Pay with crypto" in client.get(f"/pay/{hire.reference}").get_data(as_text=True)

    quote = pay_difference_in_eth(client, chain_env, hire)

    [payment] = [p for p in db.session.scalars(select(ChainPayment).where(ChainPayment.quote_id == quote.id))]
    assert (payment.state, payment.outcome) == ("settled", "exact")
    assert hire.state == "confirmed" and amount_due_pence(hire) == 0
    assert crypto.payment_status(hire, utcnow()).stage == "confirmed"
    charge = db.session.scalar(select(Payment).where(Payment.idempotency_key == f"crypto:{payment.tx_hash}:"
                                                                                  f"{payment.log_index}"))
    assert (charge.state, charge.amount_pence) == ("succeeded", difference)
    # Invoiced as for a card: the difference, in pence at the quote (not wei), once.
    booking_, change = invoices_of(hire)
    assert booking_.id == booking.id and booking.gross_pence == paid
    assert (change.kind, change.purpose, change.gross_pence) == ("invoice", "booking", difference)
    [line] = change.lines
    assert line["label"].endswith(": difference") and (line["net_pence"], line["vat_pence"]) == split_gross(difference, 20)
    assert booking.gross_pence + change.gross_pence == hire.total_pence
    # Scanning again changes nothing; the page has nothing more to pay.
    chain_env.scan()
    db.session.expire_all()
    assert len(invoices_of(hire)) == 2
    with pytest.raises(crypto.CryptoError, match="nothing left to pay"):
        crypto.create_quote(hire, utcnow())


def test_an_extension_left_to_pay_and_paid_in_eth_is_not_invoiced_twice(app, client, auth, chain_env):
    customer = auth.sign_in_as("customer")
    hire = paid_in_eth(chain_env, customer)
    paid = hire.total_pence
    preview = preview_extension(hire, local_day(13), now=utcnow())
    extended = extend_hire(hire, local_day(13), by=customer, now=utcnow(), expected_extra=preview.extra_pence,
                           expected_end=end_token(hire))
    assert extended.payment is None and extended.to_pay_pence == preview.extra_pence > 0  # no card to charge
    db.session.expire_all()
    extra = hire.total_pence - paid
    assert [d.gross_pence for d in invoices_of(hire)] == [paid, extra]

    pay_difference_in_eth(client, chain_env, hire)

    assert hire.state == "confirmed" and amount_due_pence(hire) == 0
    assert [d.gross_pence for d in invoices_of(hire)] == [paid, extra]


def test_a_difference_quote_paid_after_the_booking_changed_again_goes_to_staff(app, client, auth, chain_env):
    customer = auth.sign_in_as("customer")
    hire = paid_in_eth(chain_env, customer)
    paid = hire.total_pence
    url = f"/book/hires/{hire.reference}/change"
    for return_day in (14, 12):  # dearer, then (before paying) less dear: the quote is stale
        assert client.post(url, data={"pickup_at": local_day(10).strftime(FMT),
                                      "return_at": local_day(return_day).strftime(FMT),
                                      "csrf_token": csrf_token(client, url)}).status_code == 303
        db.session.expire_all()
        if return_day == 14:
            stale = crypto.quote_for_page(hire, utcnow())
            assert stale.amount_pence == hire.total_pence - paid
    assert 0 < amount_due_pence(hire) < stale.amount_pence
    chain_env.pay(stale)
    settle_fully(chain_env)
    db.session.expire_all()
    [payment] = db.session.scalars(select(ChainPayment).where(ChainPayment.quote_id == stale.id)).all()
    assert (payment.state, payment.outcome) == ("review", "not_payable")
    assert "it changed meanwhile" in payment.review_reason
    assert len(invoices_of(hire)) == 1  # nothing invoiced until staff decide
    # Staff accept it: it pays what is owed, the rest goes back (to an address the customer
    # confirms), and the change is invoiced for what is owed.
    owed = amount_due_pence(hire)
    staff = factories.make_user("staff")
    crypto.accept_reviewed(payment.id, staff, utcnow())
    db.session.expire_all()
    assert amount_due_pence(hire) == 0 and hire.state == "confirmed"
    [refund] = db.session.scalars(select(CryptoRefund).where(CryptoRefund.chain_payment_id == payment.id)).all()
    assert refund.amount_pence == stale.amount_pence - owed and refund.state == "awaiting_address"
    change = invoices_of(hire)[-1]
    assert (change.purpose, change.gross_pence) == ("booking", owed)
    assert sum(d.gross_pence for d in invoices_of(hire)) == hire.total_pence
