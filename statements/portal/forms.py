"""Portal forms, laid out by django-crispy-forms (bootstrap4 pack, styled by portal.css)."""

from __future__ import annotations

from urllib.parse import urlsplit

from crispy_forms.helper import FormHelper
from crispy_forms.layout import Submit
from django import forms
from django.contrib.auth.forms import AuthenticationForm, PasswordResetForm, SetPasswordForm

from accounts.models import User
from billing.services.pis import pi_login_for_reset
from openchargeback import links


def _helper(label: str, css: str = "btn-primary") -> FormHelper:
    helper = FormHelper()
    helper.form_tag = False  # templates write <form> (method, action, csrf)
    helper.add_input(Submit("submit", label, css_class=css))
    return helper


class PortalAuthenticationForm(AuthenticationForm):
    """Django's login form; the username field takes an email or a username."""

    def __init__(self, request=None, *args, **kwargs):
        super().__init__(request, *args, **kwargs)
        self.fields["username"].label = "Email or username"
        self.helper = _helper("Log in")


class PortalPasswordResetForm(PasswordResetForm):
    """ "Forgot password" for every login with this email, and for a PI known from the billing
    data who has no login yet: one is made (never staff) and the link goes to the PI's email.

    Like Django's form, it says the same thing whether or not the email is known.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.helper = _helper("Send me a link")

    def save(self, *args, **kwargs):
        # The link starts with OPENCHARGEBACK_BASE_URL, like every link in mail, never with
        # the Host header the request came with (openchargeback/links.py).
        site = urlsplit(links.base_url())
        kwargs["domain_override"] = site.netloc
        kwargs["use_https"] = site.scheme == "https"
        return super().save(*args, **kwargs)

    def get_users(self, email):
        users = list(
            User.objects.filter(email__iexact=email.strip(), is_active=True).order_by("id")
        )
        if not users:
            created = pi_login_for_reset(email=email)
            users = [created] if created is not None else []
        # Invited logins have no usable password yet; staff without one (single sign-on) are
        # left alone, as Django does.
        return [u for u in users if u.has_usable_password() or not u.is_staff]


class PortalSetPasswordForm(SetPasswordForm):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.helper = _helper("Set my password")


class DelegateGrantForm(forms.Form):
    email = forms.EmailField(
        label="Delegate's email",
        help_text="A lab or grants manager who may read your statements and charges.",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.helper = _helper("Grant access")


class PINameForm(forms.Form):
    name = forms.CharField(
        label="Your name",
        max_length=200,
        help_text="How emails and new statements address you. Statements already sent keep "
        "the name they printed.",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.helper = _helper("Save name", css="btn-secondary")


class ProfileForm(forms.ModelForm):
    class Meta:
        model = User
        fields = ("first_name", "last_name")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.helper = _helper("Save", css="btn-secondary")
