"""Admin forms: staff invitations and changes, prices, and the audit and report filters."""

from __future__ import annotations

import re

from wtforms import BooleanField, DateField, EmailField, SelectField, StringField
from wtforms.validators import DataRequired, Email, InputRequired, Length, Optional as Opt
from wtforms.validators import ValidationError

from ..form_fields import (REQUIRED, DateWithin, Form, InRange, IntSelectField, Money,
                           WholeNumberField)
from ..form_fields import strip as _clean

CODE_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,23}$")


def _lower(value):
    return value.lower() if isinstance(value, str) else value


# --- staff ---------------------------------------------------------------------------------

ROLE_CHOICES = [("staff", "Staff (counter and fleet)"), ("admin", "Admin (also staff, prices, reports)")]


class StaffFields(Form):
    full_name = StringField("Full name", filters=[_clean], validators=[
        DataRequired(REQUIRED), Length(min=2, max=120, message="Enter 2 to 120 characters.")])
    role = SelectField("Role", choices=ROLE_CHOICES)
    branch_id = IntSelectField("Branch", validate_choice=False)

    def set_branches(self, branches) -> None:
        self.branch_id.choices = [(0, "No branch (admins only)")] + [(b.id, b.name) for b in branches]


class InviteForm(StaffFields):
    email = EmailField("Email", filters=[_clean], validators=[
        DataRequired(REQUIRED), Length(max=254),
        Email("Enter an email address like name@example.com.", check_deliverability=False)])


class StaffForm(StaffFields):
    pass


# --- prices --------------------------------------------------------------------------------

class ClassRatesForm(Form):
    daily_rate = StringField("Daily rate (£)", filters=[_clean], validators=[
        DataRequired("Enter the daily rate."), Money()])
    deposit = StringField("Deposit (£)", filters=[_clean], validators=[
        DataRequired("Enter the deposit (0 for none)."), Money()])
    mileage_allowance_per_day = WholeNumberField("Miles a day", example=10, validators=[
        InputRequired("Enter the daily mileage allowance."),
        InRange(0, 10_000, "Enter from 0 to 10,000 miles a day.")])


class TierForm(Form):
    min_days = WholeNumberField("From (days)", example=7, validators=[
        InputRequired("Enter the number of days."), InRange(2, 365, "Enter from 2 to 365 days.")])
    percent_off = WholeNumberField("Discount (%)", example=10, validators=[
        InputRequired("Enter the discount."), InRange(1, 90, "Enter from 1% to 90%.")])


class SeasonForm(Form):
    code = StringField("Code", filters=[_clean, _lower],
                       validators=[DataRequired(REQUIRED), Length(max=24)])
    name = StringField("Name", filters=[_clean], validators=[
        DataRequired(REQUIRED), Length(max=60)])
    starts_on = DateField("First day", validators=[InputRequired("Enter the first day.")])
    ends_on = DateField("Last day", validators=[InputRequired("Enter the last day.")])
    percent = WholeNumberField("Change (%)", example=20, validators=[
        InputRequired("Enter the change, e.g. 20 or -10."),
        InRange(-99, 200, "Enter from -99% to 200%.")])

    def validate_code(self, field):
        if not CODE_RE.match(field.data or ""):
            raise ValidationError("Use lower-case letters, digits, - and _ (up to 24).")


class ExtraForm(Form):
    code = StringField("Code", filters=[_clean, _lower],
                       validators=[DataRequired(REQUIRED), Length(max=24)])
    name = StringField("Name", filters=[_clean], validators=[
        DataRequired(REQUIRED), Length(max=60)])
    description = StringField("Description", filters=[_clean], validators=[
        Opt(), Length(max=200)])
    per_day = StringField("Per day (£)", filters=[_clean], validators=[
        DataRequired("Enter the price per day."), Money()])
    cap = StringField("Cap per hire (£)", filters=[_clean], validators=[Money(optional=True)])
    max_quantity = WholeNumberField("Most per hire", example=1, validators=[
        InputRequired(REQUIRED), InRange(1, 9, "Enter from 1 to 9.")])
    group = StringField("Exclusive group", filters=[_clean], validators=[Opt(), Length(max=24)])
    sort_order = WholeNumberField("Order", default=0, example=10, validators=[
        Opt(), InRange(0, 999, "Enter from 0 to 999.")])
    active = BooleanField("Offered to customers", default=True)

    def validate_code(self, field):
        if not CODE_RE.match(field.data or ""):
            raise ValidationError("Use lower-case letters, digits, - and _ (up to 24).")

    def validate_group(self, field):
        if field.data and not CODE_RE.match(field.data):
            raise ValidationError("Use lower-case letters, digits, - and _ (up to 24).")


class OneWayFeeForm(Form):
    from_branch_id = IntSelectField("From", validate_choice=False)
    to_branch_id = IntSelectField("To", validate_choice=False)
    fee = StringField("Fee (£)", filters=[_clean], validators=[
        DataRequired("Enter the fee (0 for none)."), Money()])

    def set_branches(self, branches) -> None:
        choices = [(0, "Choose a branch")] + [(b.id, b.name) for b in branches]
        self.from_branch_id.choices = choices
        self.to_branch_id.choices = choices


# --- audit log and reports (GET forms: no CSRF token) ---------------------------------------

class AuditFilterForm(Form):
    class Meta:
        csrf = False

    person = StringField("Person", filters=[_clean], validators=[Opt(), Length(max=254)])
    hire = StringField("Hire reference", filters=[_clean], validators=[Opt(), Length(max=12)])
    car = StringField("Car plate", filters=[_clean], validators=[Opt(), Length(max=12)])
    action = SelectField("Action", default="")
    date_from = DateField("From", validators=[Opt(), DateWithin()])
    date_to = DateField("To", validators=[Opt(), DateWithin()])
    page = WholeNumberField("Page", default=1, validators=[Opt()])

    def validate_date_to(self, field):
        if field.data and self.date_from.data and field.data < self.date_from.data:
            raise ValidationError("The end date is before the start date.")


class ReportForm(Form):
    class Meta:
        csrf = False

    date_from = DateField("From", validators=[Opt(), DateWithin()])
    date_to = DateField("To", validators=[Opt(), DateWithin()])
    period = SelectField("Per", choices=[("week", "Week"), ("month", "Month")], default="week")
    by = SelectField("Utilisation by", choices=[("class", "Class"), ("branch", "Branch"),
                                                ("car", "Car")], default="class")

    def validate_date_to(self, field):
        if field.data and self.date_from.data and field.data < self.date_from.data:
            raise ValidationError("The end date is before the start date.")
