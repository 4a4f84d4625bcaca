"""Forms for the second factor, expired staff passwords and accepting a staff invitation."""

from __future__ import annotations


from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired, EqualTo, InputRequired, Length, ValidationError

from ..form_fields import REQUIRED, Form
from ..form_fields import strip as _clean
from ..settings import settings
from . import validators as v


class TwoFactorCodeForm(Form):
    code = StringField("Code", filters=[_clean], validators=[
        DataRequired("Enter the code from your authenticator app."), Length(max=24)])


class NewPasswordForm(Form):
    """A new password, twice, checked for strength (the account is already identified)."""

    password = PasswordField("New password", validators=[InputRequired(REQUIRED), Length(max=128)])
    confirm_password = PasswordField("Repeat new password", validators=[
        InputRequired(REQUIRED), EqualTo("password", "The passwords do not match.")])

    def user_inputs(self) -> list[str]:
        return []

    def validate_password(self, field):
        error = v.password_error(field.data or "",
                                 min_length=settings().security.password_min_length,
                                 min_score=settings().security.password_min_zxcvbn_score,
                                 user_inputs=self.user_inputs())
        if error:
            raise ValidationError(error)


class AcceptInviteForm(NewPasswordForm):
    """The invited person's first password; their email and name must not be in it."""

    def __init__(self, *args, invited_email: str = "", invited_name: str = "", **kwargs):
        super().__init__(*args, **kwargs)
        self._inputs = [invited_email, invited_name]

    def user_inputs(self) -> list[str]:
        return self._inputs
