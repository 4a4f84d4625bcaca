"""Admin pages (admins only, by the blueprint's guard): home, prices, audit log, reports.
The staff pages are staff_routes.py.

Thin: parse the form, call a service, render.
"""

from __future__ import annotations

import time
from datetime import date
from typing import Any, Optional
from zoneinfo import ZoneInfo

import click
from flask import Response, abort, current_app, flash, render_template, request, url_for
from flask_login import current_user

from ..extensions import db
from ..form_fields import ConfirmForm, parse_pounds, pounds
from ..models import CarClass, utcnow
from ..web import add_errors, render, see_other
from . import audit_log, bp, charts, services, staff
from .forms import (AuditFilterForm, ClassRatesForm, ExtraForm, OneWayFeeForm, ReportForm,
                    SeasonForm, TierForm)
from .reports.freshness import ensure_fresh, request_refresh
from .reports.periods import GROUPINGS, ReportError, default_range, local_today
from .reports.refresh import history_range, refresh
from .reports.tables import SECTIONS, Report, build, to_csv
from .services import AdminError, ClassRates


def _today() -> date:
    return local_today()


@bp.get("/")
def home():
    """Admin home: where to go."""
    return render_template("admin/home.html", staff_count=len(staff.staff_members()))


# --- prices ----------------------------------------------------------------------------------

RATE_KINDS: dict[str, Any] = {}


def _rate_kinds() -> dict[str, Any]:
    """kind -> (form class, model, values from form, fill form from row)."""
    if RATE_KINDS:
        return RATE_KINDS
    from ..models import DurationTier, Extra, OneWayFee, Season

    def extra_values(f):
        return {"code": f.code.data, "name": f.name.data, "description": f.description.data or "",
                "per_day_pence": parse_pounds(f.per_day.data),
                "cap_pence": parse_pounds(f.cap.data) if f.cap.data else None,
                "max_quantity": f.max_quantity.data, "group": f.group.data or "",
                "sort_order": f.sort_order.data or 0, "active": bool(f.active.data)}

    def extra_fill(f, row):
        for name in ("code", "name", "description", "max_quantity", "group", "sort_order", "active"):
            getattr(f, name).data = getattr(row, name)
        f.per_day.data, f.cap.data = pounds(row.per_day_pence), pounds(row.cap_pence)

    def one_way_fill(f, row):
        f.from_branch_id.data, f.to_branch_id.data = row.from_branch_id, row.to_branch_id
        f.fee.data = pounds(row.fee_pence)

    RATE_KINDS.update({
        "tier": (TierForm, DurationTier,
                 lambda f: {"min_days": f.min_days.data, "percent_off": f.percent_off.data},
                 lambda f, row: _copy(f, row, ("min_days", "percent_off"))),
        "season": (SeasonForm, Season,
                   lambda f: {"code": f.code.data, "name": f.name.data, "starts_on": f.starts_on.data,
                              "ends_on": f.ends_on.data, "percent": f.percent.data},
                   lambda f, row: _copy(f, row, ("code", "name", "starts_on", "ends_on", "percent"))),
        "extra": (ExtraForm, Extra, extra_values, extra_fill),
        "one_way_fee": (OneWayFeeForm, OneWayFee,
                        lambda f: {"from_branch_id": f.from_branch_id.data,
                                   "to_branch_id": f.to_branch_id.data,
                                   "fee_pence": parse_pounds(f.fee.data)},
                        one_way_fill),
    })
    return RATE_KINDS


def _copy(form, row, names) -> None:
    for name in names:
        getattr(form, name).data = getattr(row, name)


def _prepared(form, branches):
    if hasattr(form, "set_branches"):
        form.set_branches(branches)
    return form


