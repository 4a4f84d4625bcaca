"""Stripe's documented test cards and test PaymentMethod ids, and what each one does.

https://docs.stripe.com/testing: 4242 4242 4242 4242 succeeds; 4000 0000 0000 0002 is a
generic decline; 4000 0000 0000 9995 declines for insufficient funds; and so on. Any other
number is refused as incorrect, as Stripe's test mode refuses real card numbers.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Outcome:
    brand: str
    decline_code: str = ""  # "" means the charge succeeds
    code: str = "card_declined"
    message: str = ""
    # Attach/checkout succeeds, but later charges on the saved card are declined.
    declines_later: bool = False

    @property
    def declined(self) -> bool:
        return bool(self.decline_code)


_OK = {
    "4242424242424242": Outcome("visa"),
    "4000056655665556": Outcome("visa"),  # debit
    "5555555555554444": Outcome("mastercard"),
    "2223003122003222": Outcome("mastercard"),
    "378282246310005": Outcome("amex"),
}
_DECLINED = {
    "4000000000000002": Outcome("visa", "generic_decline", message="Your card was declined."),
    "4000000000009995": Outcome("visa", "insufficient_funds",
                                message="Your card has insufficient funds."),
    "4000000000009987": Outcome("visa", "lost_card", message="Your card was declined."),
    "4000000000009979": Outcome("visa", "stolen_card", message="Your card was declined."),
    "4000000000000069": Outcome("visa", "expired_card", code="expired_card",
                                message="Your card has expired."),
    "4000000000000127": Outcome("visa", "incorrect_cvc", code="incorrect_cvc",
                                message="Your card's security code is incorrect."),
    "4000000000000119": Outcome("visa", "processing_error", code="processing_error",
                                message="An error occurred while processing your card. Try again in a little bit."),
}
# The first payment succeeds; later off-session charges fail (Stripe: 4000 0000 0000 0341
# fails when charged after being attached; here the checkout payment itself succeeds so the
# failing deposit hold can be exercised end to end).
_LATER = {
    "4000000000000341": Outcome("visa", "", declines_later=True),
}
# Stripe's test PaymentMethod ids, usable directly in server-side calls.
TEST_PAYMENT_METHODS = {
    "pm_card_visa": "4242424242424242",
    "pm_card_visa_debit": "4000056655665556",
    "pm_card_mastercard": "5555555555554444",
    "pm_card_chargeDeclined": "4000000000000002",
    "pm_card_visa_chargeDeclined": "4000000000000002",
    "pm_card_chargeDeclinedInsufficientFunds": "4000000000009995",
    "pm_card_visa_chargeDeclinedInsufficientFunds": "4000000000009995",
    "pm_card_chargeDeclinedLostCard": "4000000000009987",
    "pm_card_chargeDeclinedExpiredCard": "4000000000000069",
    "pm_card_chargeCustomerFail": "4000000000000341",
}
INCORRECT = Outcome("unknown", "incorrect_number", code="incorrect_number",
                    message="Your card number is incorrect.")
LATER_DECLINE = Outcome("visa", "generic_decline", message="Your card was declined.")


def normalise(number: str) -> str:
    return "".join(ch for ch in number if ch.isdigit())


def outcome_for(number: str, *, later: bool = False) -> Outcome:
    """What charging this card does now (`later`: an off-session charge on a saved card)."""
    number = normalise(number)
    if number in _LATER:
        return LATER_DECLINE if later else Outcome(_LATER[number].brand)
    return _OK.get(number) or _DECLINED.get(number) or INCORRECT


def brand_for(number: str) -> str:
    number = normalise(number)
    for table in (_OK, _DECLINED, _LATER):
        if number in table:
            return table[number].brand
    return "unknown"
