"""Fleet forms. Field shapes here; rules across fields and the database live in services."""

from __future__ import annotations

from flask_wtf.file import MultipleFileField
from wtforms import (DateTimeLocalField, HiddenField, IntegerField, SelectField, StringField,
                     TextAreaField)
from wtforms.validators import DataRequired, InputRequired, Length, Optional as Opt
from wtforms.validators import ValidationError

from ..form_fields import (Form, InRange, IntSelectField, Money, WholeNumberField, parse_pounds,
                           pounds)
from ..form_fields import strip as _clean
from ..models.fleet import FUEL_TYPES, MAINTENANCE_KINDS, TRANSMISSIONS
from . import validators as v
from .car_records import CarData
from .fleet_list import SORTS, STATUS_FILTERS, FleetFilters


def _whole(label: str, low: int, high: int, unit: str = "") -> IntegerField:
    return WholeNumberField(label, validators=[
        InputRequired(f"Enter the {label.split(' (')[0].lower()}."),
        InRange(low, high, f"Enter from {_number(low)} to {_number(high)}{unit}.")])


def _number(n: int) -> str:
    return f"{n:,}" if n >= 10_000 else str(n)  # 1,000,000 miles but the year 1990


class CarForm(Form):
    plate = StringField("Registration plate", filters=[_clean], validators=[
        DataRequired("Enter the registration plate."), Length(max=12)])
    vin = StringField("VIN", filters=[_clean], validators=[
        DataRequired("Enter the VIN (vehicle identification number)."), Length(max=24)])
    make = StringField("Make", filters=[_clean], validators=[DataRequired("Enter the make."),
                                                              Length(max=40)])
    model = StringField("Model", filters=[_clean], validators=[DataRequired("Enter the model."),
                                                                Length(max=40)])
    year = _whole("Year", 1900, 2100)
    car_class_id = IntSelectField("Class", validate_choice=False,
                                  validators=[InputRequired("Choose a class.")])
    seats = _whole("Seats", 1, 9)
    doors = _whole("Doors", 2, 5)
    transmission = SelectField("Transmission", choices=[(t, t.title()) for t in TRANSMISSIONS],
                               validate_choice=True)
    fuel_type = SelectField("Fuel", choices=[(f, f.title()) for f in FUEL_TYPES])
    co2_g_km = _whole("CO2 (g/km)", 0, 500, " g/km")
    odometer_miles = _whole("Odometer (miles)", 0, 1_000_000, " miles")
    home_branch_id = IntSelectField("Home branch", validate_choice=False,
                                    validators=[InputRequired("Choose a branch.")])
    daily_rate_override = StringField("Daily rate override (£)", filters=[_clean], validators=[
        Opt(), Length(max=12),
        Money(message="Enter an amount in pounds, like 45 or 45.50, or leave it empty.")])
    photos = MultipleFileField("Photos", render_kw={"accept": "image/jpeg,image/png,image/webp"})

    def set_choices(self, classes, branches) -> None:
        self.car_class_id.choices = [(0, "Choose a class")] + [
            (c.id, f"{c.name} ({c.code})") for c in classes]
        self.home_branch_id.choices = [(0, "Choose a branch")] + [(b.id, b.name) for b in branches]

    def validate_plate(self, field):
        error = v.plate_error(field.data or "")
        if error:
            raise ValidationError(error)

    def validate_vin(self, field):
        error = v.vin_error(field.data or "")
        if error:
            raise ValidationError(error)

    def validate_make(self, field):
        error = v.name_error(field.data or "", "make")
        if error:
            raise ValidationError(error)

    def validate_model(self, field):
        error = v.name_error(field.data or "", "model")
        if error:
            raise ValidationError(error)

    def validate_car_class_id(self, field):
        if not field.data:
            raise ValidationError("Choose a class.")

    def validate_home_branch_id(self, field):
        if not field.data:
            raise ValidationError("Choose a branch.")

    def to_data(self) -> CarData:
        rate = self.daily_rate_override.data
        return CarData(
            plate=self.plate.data or "", vin=self.vin.data or "", make=self.make.data or "",
            model=self.model.data or "", year=self.year.data or 0,
            car_class_id=self.car_class_id.data or 0, seats=self.seats.data or 0,
            doors=self.doors.data or 0, transmission=self.transmission.data or "",
            fuel_type=self.fuel_type.data or "", co2_g_km=self.co2_g_km.data or 0,
            odometer_miles=self.odometer_miles.data or 0,
            home_branch_id=self.home_branch_id.data or 0,
            daily_rate_override_pence=parse_pounds(rate) if rate else None,
        )

    def fill_from(self, car) -> None:
        for name in ("plate", "vin", "make", "model", "year", "car_class_id", "seats", "doors",
                     "transmission", "fuel_type", "co2_g_km", "odometer_miles", "home_branch_id"):
            getattr(self, name).data = getattr(car, name)
        self.plate.data = v.format_plate(car.plate)
        self.daily_rate_override.data = pounds(car.daily_rate_override_pence)

    def uploads(self) -> list[bytes]:
        return [f.read() for f in (self.photos.data or []) if getattr(f, "filename", "")]


