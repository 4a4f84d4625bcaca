"""The seller printed on every document, and the terms the customer signs, from settings and
files kept in the repository (README: "Paperwork")."""

from __future__ import annotations

from flask import current_app

# The terms are shared with the online check-in: one versioned text per file in docs/terms/,
# loaded by app/terms.py; paperwork prints the version the customer signed.
from ..terms import Terms, UnknownTerms as TermsMissing, load_terms as terms

__all__ = ["Terms", "TermsMissing", "seller", "terms"]


def seller() -> dict:
    """The company's details as they are now: frozen into each document when it is made."""
    cfg = current_app.config
    address = cfg["COMPANY_ADDRESS"]
    if isinstance(address, str):  # one line per comma, when set as plain text
        address = [part.strip() for part in address.split(",") if part.strip()]
    return {"name": cfg["COMPANY_LEGAL_NAME"], "address": list(address),
            "vat_number": cfg["COMPANY_VAT_NUMBER"], "registration": cfg["COMPANY_REGISTRATION"],
            "email": cfg["COMPANY_EMAIL"], "invoice_prefix": cfg["INVOICE_NUMBER_PREFIX"],
            "credit_note_prefix": cfg["CREDIT_NOTE_NUMBER_PREFIX"]}
