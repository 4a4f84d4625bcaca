"""Fleet refusals: `FleetError` (messages keyed by form field, "" for the whole form), and
its kinds that list what stands in the way (`RetireRefused`, `MaintenanceCollision`).
"""

from __future__ import annotations

from typing import Sequence

from ..errors import FieldErrors
from ..models import Hire, MaintenanceBlock


class FleetError(FieldErrors):
    """Refusal with a message per field ("" key: for the whole form)."""


class RetireRefused(FleetError):
    """The car still has hires to come; they are listed so staff can move or cancel them."""

    def __init__(self, hires: Sequence[Hire]):
        super().__init__({"": f"This car has {len(hires)} hire{'s' if len(hires) != 1 else ''} "
                              "still to come. Move them to another car before retiring it."})
        self.hires = list(hires)


class MaintenanceCollision(FleetError):
    """The period overlaps hires (listed, so they can be moved) or another block."""

    def __init__(self, hires: Sequence[Hire], blocks: Sequence[MaintenanceBlock]):
        parts = []
        if hires:
            parts.append(f"{len(hires)} hire{'s' if len(hires) != 1 else ''}")
        if blocks:
            parts.append(f"{len(blocks)} other maintenance block{'s' if len(blocks) != 1 else ''}")
        super().__init__({"": f"The car is not free then: it overlaps {' and '.join(parts)}."
                              + (" Move the hires to another car first." if hires else "")})
        self.hires = list(hires)
        self.blocks = list(blocks)
