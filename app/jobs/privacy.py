"""The customer's own data (issue 18): building a "Download my data" ZIP."""

from __future__ import annotations

from ..models import utcnow
from ..privacy.exports import build_export
from ..queueing import task


@task
def build_data_export(export_id: int) -> None:
    """Write the ZIP of one pending export; a finished one is left alone (safe to run twice)."""
    build_export(export_id, now=utcnow())
