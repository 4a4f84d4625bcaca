"""The rental agreement (or an addendum) as a PDF, from its frozen snapshot and the stored
signature and condition photos. Pure rendering: the same snapshot gives the same bytes."""

from __future__ import annotations

from pathlib import Path

from flask import current_app
from reportlab.lib.units import mm
from reportlab.platypus import Image, KeepTogether, Spacer

from ..filters import money
from ..models import RentalAgreement
from . import company
from .pdf import Rendered, body_sha256, p, render, table

INSPECTION_SUBDIR = "inspections"  # where the counter stores signatures and photos
THUMB_SIZE = 28 * mm


def _file(name: str) -> Path | None:
    path = Path(current_app.config["UPLOAD_DIR"]) / INSPECTION_SUBDIR / name
    return path if name and path.is_file() else None


def _image(name: str, width: float, height: float):
    path = _file(name)
    if path is None:
        return p("(image not available)", "small")
    img = Image(str(path))
    scale = min(width / img.imageWidth, height / img.imageHeight)
    img.drawWidth, img.drawHeight = img.imageWidth * scale, img.imageHeight * scale
    return img


def _pounds(pence: int, snap: dict) -> str:
    return money(pence, snap.get("currency", "GBP"))


def _parties(snap: dict) -> list:
    seller, customer = snap["seller"], snap["customer"]
    return [table([["Hirer (the company)", "Renter (you)"],
                   ["\n".join([seller["name"], *seller["address"], f"VAT {seller['vat_number']}"]),
                    "\n".join([customer["name"], *customer["address"], customer["email"]])]],
                  widths=[85 * mm, 85 * mm])]


def _car_and_times(snap: dict) -> list:
    car = snap["car"]
    return [p("The car and the hire", "h2"), table([
        ["Car", f"{car['make']} {car['model']} ({car['year']}, {car['class']}, {car['fuel']}, {car['transmission']})"],
        ["Registration plate", car["plate"]], ["VIN", car["vin"] or "not recorded"],
        ["Pick up", f"{snap['start']} at {snap['pickup_branch']['name']}, {snap['pickup_branch']['address']}"],
        ["Return", f"{snap['end']} at {snap['return_branch']['name']}, {snap['return_branch']['address']}"],
    ], widths=[40 * mm, 130 * mm], header=False)]


def _money(snap: dict) -> list:
    rows = [["Price (fixed at booking)", "Amount"]]
    rows += [[line["label"], _pounds(line["amount_pence"], snap)] for line in snap["price_lines"]]
    rows.append(["Total", _pounds(snap["total_pence"], snap)])
    deposit = snap["deposit"]
    return [p("Price and deposit", "h2"), table(rows, widths=[130 * mm, 40 * mm]),
            p(f"Deposit: {_pounds(deposit['amount_pence'], snap)}. {deposit['how']}")]


def _rules(snap: dict) -> list:
    r = snap["rules"]
    pounds = lambda pence: _pounds(pence, snap)  # noqa: E731
    return [p("Cover and extras", "h2"), *[p(line) for line in snap["cover"]],
            p("Mileage, fuel and late return", "h2"), table([
                ["Mileage allowance", f"{r['miles_per_day']} miles a day; {pounds(r['excess_mile_pence'])} a mile beyond"],
                ["Fuel", f"Return it as it left; {pounds(r['fuel_eighth_pence'])} per eighth of a tank missing, "
                         f"plus a {pounds(r['refuelling_fee_pence'])} refuelling fee"],
                ["Late return", f"{r['late_grace_minutes']} minutes' grace, then {pounds(r['late_hour_pence'])} "
                                "per started hour (at most the day rate per 24 hours)"],
                ["Cleaning", f"{pounds(r['cleaning_fee_pence'])} when the car needs more than a normal clean"],
                ["Early return", f"{r['unused_day_percent']}% of each whole unused day back"],
            ], widths=[40 * mm, 130 * mm], header=False)]


def _condition(snap: dict) -> list:
    cond = snap["condition"]
    rows = [["Panel", "State", "Note", "Photos"]]
    for panel, entry in cond["checklist"].items():
        thumbs = [_image(name, THUMB_SIZE, THUMB_SIZE) for name in cond["photos"].get(panel, [])]
        rows.append([panel.capitalize(), entry["state"], entry.get("note", ""),
                     table([thumbs], header=False) if thumbs else "no photo"])
    return [p("Condition out", "h2"),
            p(f"Odometer {cond['odometer']} miles; fuel {cond['fuel_eighths']}/8 of a tank."),
            table(rows, widths=[25 * mm, 20 * mm, 50 * mm, 75 * mm])]


def _terms(version: str) -> list:
    text = company.terms(version)
    title, *paragraphs = text.paragraphs
    return [p(title, "h2"), *[p(para, "small") for para in paragraphs]]


def _signature(snap: dict) -> list:
    sig, handed = snap["signature"], snap.get("handed_over")
    return [KeepTogether([
        p("Signed", "h2"),
        p(f"I, {snap['customer']['name']}, have read the terms (version above) and the condition record, "
          "and agree to them."),
        _image(sig["file"], 80 * mm, 27 * mm),
        p(f"Signed at {sig['signed_at']}, witnessed by {sig['witness']} for {snap['seller']['name']}."
          + (f" Keys handed over by {handed['by']} at {handed['at']}." if handed else "")),
    ])]


def _addendum(snap: dict) -> list:
    rows = [[change["label"], change["before"], change["after"]] for change in snap.get("changes", [])]
    return [p("What changes", "h2"), table([["", "Before", "After"], *rows], widths=[50 * mm, 60 * mm, 60 * mm])]


def make_flowables(document: RentalAgreement):
    """The document's content, fresh each call (ReportLab consumes flowables)."""
    snap = document.snapshot
    heading = ("Rental agreement" if document.kind == "agreement"
               else f"Addendum {document.sequence - 1} to the rental agreement")

    def make():
        parts = [p(f"{heading} {snap['reference']}", "title"), *_parties(snap), Spacer(1, 4 * mm),
                 *_car_and_times(snap)]
        if document.kind == "addendum":
            parts += _addendum(snap)
        else:
            parts += [*_money(snap), *_rules(snap), *_condition(snap), *_terms(document.terms_version)]
        return parts + [p(f"Terms version {document.terms_version}.", "small"), *_signature(snap)]
    return make, f"{heading} {snap['reference']}"


def render_document(document: RentalAgreement) -> Rendered:
    make, title = make_flowables(document)
    return render(make, title, f"{document.snapshot['seller']['name']} · {title}")


def rendered_body_sha256(document: RentalAgreement) -> str:
    """Render the body again from what is stored: equal to the footer's hash if unchanged."""
    make, title = make_flowables(document)
    return body_sha256(make, title)
