"""Forms of the online check-in and of extending a hire (issue 18). Single-field rules here;
the window, the terms version, the photo's safety and the car's freedom are the services'."""

from __future__ import annotations

from flask_wtf.file import FileField
from wtforms import BooleanField, HiddenField, StringField
from wtforms.validators import InputRequired, Length, Optional

from ..form_fields import Form, WholeNumberField
from .forms import DATETIME_FORMATS, LocalDateTimeField

REQUIRED = "This field is required."


class CheckinForm(Form):
    confirm_details = BooleanField("My details above are correct")
    accept_terms = BooleanField("I have read and accept the terms of hire")
    terms_version = HiddenField()
    licence_photo = FileField("Photo of the front of your driving licence")


class DriverForm(Form):
    full_name = StringField("Driver's full name", validators=[
        InputRequired("Enter the driver's full name as on their licence."), Length(max=120)])
    licence_number = StringField("Driving licence number", validators=[
        InputRequired("Enter the driver's licence number."), Length(max=24)])
    check_code = StringField("Their gov.uk check code", validators=[
        InputRequired("Enter the check code the driver got from gov.uk/view-driving-licence."),
        Length(max=16)])


class ExtendForm(Form):
    """The new return time (local at the return branch). `expected_extra` carries the price
    the confirm step showed; `expected_end` the hire's end the page was built on, so a second
    extension sent from an older page is refused rather than added twice."""

    return_at = LocalDateTimeField("New return time", format=DATETIME_FORMATS,
                                   validators=[InputRequired("Enter the new return date and time.")])
    expected_extra = WholeNumberField("Price shown", validators=[Optional()])
    expected_end = HiddenField()
    swap_car = WholeNumberField("Car", validators=[Optional()])
