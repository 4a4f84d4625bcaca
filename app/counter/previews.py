"""What the counter's confirmation dialogs show before staff hand over the keys, refuse a
hire or settle a return: the money each will move, from the same rules the step applies."""

from __future__ import annotations

from dataclasses import dataclass

from ..models import Hire
from .. import payments
from . import charges as rules
from .car_return import settlement_for


@dataclass(frozen=True)
class DepositNote:
    amount_pence: int
    how: str
    held: bool = False  # on the card or in ETH already: a refusal gives it back


def deposit_at_pickup(hire: Hire) -> DepositNote:
    """The deposit and what handing over does about it (`payments.ensure_deposit_hold`)."""
    if hire.deposit_pence <= 0:
        return DepositNote(0, "No deposit for this car.")
    eth = payments.eth_deposit(hire)
    if eth is not None:
        return DepositNote(eth.amount_pence, "Paid in ETH with the booking; what is not charged "
                                             "at the return is sent back.", held=True)
    hold = payments.active_hold(hire)
    if hold is not None and hold.state == "authorised":
        return DepositNote(hold.amount_pence, "Already held on the customer's card (not charged).", held=True)
    if hold is not None:
        return DepositNote(hold.amount_pence, "Being placed as a hold on the customer's card.")
    if payments.saved_card_of(hire) is not None:
        return DepositNote(hire.deposit_pence, "Held on the customer's saved card when you hand "
                                               "over (not charged).")
    return DepositNote(hire.deposit_pence, "No saved card: take the deposit another way.")


@dataclass(frozen=True)
class PickupMoney:
    rental_paid_pence: int
    deposit: DepositNote


def pickup_money(hire: Hire) -> PickupMoney:
    """For the hand-over and refusal dialogs: what was paid, and the deposit."""
    return PickupMoney(payments.rental_paid_pence(hire), deposit_at_pickup(hire))


def settle_money(hire: Hire, lines: list[rules.Line]) -> list[tuple[str, int]]:
    """For the settle dialog: (label, pence) for each movement of money settling makes."""
    return rules.settlement_lines(settlement_for(hire, lines),
                                  paid_in_eth=payments.eth_deposit(hire) is not None, reader="staff")
