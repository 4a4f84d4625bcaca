"""All models, importable from one place (and seen by Alembic)."""

from .audit import AuditRecord
from .fleet import Branch, Car, CarClass, MaintenanceBlock
from .hires import (OCCUPYING_STATES, TRANSITIONS, Hire, HireState, HireStateChange,
                    InvalidTransition, Occupancy)
from .mail import OutboundEmail
from .payments import Payment
from .types import utcnow
from .users import CustomerProfile, LicenceStatus, Role, User

__all__ = [
    "AuditRecord", "Branch", "Car", "CarClass", "CustomerProfile", "Hire", "HireState",
    "HireStateChange", "InvalidTransition", "LicenceStatus", "MaintenanceBlock", "OCCUPYING_STATES",
    "Occupancy", "OutboundEmail", "Payment", "Role", "TRANSITIONS", "User", "utcnow",
]
