"""Users and the audit trail.

The audit trail lives here, at the bottom of the app stack (accounts ← billing ← statements,
journals), so every app can record what it decides without depending on the others.
"""

from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.core.exceptions import ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models

PI_LOGIN_NOT_STAFF = "A PI's portal login can't be staff or superuser; staff need their own login."


class User(AbstractUser):
    """A staff member or a PI. Roles are Django groups (accounts/roles.py); a PI's portal login
    (billing's `PI.user`) is never staff nor superuser, checked here on every save and, for the
    other side of the link, by `PI.save`."""

    class Meta:
        db_table = "accounts_user"

    def save(self, *args, **kwargs):
        # Every path (admin, shell, services) goes through save(); QuerySet.update does not,
        # which the database trigger of billing's migration covers.
        if (self.is_staff or self.is_superuser) and self.is_pi_login():
            raise ValidationError(PI_LOGIN_NOT_STAFF)
        super().save(*args, **kwargs)

    def is_pi_login(self) -> bool:
        """Linked to a PI (billing.PI.user, reverse name "pi"), looked up without importing
        billing: accounts sits below it."""
        if self.pk is None:
            return False
        link = self._meta.fields_map.get("pi")
        if link is None:
            return False
        return link.related_model._default_manager.filter(user_id=self.pk).exists()

    def clean(self):
        super().clean()
        if (self.is_staff or self.is_superuser) and self.is_pi_login():
            raise ValidationError({"is_staff": PI_LOGIN_NOT_STAFF})


class AuditEvent(models.Model):
    """One decision or state change: who, when, what, on which object, before, after, why.

    Written only by `accounts.services.audit_record`, inside the transaction of the change it
    records, so an event exists exactly when its change does. Never edited or deleted.
    """

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    # Who acted, as text: a username, or "os-user@cli" for the command line with no --user.
    actor = models.CharField(max_length=150)
    action = models.CharField(max_length=64, db_index=True)  # e.g. "import", "period.close"
    object_type = models.CharField(max_length=64, blank=True)
    object_id = models.CharField(max_length=64, blank=True)
    object_repr = models.CharField(max_length=200, blank=True)
    before = models.JSONField(null=True, blank=True, encoder=DjangoJSONEncoder)
    after = models.JSONField(null=True, blank=True, encoder=DjangoJSONEncoder)
    # Amounts and counts involved, as exact decimal strings where money.
    details = models.JSONField(default=dict, blank=True, encoder=DjangoJSONEncoder)
    reason = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["object_type", "object_id"])]

    def __str__(self):
        return f"{self.created_at:%Y-%m-%d %H:%M} {self.actor} {self.action} {self.object_repr}"
