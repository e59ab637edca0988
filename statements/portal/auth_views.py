"""Login, logout and password pages for the portal (Django's views, our templates and forms).

The reset form also serves a PI who was never invited: see forms.PortalPasswordResetForm.
"""

from django.contrib.auth import views as auth
from django.urls import path, reverse_lazy

from .forms import PortalAuthenticationForm, PortalPasswordResetForm, PortalSetPasswordForm

urlpatterns = [
    path(
        "login/",
        auth.LoginView.as_view(
            template_name="registration/login.html",
            authentication_form=PortalAuthenticationForm,
            redirect_authenticated_user=True,
        ),
        name="portal-login",
    ),
    path("logout/", auth.LogoutView.as_view(), name="logout"),
    path(
        "password/reset/",
        auth.PasswordResetView.as_view(
            form_class=PortalPasswordResetForm,
            template_name="registration/password_reset_form.html",
            email_template_name="registration/password_reset_email.txt",
            html_email_template_name="registration/password_reset_email.html",
            subject_template_name="registration/password_reset_subject.txt",
        ),
        name="password_reset",
    ),
    path(
        "password/reset/sent/",
        auth.PasswordResetDoneView.as_view(template_name="registration/password_reset_done.html"),
        name="password_reset_done",
    ),
    path(
        "password/reset/<uidb64>/<token>/",
        auth.PasswordResetConfirmView.as_view(
            form_class=PortalSetPasswordForm,
            template_name="registration/password_reset_confirm.html",
            post_reset_login=False,
        ),
        name="password_reset_confirm",
    ),
    path(
        "password/reset/done/",
        auth.PasswordResetCompleteView.as_view(
            template_name="registration/password_reset_complete.html"
        ),
        name="password_reset_complete",
    ),
    path(
        "password/change/",
        auth.PasswordChangeView.as_view(
            template_name="registration/portal_password_change.html",
            success_url=reverse_lazy("portal:profile"),
        ),
        name="password_change",
    ),
]
