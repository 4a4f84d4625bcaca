"""The state machine pattern of the models whose `state` column moves (issue 16).

A model lists its allowed moves in one transition table (state -> the states it may move
to; a final state maps to nothing) and moves only through `move_to`, which checks the
move against the table, records what the move needs (`_on_move`: a time, a reason, an
error...) and sets `state`. Nothing outside app/models assigns `.state` itself
(tests/test_state_machines.py keeps it so).

Hires (`Hire.transition`, with their history table) and payments (`Payment.move_to`, with
theirs) keep their own richer versions; crypto quotes, chain payments and refunds, outbound
emails and Stripe's webhook events use this mixin.
"""

from __future__ import annotations

from typing import Any, ClassVar, Mapping


class InvalidStateTransition(Exception):
    """A row was asked to move outside its transition table."""


class StateMachine:
    """`move_to` for a model with a `state` column and a `TRANSITIONS` table."""

    TRANSITIONS: ClassVar[Mapping[str, frozenset[str]]]
    # The error a refused move raises (a model may name its own subclass).
    InvalidTransition: ClassVar[type[InvalidStateTransition]] = InvalidStateTransition

    def can_move_to(self, to: str) -> bool:
        return to in self.TRANSITIONS[self.state]

    def move_to(self, to: str, **facts: Any) -> None:
        """Move to `to` if the table allows it from the current state; anything else raises.
        `facts` (keywords) are what the model records with the move (see `_on_move`)."""
        if to not in self.TRANSITIONS:
            raise ValueError(f"unknown {type(self).__name__} state {to!r}")
        if not self.can_move_to(to):
            raise self.InvalidTransition(f"A {self.state} {type(self).__name__} cannot become {to}")
        self._on_move(to, **facts)
        self.state = to

    def _on_move(self, to: str, **facts: Any) -> None:
        """Record what the move needs, before `state` changes (nothing by default)."""
        if facts:
            raise TypeError(f"{type(self).__name__}.move_to takes no {sorted(facts)}")
