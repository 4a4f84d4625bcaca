"""Paperwork jobs: making a rental agreement's PDF (app/paperwork/agreements.py)."""

from __future__ import annotations

from ..paperwork import agreements
from ..queueing import task


@task
def generate_agreement(document_id: int) -> None:
    """Render, store and email one agreement document (safe to run again)."""
    agreements.generate(document_id)