def _prices_page(status: int = 200, posted: Optional[tuple[str, Any]] = None):
    """Every rate as an editable row, plus an "add" row per table; `posted` keeps a failed form."""
    branches = services.branches()
    kinds = _rate_kinds()
    tables = services.rate_tables()
    class_forms = []
    for cls in services.car_classes():
        prefix = f"class-{cls.id}"
        if posted and posted[0] == prefix:
            form = posted[1]
        else:
            form = ClassRatesForm(formdata=None, prefix=prefix)
            form.daily_rate.data = pounds(cls.daily_rate_pence)
            form.deposit.data = pounds(cls.deposit_pence)
            form.mileage_allowance_per_day.data = cls.mileage_allowance_per_day
        class_forms.append((cls, form))
    rate_forms: dict[str, list] = {}
    for kind, key in (("tier", "tiers"), ("season", "seasons"), ("extra", "extras"),
                      ("one_way_fee", "one_way_fees")):
        form_class, _, _, fill = kinds[kind]
        rows = []
        for row in tables[key]:
            prefix = f"{kind}-{row.id}"
            if posted and posted[0] == prefix:
                form = posted[1]
            else:
                form = _prepared(form_class(formdata=None, prefix=prefix), branches)
                fill(form, row)
            rows.append((row, form))
        prefix = f"{kind}-new"
        new = posted[1] if posted and posted[0] == prefix else _prepared(
            form_class(formdata=None, prefix=prefix), branches)
        rate_forms[kind] = [*rows, (None, new)]
    return render_template("admin/prices.html", class_forms=class_forms, rate_forms=rate_forms,
                           confirm=ConfirmForm(formdata=None), branches={b.id: b for b in branches}), status


@bp.get("/prices")
def prices():
    """Class rates and the booking engine's tables; changes apply to new quotes only."""
    return _prices_page()


@bp.post("/prices/classes/<int:class_id>")
def class_rates(class_id: int):
    """New daily rate, deposit and mileage allowance for a class."""
    cls = db.session.get(CarClass, class_id)
    if cls is None:
        abort(404)
    form = ClassRatesForm(prefix=f"class-{cls.id}")
    if form.validate_on_submit():
        try:
            changed = services.update_class_rates(cls, ClassRates(
                daily_rate_pence=parse_pounds(form.daily_rate.data),
                deposit_pence=parse_pounds(form.deposit.data),
                mileage_allowance_per_day=form.mileage_allowance_per_day.data), by=current_user)
        except AdminError as exc:
            add_errors(form, exc.errors)
        else:
            flash(f"{cls.name}: new rates apply to quotes from now on; existing bookings keep "
                  f"their prices." if changed else f"{cls.name}: nothing changed.", "success")
            return see_other(url_for("admin.prices") + f"#class-{cls.id}")
    return _prices_page(422, (f"class-{cls.id}", form))


def _rate_row(kind: str, row_id: Optional[int]):
    kinds = _rate_kinds()
    if kind not in kinds:
        abort(404)
    form_class, model, values_of, _ = kinds[kind]
    row = None
    if row_id is not None:
        row = db.session.get(model, row_id)
        if row is None:
            abort(404)
    return form_class, values_of, row


@bp.post("/prices/<kind>/new", defaults={"row_id": None})
@bp.post("/prices/<kind>/<int:row_id>")
def save_rate(kind: str, row_id: Optional[int]):
    """Add or change a duration tier, season, extra or one-way fee."""
    form_class, values_of, row = _rate_row(kind, row_id)
    prefix = f"{kind}-{row_id if row_id is not None else 'new'}"
    form = _prepared(form_class(prefix=prefix), services.branches())
    if form.validate_on_submit():
        try:
            services.save_rate_row(kind, row, values_of(form), by=current_user)
        except AdminError as exc:
            add_errors(form, exc.errors)
        else:
            flash("Saved: it applies to quotes from now on.", "success")
            return see_other(url_for("admin.prices") + f"#{kind}s")
    return _prices_page(422, (prefix, form))


