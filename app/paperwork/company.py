"""The seller printed on every document, and the terms the customer signs, from settings and
files kept in the repository (README: "Paperwork")."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from flask import current_app

TERMS_DIR = Path(__file__).resolve().parent / "terms"


class TermsMissing(RuntimeError):
    """TERMS_VERSION names a text that is not in app/paperwork/terms/ (a deployment mistake)."""


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


@dataclass(frozen=True)
class Terms:
    version: str
    text: str  # Markdown-ish: "# title", numbered paragraphs, **bold**

    @property
    def paragraphs(self) -> list[str]:
        """The text as paragraphs (blank-line separated, lines joined), title first."""
        blocks = [" ".join(line.strip() for line in block.splitlines())
                  for block in self.text.strip().split("\n\n")]
        return [b.lstrip("# ").replace("**", "") for b in blocks if b]


def terms(version: str | None = None) -> Terms:
    """The terms text of `version` (the current TERMS_VERSION by default)."""
    version = version or current_app.config["TERMS_VERSION"]
    path = TERMS_DIR / f"{version}.md"
    if not version.replace("-", "").replace("_", "").isalnum() or not path.is_file():
        raise TermsMissing(f"No terms text {version!r} in {TERMS_DIR}")
    return Terms(version, path.read_text(encoding="utf-8"))
