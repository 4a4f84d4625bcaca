"""Account forms. Single-field rules here; rules across fields live in services."""

from __future__ import annotations


from wtforms import BooleanField, DateField, EmailField, PasswordField, StringField, TelField
from wtforms.validators import DataRequired, Email, EqualTo, InputRequired, Length, Optional, ValidationError
from wtforms.widgets import PasswordInput

from ..form_fields import REQUIRED, Form
from ..form_fields import strip as _clean
from ..licence import check_code_error
from ..settings import settings
from . import validators as v


def _password_field(label: str, **kwargs) -> PasswordField:
    return PasswordField(label, validators=[InputRequired(REQUIRED), Length(max=128)], **kwargs)


PASSWORDS_EMPTIED = ("Both password fields were emptied because the password was not accepted: "
                     "type it again in both.")


class ProfileFields(Form):
    full_name = StringField("Full name", filters=[_clean], validators=[
        DataRequired(REQUIRED), Length(min=2, max=120)])
    date_of_birth = DateField("Date of birth", validators=[
        InputRequired("Enter your date of birth.")])
    phone = TelField("Phone", filters=[_clean], validators=[DataRequired(REQUIRED), Length(max=20)])
    address_line1 = StringField("Address", filters=[_clean], validators=[
        DataRequired(REQUIRED), Length(max=100)])
    address_line2 = StringField("Address line 2", filters=[_clean], validators=[
        Optional(), Length(max=100)])
    town = StringField("Town or city", filters=[_clean], validators=[
        DataRequired(REQUIRED), Length(max=60)])
    postcode = StringField("Postcode", filters=[_clean], validators=[
        DataRequired(REQUIRED), Length(max=10)])
    licence_number = StringField("Driving licence number", filters=[_clean], validators=[
        DataRequired(REQUIRED), Length(max=24)])
    licence_expires_on = DateField("Licence valid until (4b)", validators=[
        InputRequired("Enter the date in section 4b of your licence.")])

    def validate_phone(self, field):
        if v.normalise_phone(field.data or "") is None:
            raise ValidationError("Enter a valid phone number, like 07911 123456.")

    def validate_postcode(self, field):
        error = v.postcode_error(field.data or "")
        if error:
            raise ValidationError(error)


class _CheckCode:
    """The gov.uk licence check code: 8 letters and digits (spaces ignored)."""

    def __call__(self, form, field):
        error = check_code_error(field.data or "")
        if error:
            raise ValidationError(error)


def _check_code_field(*, required: bool) -> StringField:
    first = InputRequired("Enter the check code from gov.uk.") if required else Optional()
    return StringField("Licence check code", filters=[_clean], validators=[
        first, Length(max=20, message="A check code has 8 characters."), _CheckCode()])


class SignUpForm(ProfileFields):
    """Sign-up. A form refused for another field keeps the typed passwords (hide_value=False,
    answered with Cache-Control: no-store), so the customer does not lose them; a refused
    password empties both fields and says so beside them."""

    email = EmailField("Email", filters=[_clean], validators=[
        DataRequired(REQUIRED), Length(max=254),
        Email("Enter an email address like name@example.com.", check_deliverability=False)])
    password = _password_field("Password", widget=PasswordInput(hide_value=False))
    confirm_password = PasswordField("Repeat password", widget=PasswordInput(hide_value=False),
                                     validators=[InputRequired(REQUIRED),
                                                 EqualTo("password", "The passwords do not match.")])
    check_code = _check_code_field(required=False)  # licence check straight after sign-up

    def validate_password(self, field):
        _check_strength(field, [self.email.data or "", self.full_name.data or ""])

    def forget_refused_passwords(self) -> None:
        """When either password field was refused, empty both and say why beside them."""
        if self.password.errors or self.confirm_password.errors:
            self.password.data = self.confirm_password.data = ""
            self.password.errors = [*self.password.errors, PASSWORDS_EMPTIED]


class ProfileForm(ProfileFields):
    pass


class SignInForm(Form):
    email = EmailField("Email", filters=[_clean], validators=[DataRequired(REQUIRED), Length(max=254)])
    password = PasswordField("Password", validators=[InputRequired(REQUIRED), Length(max=128)])
    remember = BooleanField("Keep me signed in on this device")


class ChangePasswordForm(Form):
    current_password = PasswordField("Current password", validators=[InputRequired(REQUIRED),
                                                                      Length(max=128)])
    password = _password_field("New password")
    confirm_password = PasswordField("Repeat new password", validators=[
        InputRequired(REQUIRED), EqualTo("password", "The passwords do not match.")])
    # The account's email and name: the view sets them, so the new password may not be built
    # from them (zxcvbn only knows to penalise what it is told about, as at sign-up).
    user_inputs: tuple[str, ...] = ()

    def validate_password(self, field):
        _check_strength(field, list(self.user_inputs))


class ForgotPasswordForm(Form):
    email = EmailField("Email", filters=[_clean], validators=[
        DataRequired(REQUIRED), Length(max=254),
        Email("Enter an email address like name@example.com.", check_deliverability=False)])


class ResetPasswordForm(Form):
    password = _password_field("New password")
    confirm_password = PasswordField("Repeat new password", validators=[
        InputRequired(REQUIRED), EqualTo("password", "The passwords do not match.")])
    # The account's email and name: the view sets them, so the new password may not be built
    # from them (zxcvbn only knows to penalise what it is told about, as at sign-up).
    user_inputs: tuple[str, ...] = ()

    def validate_password(self, field):
        _check_strength(field, list(self.user_inputs))


def _check_strength(field, user_inputs: list[str]) -> None:
    error = v.password_error(
        field.data or "",
        min_length=settings().security.password_min_length,
        min_score=settings().security.password_min_zxcvbn_score,
        user_inputs=user_inputs,
    )
    if error:
        raise ValidationError(error)


class LicenceCheckForm(Form):
    """The customer checks the licence on their profile with a gov.uk check code."""

    check_code = _check_code_field(required=True)


class LicenceRecheckForm(Form):
    """Counter staff re-check a hirer's licence; a new code is optional (the last one is reused)."""

    check_code = _check_code_field(required=False)