@bp.post("/prices/<kind>/<int:row_id>/delete")
def delete_rate(kind: str, row_id: int):
    """Remove a duration tier, season or one-way fee."""
    if kind == "extra":
        abort(404)  # extras are switched off, so old bookings still name them
    _, _, row = _rate_row(kind, row_id)
    if not ConfirmForm().validate_on_submit():
        abort(400)
    services.delete_rate_row(kind, row, by=current_user)
    flash("Removed: it no longer applies to new quotes.", "success")
    return see_other(url_for("admin.prices") + f"#{kind}s")


# --- audit log -------------------------------------------------------------------------------

def _audit_filters():
    """The filters asked for; one that failed its check (and says so) is left out."""
    form = AuditFilterForm(request.args)
    form.action.choices = [("", "Any action")] + [(a, a) for a in audit_log.actions()]
    valid = form.validate()

    def value(field) -> str:
        return "" if field.errors else (field.data or "")

    dates_ok = not (form.date_from.errors or form.date_to.errors)
    filters = audit_log.AuditFilters(
        person=value(form.person), hire=value(form.hire), car=value(form.car),
        action=value(form.action),
        date_from=form.date_from.data if dates_ok else None,
        date_to=form.date_to.data if dates_ok else None,
        page=form.page.data if isinstance(form.page.data, int) and form.page.data > 0 else 1)
    return form, filters, valid


@bp.get("/audit")
def audit():
    """Who changed what: filter by person, hire, car, action and date."""
    form, filters, valid = _audit_filters()
    result = audit_log.search(filters)
    query = {k: v for k, v in request.args.items() if k != "page"}
    return render("admin/audit.html", "admin/partials/_audit_results.html", 200 if valid else 422,
                  form=form, result=result,
                  page_url=lambda n: url_for("admin.audit", **{**query, "page": n}),
                  csv_url=url_for("admin.audit_csv", **query))


