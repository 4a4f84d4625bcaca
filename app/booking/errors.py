"""Booking's refusals: `BookingError` (messages keyed by form field, "" for the whole form)
and its kinds `CarTaken` (with alternatives), `PriceChanged`, `NotEligible`; and which
database constraint an IntegrityError broke (the no-overlap guard becomes `CarTaken`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy.exc import IntegrityError

from ..errors import FieldErrors
from ..filters import money
from .pricing import Quote

if TYPE_CHECKING:
    from .availability import Offer


class BookingError(FieldErrors):
    """Refusal with a message per form field ("" key: for the whole form)."""

    @property
    def message(self) -> str:
        return "; ".join(self.errors.values())


class CarTaken(BookingError):
    """The car is not free for the trip any more; `alternatives` are free cars like it."""

    def __init__(self, message: str, alternatives: list["Offer"] | None = None):
        super().__init__(message)
        self.alternatives = alternatives or []


class PriceChanged(BookingError):
    """The price differs from the one the customer was shown; show `quote` and ask again."""

    def __init__(self, quote: Quote):
        super().__init__(f"The price is now {money(quote.total_pence)}, not what you were shown "
                         "(our rates changed). Please check it and confirm again.")
        self.quote = quote


class NotEligible(BookingError):
    """The customer may not confirm a booking yet (licence not verified, too young...)."""


TAKEN_MESSAGE = "Sorry, that car was just taken for those dates."


def violated_constraint(exc: IntegrityError) -> str:
    """The constraint an IntegrityError broke: its name on PostgreSQL; on SQLite the message,
    which names it (a trigger's RAISE starts with `occupancies_no_overlap`)."""
    diag = getattr(getattr(exc, "orig", None), "diag", None)
    name = getattr(diag, "constraint_name", None)
    return name or str(exc.orig)
