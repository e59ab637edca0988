"""Statements, their lines, the batches that make and mail them, and the email outbox.

Amounts are `MoneyField`s. A statement's totals are rounded to the cent once (billing.rounding);
its lines are allocated from those totals, so they add up to them. Statuses change only through
statements/services/ by the transitions statements/lifecycle.py declares, each change with its
audit event where a person or a batch decided it.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from billing.models import PI, BillingPeriod, Project
from billing.money import MoneyField


class StatementRun(models.Model):
    """One generation (and maybe sending) batch: who started it, what it asked, its progress.

    Progress is read live from the statements and emails that point at the run.
    """

    class Kind(models.TextChoices):
        GENERATE = "generate", "Generate"
        SEND = "send", "Send"

    period = models.ForeignKey(BillingPeriod, on_delete=models.PROTECT, related_name="+")
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.GENERATE)
    pi_email = models.EmailField("only PI", blank=True)
    draft = models.BooleanField(default=False)
    send = models.BooleanField(default=False)
    resend = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    acting_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    actor = models.CharField(max_length=150)
    # What the statements and emails of this run show of the institution's configuration
    # (name, contact, logo, email subject and sender), so every worker renders the same thing.
    settings_snapshot = models.JSONField(default=dict)
    # The generation summary: counts, exact totals per currency, excluded charges and why.
    summary = models.JSONField(default=dict)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "statement batch"
        verbose_name_plural = "statement batches"

    def __str__(self):
        what = "generate + send" if self.send and self.kind == self.Kind.GENERATE else self.kind
        return f"#{self.pk} {self.period_id and self.period.key} {what}"


class Statement(models.Model):
    """One PI's statement for one project, fund/org and currency in one period.

    `base_number` is stable: the same (period, PI, project, fund/org, currency) keeps it across
    regenerations. A revision made after a statement was sent gets `number` = base + "-R<n>"
    and the sent one points at it with `superseded_by` (and keeps its PDF and hash).
    """

    class Status(models.TextChoices):
        RENDERING = "rendering", "Rendering"
        READY = "ready", "Ready"
        QUEUED = "queued", "Queued for email"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"

    period = models.ForeignKey(BillingPeriod, on_delete=models.PROTECT, related_name="statements")
    pi = models.ForeignKey(PI, on_delete=models.PROTECT, related_name="statements")
    project = models.ForeignKey(Project, on_delete=models.PROTECT, related_name="statements")
    fund_org = models.TextField()
    currency = models.CharField(max_length=3)
    # What the statement prints, copied at generation: renaming a PI or a project later never
    # changes an issued statement (the PDF, the portal, the admin and the email read these).
    pi_email = models.EmailField("PI email (as printed)", blank=True)
    pi_name = models.CharField("PI name (as printed)", max_length=200, blank=True)
    project_code = models.CharField("project (as printed)", max_length=200, blank=True)
    project_name = models.TextField("project name (as printed)", blank=True)
    # Why a revision shows 0.00 ("charges moved to statement ST-…"); printed on its PDF.
    note = models.TextField(blank=True)
    number = models.CharField(max_length=40, unique=True)
    base_number = models.CharField(max_length=32, db_index=True)
    revision = models.PositiveIntegerField(default=0)  # 0: original; n: n-th revision after sending
    version = models.PositiveIntegerField(default=1)  # regenerations of this row (drafts replaced)
    is_draft = models.BooleanField(default=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RENDERING)
    error = models.TextField(blank=True)
    # Rounded to the cent (billing.rounding): list price, discount (= list - due), amount due.
    list_amount = MoneyField()
    discount_amount = MoneyField()
    due_amount = MoneyField()
    charge_count = models.PositiveIntegerField(default=0)
    # Distinct reference values on its charges: {"reference_1": ["NSF-…"], "cost_center": […]}
    references = models.JSONField(default=dict, blank=True)
    # Hash of the figures and lines: an unchanged sent statement is not revised.
    content_hash = models.CharField(max_length=64, blank=True)
    issued_on = models.DateField()
    pdf_path = models.CharField(max_length=300, blank=True)  # name in default_storage
    pdf_sha256 = models.CharField(max_length=64, blank=True)
    superseded_by = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="supersedes"
    )
    run = models.ForeignKey(
        StatementRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="statements"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    rendered_at = models.DateTimeField(null=True, blank=True)
    # Set when an email carrying it was sent, or may have been (an interrupted send): from then on
    # it is kept as it is, and a change makes a revision.
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["period", "number"]
        permissions = [
            ("generate_statement", "Can generate statements"),
            ("send_statement", "Can send statements by email"),
        ]
        indexes = [
            models.Index(fields=["period", "status"], name="statement_period_status"),
            models.Index(fields=["period", "pi"], name="statement_period_pi"),
        ]
        constraints = [
            # One current statement per group; superseded ones are kept beside it.
            models.UniqueConstraint(
                fields=["period", "pi", "project", "fund_org", "currency"],
                condition=Q(superseded_by__isnull=True),
                name="statement_one_current_per_group",
            ),
            models.CheckConstraint(
                condition=Q(status__in=["rendering", "ready", "queued", "sent", "failed"]),
                name="statement_status_valid",
            ),
            # Only a statement that was (or may have been) mailed is superseded: an unsent one
            # is replaced in place. So a superseded row is always kept with its sent_at.
            models.CheckConstraint(
                condition=Q(superseded_by__isnull=True) | Q(sent_at__isnull=False),
                name="statement_superseded_was_sent",
            ),
        ]

    def __str__(self):
        return self.number

    @property
    def is_current(self) -> bool:
        return self.superseded_by_id is None

    def printed(self) -> dict[str, str]:
        """PI and project as the statement prints them: its snapshot (taken at generation),
        or the linked rows for a statement made before snapshots existed."""
        if self.pi_email:
            return {
                "pi_email": self.pi_email,
                "pi_name": self.pi_name,
                "project_code": self.project_code,
                "project_name": self.project_name,
            }
        return {
            "pi_email": self.pi.email,
            "pi_name": self.pi.name,
            "project_code": self.project.code,
            "project_name": self.project.name,
        }


class StatementLine(models.Model):
    """A line of a statement: a section (a service, or a labelled credit/tax/refund/correction)
    or a detail line within it (a resource). Amounts allocated to the cent from the totals."""

    class Kind(models.TextChoices):
        SECTION = "section", "Section"
        DETAIL = "detail", "Detail"
        # Names part of its section's discount (an allowance, a subsidy); list and due are 0,
        # so sums of detail lines are unchanged; the amount is in discount_amount.
        REDUCTION = "reduction", "Reduction"

    statement = models.ForeignKey(Statement, on_delete=models.CASCADE, related_name="lines")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    position = models.PositiveIntegerField()
    section = models.PositiveIntegerField()  # position of the section line it belongs to
    # usage, credit, refund, tax, adjustment, correction, purchase
    category = models.CharField(max_length=20)
    label = models.TextField()
    service_name = models.TextField(blank=True)
    resource_id = models.TextField(blank=True)
    resource_name = models.TextField(blank=True)
    corrects_period = models.CharField(max_length=7, blank=True)
    quantity = MoneyField(null=True, blank=True)  # exact sum of ConsumedQuantity
    unit = models.TextField(blank=True)
    charge_count = models.PositiveIntegerField(default=0)
    list_amount = MoneyField()
    discount_amount = MoneyField()
    due_amount = MoneyField()

    class Meta:
        ordering = ["statement", "position"]
        constraints = [
            models.UniqueConstraint(
                fields=["statement", "position"], name="statement_line_position_unique"
            )
        ]

    def __str__(self):
        return f"{self.statement_id}:{self.position} {self.label}"


class StatementEmail(models.Model):
    """The outbox: one email to one PI in one batch, with the statements it carries.

    pending (statements still rendering) → queued → sending → sent | failed. The `sending`
    state is committed before the message is handed to the mail server, so a worker killed
    mid-send leaves a trace: the redelivered task sees `sending` and does not send again
    (at most once; see docs/statements.md).
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Waiting for statements"
        QUEUED = "queued", "Queued"
        SENDING = "sending", "Sending"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"

    run = models.ForeignKey(StatementRun, on_delete=models.PROTECT, related_name="emails")
    pi = models.ForeignKey(PI, on_delete=models.PROTECT, related_name="statement_emails")
    to_address = models.EmailField()
    statements = models.ManyToManyField(Statement, related_name="emails")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    error = models.TextField(blank=True)
    subject = models.CharField(max_length=300, blank=True)
    message_id = models.CharField(max_length=300, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    resend_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="resends"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    queued_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "statement email"
        indexes = [models.Index(fields=["run", "status"], name="statement_email_run_status")]
        constraints = [
            models.UniqueConstraint(fields=["run", "pi"], name="statement_email_one_per_pi_run"),
            models.CheckConstraint(
                condition=Q(status__in=["pending", "queued", "sending", "sent", "failed"]),
                name="statement_email_status_valid",
            ),
        ]

    def __str__(self):
        return f"#{self.pk} to {self.to_address} ({self.status})"


class EmailAttempt(models.Model):
    """The email log: one row per attempt to hand a statement email to the mail server."""

    class Outcome(models.TextChoices):
        SENDING = "sending", "In progress"
        SENT = "sent", "Sent"
        TRANSIENT = "transient", "Temporary failure (retried)"
        PERMANENT = "permanent", "Permanent failure"
        INTERRUPTED = "interrupted", "Interrupted (delivery unknown)"

    email = models.ForeignKey(StatementEmail, on_delete=models.CASCADE, related_name="log")
    number = models.PositiveIntegerField()
    outcome = models.CharField(max_length=12, choices=Outcome.choices, default=Outcome.SENDING)
    error = models.TextField(blank=True)
    message_id = models.CharField(max_length=300, blank=True)
    worker = models.CharField(max_length=200, blank=True)
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["email", "number"]
        constraints = [
            models.UniqueConstraint(fields=["email", "number"], name="email_attempt_unique")
        ]

    def __str__(self):
        return f"{self.email_id} attempt {self.number}: {self.outcome}"


class StatementNumber(models.Model):
    """The stable number of a statement group, assigned once and never reused."""

    period = models.ForeignKey(BillingPeriod, on_delete=models.PROTECT, related_name="+")
    pi = models.ForeignKey(PI, on_delete=models.PROTECT, related_name="+")
    project = models.ForeignKey(Project, on_delete=models.PROTECT, related_name="+")
    fund_org = models.TextField()
    currency = models.CharField(max_length=3)
    seq = models.PositiveIntegerField()
    base_number = models.CharField(max_length=32, unique=True)

    class Meta:
        ordering = ["period", "seq"]
        constraints = [
            models.UniqueConstraint(
                fields=["period", "pi", "project", "fund_org", "currency"],
                name="statement_number_one_per_group",
            ),
            models.UniqueConstraint(fields=["period", "seq"], name="statement_number_seq_unique"),
        ]

    def __str__(self):
        return self.base_number
