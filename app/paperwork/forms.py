"""The staff list's date range (a GET form: no CSRF token)."""

from __future__ import annotations

from wtforms import DateField
from wtforms.validators import Optional as Opt
from wtforms.validators import ValidationError

from ..form_fields import DateWithin, Form


class DateRangeForm(Form):
    class Meta:
        csrf = False

    date_from = DateField("From", validators=[Opt(), DateWithin()])
    date_to = DateField("To", validators=[Opt(), DateWithin()])

    def validate_date_to(self, field):
        if field.data and self.date_from.data and field.data < self.date_from.data:
            raise ValidationError("The end date is before the start date.")
