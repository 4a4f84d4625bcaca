""""Download my data": a ZIP of everything held about the customer, built by a job.

The ZIP holds `data.json` (app/privacy/collect.py), the customer's licence photos and
pickup signatures as they are stored, and the documents other areas add through the
`customer_documents` event (the rental agreements and invoices of the paperwork area). It is
written under a random name in the uploads' `exports` folder, offered for DATA_EXPORT_HOURS
behind the customer's sign-in, then deleted by the tick.
"""

from __future__ import annotations

import io
import json
import os
import re
import secrets
import tempfile
import zipfile
from datetime import datetime, timedelta
from pathlib import Path

from flask import current_app
from sqlalchemy import select

from .. import audit, events
from ..extensions import db
from ..logging_setup import log
from ..models import DataExport, HireCheckin, Inspection, User
from ..queueing import enqueue_or_leave_for_recovery
from .collect import collect, customer_hires

EXPORT_SUBDIR = "exports"
BUILD_TASK = "app.jobs.privacy.build_data_export"
EXPORT_NAME_RE = re.compile(r"^[0-9a-f]{32}\.zip$")
SAFE_DOCUMENT_RE = re.compile(r"[^A-Za-z0-9._-]+")


def export_dir() -> Path:
    return Path(current_app.config["UPLOAD_DIR"]) / EXPORT_SUBDIR


def latest_export(user: User) -> DataExport | None:
    return db.session.scalar(select(DataExport).where(DataExport.user_id == user.id)
                             .order_by(DataExport.id.desc()).limit(1))


def request_export(user: User, *, now: datetime) -> DataExport:
    """Ask for a new ZIP (a job builds it). One being built already is given back."""
    latest = latest_export(user)
    if latest is not None and latest.state == "pending":
        return latest
    export = DataExport(user_id=user.id, state="pending", requested_at=now, filename="", size_bytes=0)
    db.session.add(export)
    audit.record(user, "privacy.export_requested", user, {}, {}, at=now)
    db.session.commit()
    enqueue_or_leave_for_recovery(BUILD_TASK, export.id, job_id=f"data-export-{export.id}")
    return export


def _add_file(archive: zipfile.ZipFile, arcname: str, path: Path) -> None:
    if path.is_file():
        archive.write(path, arcname)


def build_export(export_id: int, *, now: datetime) -> DataExport | None:
    """Write the ZIP for a pending export (safe to run twice: a finished one is left alone)."""
    export = db.session.get(DataExport, export_id)
    if export is None or export.state != "pending":
        return export
    user = db.session.get(User, export.user_id)
    data = collect(user, now=now)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("data.json", json.dumps(data, indent=2, ensure_ascii=False))
        uploads = Path(current_app.config["UPLOAD_DIR"])
        for hire in customer_hires(user):
            checkin = db.session.scalar(select(HireCheckin).where(HireCheckin.hire_id == hire.id))
            if checkin is not None and checkin.licence_photo_filename:
                _add_file(archive, f"licence-photos/{hire.reference}-{checkin.licence_photo_filename}",
                          uploads / "licences" / checkin.licence_photo_filename)
            pickup = db.session.scalar(select(Inspection).where(Inspection.hire_id == hire.id,
                                                                Inspection.kind == "pickup"))
            if pickup is not None and pickup.signature_filename:
                _add_file(archive, f"signatures/{hire.reference}-{pickup.signature_filename}",
                          uploads / "inspections" / pickup.signature_filename)
        for _receiver, documents in events.customer_documents.send(user):
            for name, content in documents or []:
                archive.writestr(f"documents/{SAFE_DOCUMENT_RE.sub('_', name)[:100]}", content)
    directory = export_dir()
    directory.mkdir(parents=True, exist_ok=True)
    filename = f"{secrets.token_hex(16)}.zip"
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".export-")
    with os.fdopen(fd, "wb") as handle:
        handle.write(buffer.getvalue())
    os.replace(tmp, directory / filename)
    export.filename, export.size_bytes = filename, len(buffer.getvalue())
    export.ready_at = now
    export.move_to("ready")
    export.expires_at = now + timedelta(hours=current_app.config["DATA_EXPORT_HOURS"])
    db.session.commit()
    log().info("data export built", export_id=export.id, size_bytes=export.size_bytes)
    return export


def export_path(export: DataExport) -> Path | None:
    if not EXPORT_NAME_RE.match(export.filename or ""):
        return None
    return export_dir() / export.filename


def delete_export_file(export: DataExport) -> None:
    path = export_path(export)
    if path is not None:
        path.unlink(missing_ok=True)


def expire_exports(now: datetime) -> list[int]:
    """Delete the ZIPs whose time is up (the tick). Returns the exports expired."""
    due = list(db.session.scalars(select(DataExport).where(
        DataExport.state == "ready", DataExport.expires_at <= now)))
    for export in due:
        delete_export_file(export)
        export.filename = ""
        export.move_to("expired")
    db.session.commit()
    return [e.id for e in due]
