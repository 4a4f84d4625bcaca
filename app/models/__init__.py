"""All models, importable from one place (and seen by Alembic)."""

from .audit import AuditRecord
from .checkin import HireCheckin, HireDriver
from .counter import Inspection, InspectionPhoto, OfflineStep
from .crypto import ChainCursor, ChainPayment, CryptoQuote, CryptoRefund, InvalidCryptoTransition
from .fleet import Branch, Car, CarClass, CarPhoto, MaintenanceBlock
from .hires import (OCCUPYING_STATES, TRANSITIONS, Hire, HireState, HireStateChange,
                    InvalidTransition, Occupancy)
from .licence import LicenceCheck, LicenceCheckStatus
from .mail import EmailFile, OutboundEmail
from .paperwork import Invoice, InvoiceCounter, RentalAgreement
from .payments import Payment, PaymentStateChange, StripeEvent
from .privacy import DataExport
from .pricing import DurationTier, Extra, OneWayFee, Season
from .refdata import REFERENCE_TABLES, ReferenceDataVersion
from .reporting import ReportFact, ReportGroupFact, ReportRefresh
from .types import utcnow
from .users import CustomerProfile, LicenceStatus, Role, User, UserSession, session_key_hash

__all__ = [
    "AuditRecord", "Branch", "Car", "CarClass", "CustomerProfile", "Hire", "HireState",
    "HireStateChange", "InvalidTransition", "LicenceStatus", "MaintenanceBlock", "OCCUPYING_STATES",
    "Occupancy", "OutboundEmail", "Payment", "Role", "TRANSITIONS", "User", "UserSession",
    "session_key_hash", "utcnow",
    "LicenceCheck", "LicenceCheckStatus",
    "CarPhoto", "ReportFact", "ReportGroupFact", "ReportRefresh",
    "DurationTier", "Extra", "OneWayFee", "Season",
    "ChainCursor", "ChainPayment", "CryptoQuote", "CryptoRefund", "InvalidCryptoTransition",
    "PaymentStateChange", "StripeEvent",
    "Inspection", "InspectionPhoto", "OfflineStep",
    "EmailFile", "Invoice", "InvoiceCounter", "RentalAgreement",
    "HireCheckin", "HireDriver", "DataExport",
    "REFERENCE_TABLES", "ReferenceDataVersion",
]
