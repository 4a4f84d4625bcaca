"""The counter's refusals: `CounterError` (messages keyed by form field, "" for the whole
step) and `AlreadyProcessed` (another tablet finished the step first).
"""

from __future__ import annotations

from ..errors import FieldErrors


class CounterError(FieldErrors):
    """Refusal with a message per form field ("" key: for the whole step)."""


class AlreadyProcessed(CounterError):
    """Another tablet finished this step first."""