@bp.get("/audit.csv")
def audit_csv():
    """The matching audit records as CSV."""
    form, filters, valid = _audit_filters()
    if not valid:
        abort(422, " ".join(f"{getattr(form, name).label.text}: {' '.join(messages)}"
                            for name, messages in form.errors.items()))
    name = f"acme-audit-{_today().isoformat()}.csv"
    # Built in full (in batches) while the request's session is open; an audit log of this
    # size fits in memory comfortably.
    body = "".join(audit_log.csv_rows(filters))
    return Response(body, mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


# --- reports ---------------------------------------------------------------------------------

def _report_params(form: ReportForm):
    """The range, period and grouping asked for (defaults where left empty); ReportError if invalid."""
    valid = form.validate()
    start, end = default_range(_today())
    if valid and form.date_from.data:
        start = form.date_from.data
    if valid and form.date_to.data:
        end = form.date_to.data
    form.date_from.data, form.date_to.data = start, end
    period = form.period.data if form.period.data in ("week", "month") else "week"
    grouping = form.by.data if form.by.data in GROUPINGS else "class"
    if not valid:
        raise ReportError({})
    return form, start, end, period, grouping


@bp.get("/reports")
def reports_page():
    """Utilisation, revenue and what went wrong: charts with the numbers beside them."""
    form = ReportForm(request.args)
    try:
        form, start, end, period, grouping = _report_params(form)
        as_of = ensure_fresh(start, end, today=_today(), now=utcnow())
        # Per car, the page shows the least-used cars (the ones to act on); the CSV has all.
        report = build(start, end, period_kind=period, grouping=grouping, as_of=as_of,
                       car_limit=current_app.config["REPORT_MAX_ROWS_SHOWN"],
                       clock=time.perf_counter)
    except ReportError as exc:
        add_errors(form, exc.errors)
        return render_template("admin/reports.html", form=form, report=None), 422
    return render_template("admin/reports.html", form=form, report=report,
                           charts=_report_charts(report), query=request.args.to_dict(),
                           confirm=ConfirmForm(formdata=None))


@bp.post("/reports/refresh")
def refresh_reports():
    """Roll the figures for the shown range up again now (e.g. after a late refund)."""
    if not ConfirmForm().validate_on_submit():
        abort(400)
    try:
        _, start, end, _, _ = _report_params(ReportForm(request.args))
        request_refresh(start, end, job_id=f"report-refresh-{start}-{end}-{utcnow():%Y%m%d%H%M%S}")
    except ReportError as exc:
        abort(422, " ".join(exc.errors.values()))
    flash("The figures are being refreshed; reload the page in a minute.", "info")
    return see_other(url_for("admin.reports_page", **request.args.to_dict()))


@bp.cli.command("refresh-reports")
@click.option("--from", "date_from", type=click.DateTime(["%Y-%m-%d"]), default=None,
              help="First day (default: the first hire).")
@click.option("--to", "date_to", type=click.DateTime(["%Y-%m-%d"]), default=None,
              help="Last day (default: the last hire's end, or today).")
def refresh_reports_command(date_from, date_to) -> None:
    """Roll up the report figures (nightly, from a timer): the whole history by default."""
    first, last = history_range(_today())
    start = date_from.date() if date_from else first
    end = date_to.date() if date_to else last
    started = time.perf_counter()
    written = refresh(start, end, now=utcnow())
    click.echo(f"Report figures for {start} to {end}: {written} rows in "
               f"{time.perf_counter() - started:.1f} s.")


def _report_charts(report: Report) -> dict[str, Any]:
    # Short labels along the axis ("07 Sep", "Sep 26"); the tables have the full ones.
    zone = ZoneInfo(current_app.config["DEFAULT_TIMEZONE"])
    fmt = "%b %y" if report.period_kind == "month" else "%d %b"
    labels = [p.starts_at.astimezone(zone).strftime(fmt) for p in report.periods]
    util = report.utilisation
    rows = util.rows if report.grouping != "car" else report.utilisation_overall.rows
    series = [charts.Series(str(r[0]), r[1:-1]) for r in rows]
    outcome_rows = {r[0]: r[1:-1] for r in report.outcomes.rows}
    return {
        "utilisation": charts.line_chart(
            series, labels, chart_id="chart-utilisation", y_max=100.0, fmt=charts.percent,
            title="Utilisation by " + ("class" if report.grouping == "class" else
                                       "branch" if report.grouping == "branch" else "fleet"),
            desc="Percentage of fleet hours booked in each period; the table beside has the numbers."),
        "revenue_method": charts.bar_chart(
            [charts.Series(str(r[0]), r[1:-1]) for r in report.revenue_by_method.rows[:-1]], labels,
            chart_id="chart-revenue-method", stacked=True, fmt=charts.pounds_short,
            title="Revenue by payment method",
            desc="Card and crypto revenue per period, stacked; the table beside has the numbers."),
        "revenue_class": charts.bar_chart(
            [charts.Series(str(r[0]), r[1:-1]) for r in report.revenue_by_class.rows], labels,
            chart_id="chart-revenue-class", stacked=True, fmt=charts.pounds_short,
            title="Revenue by class",
            desc="Revenue per period by car class, stacked; the table beside has the numbers."),
        "outcomes": charts.bar_chart(
            [charts.Series(name, outcome_rows.get(name, [])) for name in
             ("Cancellations", "No-shows", "Late returns", "Damage charges (number)")],
            labels, chart_id="chart-outcomes",
            title="Cancellations, no-shows, late returns and damage charges",
            desc="Counts per period, side by side; the table beside has the numbers."),
    }


@bp.get("/reports/<section>.csv")
def report_csv(section: str):
    """One report table as CSV, for the same range and grouping as the page."""
    if section not in SECTIONS:
        abort(404)
    try:
        _, start, end, period, grouping = _report_params(ReportForm(request.args))
        as_of = ensure_fresh(start, end, today=_today(), now=utcnow())
        report = build(start, end, period_kind=period, grouping=grouping, as_of=as_of)
    except ReportError as exc:
        abort(422, " ".join(exc.errors.values()))
    name = f"acme-{section}-{start.isoformat()}-{end.isoformat()}.csv"
    return Response(to_csv(SECTIONS[section](report)), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})
