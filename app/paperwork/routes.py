"""Paperwork pages: the agreement and invoices to download (the hire's customer and staff;
anyone else gets a 404, as for any hire not theirs), the agreement's status while its job
runs, and the staff list and CSV of invoices and credit notes by date range."""

from __future__ import annotations

from datetime import timedelta
from io import BytesIO
from zoneinfo import ZoneInfo

from flask import abort, current_app, flash, request, send_file, url_for
from flask_login import current_user

from ..models import utcnow
from ..security import allow
from ..hire_access import hire_by_reference, hire_visible_to
from ..web import render, see_other, wants_fragment
from . import bp, invoice_pdf, listing
from .agreements import agreement_for, agreement_visible_to, retry_failed
from .forms import DateRangeForm
from .invoicing import invoice_visible_to
from .summary import paperwork_of

CUSTOMER_OR_STAFF = ("customer", "staff", "admin")


def _pdf(data: bytes, filename: str):
    response = send_file(BytesIO(data), mimetype="application/pdf", as_attachment=True,
                         download_name=filename)
    response.cache_control.private = True
    response.cache_control.no_store = True
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


@bp.get("/hires/<reference>/agreement")
@allow(*CUSTOMER_OR_STAFF)
def agreement_status(reference: str):
    """The agreement's state: polls itself while the job makes it, then offers the PDF."""
    agreement = agreement_visible_to(reference, current_user)
    if agreement is None:
        abort(404)
    return render("paperwork/agreement.html", "paperwork/partials/_agreement_status.html",
                  agreement=agreement, hire=agreement.hire)


@bp.get("/hires/<reference>/addenda")
@allow(*CUSTOMER_OR_STAFF)
def addenda_status(reference: str):
    """The addenda to the hire's agreement: the list polls itself while one is being made."""
    hire = hire_visible_to(reference, current_user)
    papers = paperwork_of([hire.id])[hire.id] if hire is not None else None
    if papers is None or not papers.addenda:
        abort(404)
    return render("paperwork/addenda.html", "paperwork/partials/_addenda.html", hire=hire, papers=papers)


@bp.post("/hires/<reference>/agreement/retry")
@allow("staff", "admin")
def agreement_retry(reference: str):
    """Staff: make a failed agreement (and any failed addendum) again. Pressing twice, or
    after it was made, changes nothing."""
    hire = hire_by_reference(reference)
    if hire is None:
        abort(404)
    retried = retry_failed(hire, by=current_user, now=utcnow())
    if wants_fragment():
        return render("paperwork/agreement.html", "paperwork/partials/_agreement_status.html",
                      agreement=agreement_for(hire), hire=hire)
    names = " and ".join("the rental agreement" if document.sequence == 1 else f"addendum {document.sequence - 1}"
                         for document in retried)
    flash(f"Making {names} again." if retried else "Nothing to retry: the agreement is "
          "not in a failed state.", "success" if retried else "info")
    return see_other(url_for("counter.hire", reference=hire.reference))


@bp.get("/hires/<reference>/agreement.pdf")
@bp.get("/hires/<reference>/agreement/addendum-<int:number>.pdf")
@allow(*CUSTOMER_OR_STAFF)
def agreement_pdf(reference: str, number: int = 0):
    """The signed rental agreement (PDF), or its addendum `number` (1 for the first
    change after hand-over), once made."""
    agreement = agreement_visible_to(reference, current_user, sequence=number + 1)
    if agreement is None:
        abort(404)
    what = "agreement" if number == 0 else "addendum"
    if agreement.state == "erased":
        abort(410, f"This {what} was deleted with the customer's account.")
    if agreement.state != "ready":
        abort(409, f"The {what} is still being prepared; try again in a moment.")
    return _pdf(agreement.pdf, agreement.filename)


@bp.get("/documents/<int:invoice_id>.pdf")
@allow(*CUSTOMER_OR_STAFF)
def invoice_download(invoice_id: int):
    """A VAT invoice or credit note (PDF)."""
    invoice = invoice_visible_to(invoice_id, current_user)
    if invoice is None:
        abort(404)
    return _pdf(invoice_pdf.invoice_pdf(invoice), invoice.filename)


def _range():
    form = DateRangeForm(request.args)
    valid = form.validate()
    today = utcnow().astimezone(ZoneInfo(current_app.config["DEFAULT_TIMEZONE"])).date()
    end = (form.date_to.data if valid else None) or today
    start = (form.date_from.data if valid else None) or end.replace(day=1)
    longest = timedelta(days=current_app.config["INVOICE_LIST_MAX_DAYS"])
    if valid and end - start > longest:
        form.date_from.errors = [*form.date_from.errors,
                                 f"Choose at most {longest.days} days at a time."]
        valid, start = False, end - longest
    if not form.date_from.data:
        form.date_from.data = start
    if not form.date_to.data:
        form.date_to.data = end
    return form, start, end, valid


@bp.get("/invoices")
@allow("staff", "admin")
def invoices():
    """Invoices and credit notes issued between two dates, with their totals."""
    form, start, end, valid = _range()
    return render("paperwork/invoices.html", "paperwork/partials/_invoice_results.html",
                  200 if valid else 422, form=form, found=listing.find(start, end), start=start, end=end)


@bp.get("/invoices.csv")
@allow("staff", "admin")
def invoices_csv():
    """The same documents as CSV, for the accountant."""
    form, start, end, valid = _range()
    if not valid:
        abort(422, " ".join(f"{getattr(form, name).label.text}: {' '.join(messages)}"
                            for name, messages in form.errors.items()))
    name = f"acme-invoices-{start.isoformat()}-to-{end.isoformat()}.csv"
    return current_app.response_class(listing.csv_text(start, end), mimetype="text/csv",
                                      headers={"Content-Disposition": f'attachment; filename="{name}"'})
