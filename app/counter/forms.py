"""Counter forms. The panel checklist is built from CONDITION_PANELS."""

from __future__ import annotations


from flask_wtf.file import FileField, FileRequired
from wtforms import BooleanField, HiddenField, SelectField, StringField, TextAreaField
from wtforms.validators import DataRequired, InputRequired, Length, NumberRange, Optional, ValidationError

from ..form_fields import Form, IntSelectField, WholeNumberField
from ..web import bounded_int
from ..models.counter import PANEL_STATES
from ..settings import settings

FUEL_CHOICES = [(i, f"{i}/8" if 0 < i < 8 else ("Empty" if i == 0 else "Full")) for i in range(9)]
# No level on record (a car's first pickup): nothing is chosen for the staff member, because
# any level guessed could cost the customer money at the return.
NO_FUEL_LEVEL = ("", "Choose the level on the gauge")
REQUIRED = "This field is required."


def fuel_level(value):
    """The select's value as eighths (None: nothing chosen yet)."""
    if value in ("", None):
        return None
    return bounded_int(value)


VERSION_MAX_DIGITS = 9  # far more versions than a record ever reaches; bounds int()
STALE_PAGE = "This page is out of date. Reload it and try again."


class VersionedForm(Form):
    """Carries the record version the tablet saw (optimistic locking).

    Empty means the page showed no record yet; anything else must be a version we issued,
    or the step is refused (garbage must not skip the check)."""
    version = HiddenField()

    def validate_version(self, field) -> None:
        data = field.data or ""
        if data and not (data.isascii() and data.isdigit() and len(data) <= VERSION_MAX_DIGITS):
            raise ValidationError(STALE_PAGE)

    def validate(self, extra_validators=None) -> bool:
        valid = super().validate(extra_validators)
        # The field is hidden: say it for the form as a whole, where the tablet shows it.
        self.form_errors.extend(e for e in self.version.errors if e not in self.form_errors)
        return valid

    @property
    def version_number(self) -> int | None:
        """The version sent (only read after validation, which refused anything but digits)."""
        return int(self.version.data) if self.version.data else None


class IdCheckForm(VersionedForm):
    id_matches = BooleanField("Photo ID seen and matches the booking",
                              validators=[DataRequired("Tick only when you have seen the photo ID.")])


def condition_form(formdata=None, **kwargs) -> Form:
    """Odometer, fuel, cleaning and one state + note per panel."""

    class ConditionForm(VersionedForm):
        odometer = WholeNumberField("Odometer (miles)", validators=[
            InputRequired(REQUIRED), NumberRange(min=0, max=1_000_000, message="Enter the miles shown.")])
        fuel_eighths = IntSelectField("Fuel", choices=[NO_FUEL_LEVEL, *FUEL_CHOICES], coerce=fuel_level,
                                      validators=[InputRequired("Choose the fuel level on the gauge.")])
        needs_cleaning = BooleanField("Needs more than a standard clean")

    for panel in settings().counter.condition_panels:
        # Named in full for assistive technology ("Front condition"); the panel's legend says
        # which panel on screen, so the visible labels need not repeat it (templates/counter).
        setattr(ConditionForm, f"panel_{panel}", SelectField(
            f"{panel.capitalize()} condition", choices=[(s, s.capitalize()) for s in PANEL_STATES], default="ok"))
        setattr(ConditionForm, f"note_{panel}", StringField(
            f"{panel.capitalize()} note", validators=[Optional(), Length(max=200)]))
    if formdata is None:
        return ConditionForm(**kwargs)
    return ConditionForm(formdata=formdata, **kwargs)


class PhotoForm(Form):
    # Own ids: the damage form on the same screen has a "panel" too.
    panel = SelectField("Part of the car", id="photo-panel", validators=[InputRequired(REQUIRED)])
    photo = FileField("Photo", validators=[FileRequired("Take or choose a photo.")])

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.panel.choices = [(p, p.capitalize()) for p in settings().counter.condition_panels]


class SignatureForm(VersionedForm):
    signature = HiddenField("Signature", validators=[DataRequired("Ask the customer to sign in the box.")])


class HandOverForm(VersionedForm):
    pass


class RefuseForm(Form):
    reason = TextAreaField("Why the car cannot be handed over", validators=[
        DataRequired("Say why the car cannot be handed over."), Length(max=300)])


class NoShowForm(Form):
    """Confirm a no-show (the form only carries the CSRF token)."""


class DamageForm(VersionedForm):
    panel = SelectField("Part of the car", id="damage-panel", validators=[InputRequired(REQUIRED)])
    amount = StringField("Charge (£)", validators=[DataRequired(REQUIRED), Length(max=12)])
    reason = StringField("What is damaged", validators=[DataRequired("Say what the damage is."),
                                                        Length(max=200)])

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.panel.choices = [(p, p.capitalize()) for p in settings().counter.condition_panels]

    def amount_pence(self) -> int | None:
        """Pounds as typed ("120", "120.50", "£1,200") to pence, or None if not a sum of money."""
        text = (self.amount.data or "").replace("£", "").replace(",", "").strip()
        pounds, _, pence = text.partition(".")
        if not pounds.isdigit() or (pence and (not pence.isdigit() or len(pence) > 2)):
            return None
        return int(pounds) * 100 + int(pence.ljust(2, "0") or 0)


class WaiveForm(VersionedForm):
    code = HiddenField(validators=[DataRequired()])
    reason = StringField("Reason for waiving", validators=[
        DataRequired("Give a reason for waiving this charge."), Length(max=200)])


class SettleForm(VersionedForm):
    pass
