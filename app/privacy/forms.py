"""The customer's data page: a button to build the download, and the deletion's confirmation."""

from __future__ import annotations

from wtforms import BooleanField, PasswordField
from wtforms.validators import DataRequired, InputRequired

from ..form_fields import Form


class ExportForm(Form):
    """Only the CSRF token: "Prepare my data"."""


class DeleteAccountForm(Form):
    understand = BooleanField("I understand that my account and personal data will be deleted for good",
                              validators=[DataRequired("Tick to confirm you want your account deleted.")])
    password = PasswordField("Your password", validators=[InputRequired("Enter your password to confirm.")])