class PhotoUploadForm(Form):
    photos = MultipleFileField("Add photos", render_kw={"accept": "image/jpeg,image/png,image/webp"})

    def uploads(self) -> list[bytes]:
        return [f.read() for f in (self.photos.data or []) if getattr(f, "filename", "")]


class FleetFilterForm(Form):
    """The fleet list's filters (GET, so no CSRF token)."""

    class Meta:
        csrf = False

    q = StringField("Search", filters=[_clean], validators=[Opt(), Length(max=60)])
    car_class = IntSelectField("Class", validate_choice=False, default=0)
    branch = IntSelectField("Branch", validate_choice=False, default=0)
    fuel = SelectField("Fuel", choices=[("", "Any fuel")] + [(f, f.title()) for f in FUEL_TYPES],
                       default="")
    transmission = SelectField("Gearbox", choices=[("", "Any gearbox")]
                               + [(t, t.title()) for t in TRANSMISSIONS], default="")
    status = SelectField("Status", choices=[("available", "In the fleet"), ("retired", "Retired"),
                                            ("all", "All")], default="available")
    sort = SelectField("Sort by", choices=[("plate", "Plate"), ("make", "Make"), ("year", "Year"),
                                           ("class", "Class"), ("branch", "Branch"),
                                           ("odometer", "Mileage"), ("added", "Date added")],
                       default="plate")
    order = SelectField("Order", choices=[("asc", "Ascending"), ("desc", "Descending")],
                        default="asc")
    page = WholeNumberField("Page", default=1, validators=[Opt()])

    def set_choices(self, classes, branches) -> None:
        self.car_class.choices = [(0, "Any class")] + [(c.id, c.name) for c in classes]
        self.branch.choices = [(0, "Any branch")] + [(b.id, b.name) for b in branches]

    def filters(self):
        """What to search for; a value that failed its check (and says so) is left out."""

        def pick(value, allowed, default):
            return value if value in allowed else default

        return FleetFilters(
            q="" if self.q.errors else (self.q.data or "")[:60], car_class_id=self.car_class.data or None,
            branch_id=self.branch.data or None, fuel_type=pick(self.fuel.data, FUEL_TYPES, ""),
            transmission=pick(self.transmission.data, TRANSMISSIONS, ""),
            status=pick(self.status.data, STATUS_FILTERS, "available"),
            sort=pick(self.sort.data, SORTS, "plate"), descending=self.order.data == "desc",
            page=self.page.data if isinstance(self.page.data, int) and self.page.data > 0 else 1,
        )


class MaintenanceForm(Form):
    kind = SelectField("Reason", choices=[("service", "Service"), ("repair", "Repair"),
                                          ("mot", "MOT")])
    starts_at = DateTimeLocalField("From", format="%Y-%m-%dT%H:%M",
                                   validators=[InputRequired("Enter when the work starts.")])
    ends_at = DateTimeLocalField("Until", format="%Y-%m-%dT%H:%M",
                                 validators=[InputRequired("Enter when the car is back.")])
    note = TextAreaField("Note", filters=[_clean], validators=[Opt(), Length(max=300)])

    def validate_kind(self, field):
        if field.data not in MAINTENANCE_KINDS:
            raise ValidationError("Choose service, repair or MOT.")


class MoveHireForm(Form):
    to_car_id = IntSelectField("Move to", validate_choice=False)
    return_to = HiddenField()
