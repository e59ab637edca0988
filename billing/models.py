"""Billing data: sources, periods, PIs, projects, the account map, imports and charges.

Amounts are `MoneyField`s (exact decimals; see billing/money.py). Statuses change only through
billing/services.py, which records an audit event for each change.
"""

from __future__ import annotations

import enum
import re
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q

from accounts.models import PI_LOGIN_NOT_STAFF

from .money import MoneyField

PERIOD_KEY_REGEX = r"^[0-9]{4}-(0[1-9]|1[0-2])$"
PERIOD_RE = re.compile(PERIOD_KEY_REGEX)  # a period key, YYYY-MM


class Source(models.Model):
    """Where billing data comes from (a cloud account family, the HPC cluster, storage).

    Rows are created and kept in step with the configuration file's `sources` list on import;
    staff may also add sources in the admin.
    """

    name = models.SlugField(max_length=50, unique=True)
    display_name = models.CharField(max_length=100, blank=True)
    # Regex searched in an uploaded file's name to guess its source.
    filename_pattern = models.CharField(max_length=200, blank=True)
    # Journal credit side for this source's charges.
    credit_fund_org = models.CharField(max_length=100, blank=True)
    account_code = models.CharField(max_length=40, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name


class BillingPeriod(models.Model):
    """A month of billing, keyed "YYYY-MM".

    open → closed (no more imports) → finalized (permanent). Changed only by the period services.
    """

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        CLOSED = "closed", "Closed"
        FINALIZED = "finalized", "Finalized"

    key = models.CharField("period", max_length=7, unique=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    created_at = models.DateTimeField(auto_now_add=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    finalized_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-key"]
        permissions = [("transition_period", "Can close, reopen and finalize periods")]
        constraints = [
            models.CheckConstraint(
                condition=Q(key__regex=PERIOD_KEY_REGEX), name="billing_period_key_is_month"
            ),
            models.CheckConstraint(
                condition=Q(status__in=["open", "closed", "finalized"]),
                name="billing_period_status_valid",
            ),
        ]

    def __str__(self):
        return self.key

    def is_open(self) -> bool:
        return self.status == self.Status.OPEN

    def is_locked(self) -> bool:
        """Finalized periods refuse every write, from every entry point."""
        return self.status == self.Status.FINALIZED


class FiguresVersion(models.Model):
    """How many times a period's charges (or status) changed: cached figures of the period are
    keyed by it (billing/selectors: `figures_versions`), so a figure is current or not found.

    Raised by `billing.services.figures.figures_changed` in the same transaction as the change,
    by an UPDATE whose row lock orders concurrent writers: the counter's order is their commit
    order, which the latest import or decision id (allocated when a transaction starts writing)
    is not. A period without a row has not changed since it was created (counter 0).
    """

    period = models.OneToOneField(
        BillingPeriod, primary_key=True, on_delete=models.CASCADE, related_name="figures_version"
    )
    counter = models.BigIntegerField(default=0)

    def __str__(self):
        return f"{self.period_id}: {self.counter}"


class PI(models.Model):
    """A principal investigator, known by email (lowercase)."""

    email = models.EmailField(unique=True)
    # The display name (emails, statements, the portal). Set in the admin or by the PI in the
    # portal; an import fills it only while it is empty (tag `pi_name`, the account map).
    name = models.CharField(max_length=200, blank=True)
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="pi",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["email"]
        verbose_name = "PI"
        verbose_name_plural = "PIs"

    def __str__(self):
        return self.name or self.email

    def save(self, *args, **kwargs):
        # A PI's login is never staff (accounts.User.save checks the other side of the link).
        if self._login_is_staff():
            raise ValidationError(PI_LOGIN_NOT_STAFF)
        super().save(*args, **kwargs)

    def clean(self):
        super().clean()
        if self._login_is_staff():
            raise ValidationError({"user": PI_LOGIN_NOT_STAFF})

    def _login_is_staff(self) -> bool:
        if self.user_id is None:
            return False
        return (
            type(self)
            .user.field.related_model.objects.filter(
                Q(is_staff=True) | Q(is_superuser=True), pk=self.user_id
            )
            .exists()
        )


class Project(models.Model):
    """A research project, known by the project_id tag."""

    code = models.CharField("project id", max_length=200, unique=True)
    name = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["code"]

    def __str__(self):
        return self.code


class ReviewPattern(models.Model):
    """A regular expression the review uses: a flag pattern (a row whose service name, resource
    id or resource name it finds is flagged) or a fund/org pattern (a fund/org must match one in
    full, or the row is flagged).

    The configuration file's `review` section seeds these rows (billing/services/patterns.py);
    after that the rows are what imports, review and journals use, edited in the admin, each
    change audited (billing/reference_audit.py).
    """

    class Kind(models.TextChoices):
        FLAG = "flag", "Flag pattern"
        FUND_ORG = "fund_org", "Fund/org pattern"

    class Origin(models.TextChoices):
        CONFIG = "config", "Configuration file"
        ADMIN = "admin", "Admin"

    kind = models.CharField(max_length=10, choices=Kind.choices)
    pattern = models.CharField(max_length=500, help_text="A Python regular expression.")
    # Matches without regard to case (the earlier tool's flag patterns did).
    ignore_case = models.BooleanField(default=False)
    # A disabled pattern is kept (and not seeded again from the file) but not used.
    enabled = models.BooleanField(default=True)
    origin = models.CharField(max_length=10, choices=Origin.choices, default=Origin.ADMIN)
    note = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["kind", "pattern"]
        constraints = [
            models.UniqueConstraint(fields=["kind", "pattern"], name="review_pattern_unique"),
            models.CheckConstraint(
                condition=Q(kind__in=["flag", "fund_org"]), name="review_pattern_kind_valid"
            ),
            models.CheckConstraint(condition=~Q(pattern=""), name="review_pattern_not_empty"),
        ]

    def __str__(self):
        return f"{self.get_kind_display()} {self.pattern}"

    def clean(self):
        super().clean()
        try:
            re.compile(self.pattern)
        except re.error as exc:
            raise ValidationError({"pattern": f"Not a valid regular expression: {exc}"}) from None


class AccountMapping(models.Model):
    """Attribution for a cloud account (sub-account or billing account id) when tags lack it.

    Fills only the fields a row's tags leave empty. A mapping with no source applies to every
    source; a source-specific one wins over it.
    """

    source = models.ForeignKey(
        Source, null=True, blank=True, on_delete=models.CASCADE, related_name="account_mappings"
    )
    account_id = models.CharField(
        max_length=200, help_text="SubAccountId or BillingAccountId as it appears in the files."
    )
    pi_email = models.EmailField("PI email", blank=True)
    pi_name = models.CharField(
        "PI name",
        max_length=200,
        blank=True,
        help_text="Names the PI when their name is still empty; a name set in the admin or the "
        "portal wins.",
    )
    project_id = models.CharField(max_length=200, blank=True)
    fund_org = models.CharField(max_length=100, blank=True)
    cost_center = models.CharField(max_length=100, blank=True)
    note = models.CharField(max_length=200, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["account_id"]
        constraints = [
            models.UniqueConstraint(
                fields=["source", "account_id"], name="account_mapping_unique_per_source"
            ),
            models.UniqueConstraint(
                fields=["account_id"],
                condition=Q(source__isnull=True),
                name="account_mapping_unique_any_source",
            ),
        ]

    def __str__(self):
        return f"{self.account_id} → {self.pi_email or '?'} / {self.project_id or '?'}"


class Import(models.Model):
    """The receipt of one ingest: its files, what it read, what it changed, and its totals."""

    class Outcome(models.TextChoices):
        IMPORTED = "imported", "Imported"
        REPLACED = "replaced", "Replaced"
        UNCHANGED = "unchanged", "Unchanged"

    class Mode(models.TextChoices):
        REPLACE = "replace", "Replace the months it contains"
        APPEND = "append", "Append to the months it contains"

    source = models.ForeignKey(Source, on_delete=models.PROTECT, related_name="imports")
    outcome = models.CharField(max_length=10, choices=Outcome.choices)
    mode = models.CharField(max_length=10, choices=Mode.choices, default=Mode.REPLACE)
    requested_period = models.CharField(max_length=7, blank=True)  # the -p argument, if any
    periods = models.JSONField(default=list)  # months the files contain, "YYYY-MM"
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    acting_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    actor = models.CharField(max_length=150)
    rows_read = models.PositiveIntegerField(default=0)
    rows_imported = models.PositiveIntegerField(default=0)  # rows of the files now in the database
    rows_flagged = models.PositiveIntegerField(default=0)
    rows_added = models.PositiveIntegerField(default=0)  # new charges written
    rows_removed = models.PositiveIntegerField(default=0)  # earlier charges a replacement removed
    rows_unchanged = models.PositiveIntegerField(default=0)  # identical rows kept, decisions kept
    # Per currency, exact decimal strings:
    # {"USD": {"billed": "…", "list": "…", "flagged_billed": "…"}}
    totals = models.JSONField(default=dict)
    # Per currency, how the billed total of the affected months changed: {"USD": "-12.50"}
    billed_change = models.JSONField(default=dict)
    # Per month, never netted across months: {"2026-01": {"rows_added": 3, "rows_removed": 1,
    # "rows_unchanged": 9, "billed_change": {"USD": "-12.50"}}}
    changes = models.JSONField(default=dict, blank=True)
    # How usage became these FOCUS rows, when a converter made them (billing/usage): {"converter":
    # "slurm", "rate_card": {"version": "…", "rate_ids": [..]}, "allowances": [...], ...}.
    # Empty for a FOCUS file delivered as it is.
    conversion = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return f"#{self.pk} {self.source} {', '.join(self.periods)} ({self.outcome})"


class ImportFile(models.Model):
    """One file of an import, with its content hash."""

    import_run = models.ForeignKey(Import, on_delete=models.CASCADE, related_name="files")
    name = models.CharField(max_length=500)
    sha256 = models.CharField(max_length=64, db_index=True)
    size_bytes = models.BigIntegerField()
    rows = models.PositiveIntegerField()

    def __str__(self):
        return self.name


class Flag(enum.IntFlag):
    """Why a charge can't be billed as it is. Stored as a bitmask in Charge.flags."""

    NO_PI = 1
    NO_PROJECT = 2
    NO_FUND_ORG = 4
    FUND_ORG_PATTERN = 8
    PATTERN_MATCH = 16
    OTHER_PERIOD = 32
    TAGS_INVALID = 64
    CURRENCY = 128
    DATES = 256  # BillingPeriodEnd before BillingPeriodStart, or ChargePeriodEnd before its start

    @property
    def code(self) -> str:
        return self.name.lower()

    @property
    def label(self) -> str:
        return FLAG_LABELS[self]

    @classmethod
    def from_code(cls, code: str) -> Flag:
        try:
            return cls[code.strip().upper().replace("-", "_")]
        except KeyError:
            known = ", ".join(f.code for f in cls)
            raise ValueError(f"unknown reason {code!r} (known: {known})") from None

    @classmethod
    def codes(cls, mask: int) -> list[str]:
        return [flag.code for flag in cls if mask & flag]


FLAG_LABELS = {
    Flag.NO_PI: "No PI",
    Flag.NO_PROJECT: "No project",
    Flag.NO_FUND_ORG: "No fund/org",
    Flag.FUND_ORG_PATTERN: "Fund/org fails the configured pattern",
    Flag.PATTERN_MATCH: "Matches a flag pattern",
    Flag.OTHER_PERIOD: "Month other than the one imported",
    Flag.TAGS_INVALID: "Tags are not a JSON object",
    Flag.CURRENCY: "Currency other than the configured one",
    Flag.DATES: "A period ends before it starts",
}


class Charge(models.Model):
    """One FOCUS row, exactly as delivered, with its attribution and review state.

    Written in bulk by the importer (billing/ingest), never one by one. `fingerprint` identifies
    the row across re-deliveries: a hash of the row's full content and its occurrence number among
    identical rows, so two identical rows stay two charges.
    """

    class ReviewStatus(models.TextChoices):
        CLEAN = "clean", "Clean"  # nothing flagged: billable
        FLAGGED = "flagged", "Flagged"  # awaiting a decision: not billable
        APPROVED = "approved", "Approved"  # flagged, then approved: billable
        REJECTED = "rejected", "Rejected"  # flagged, then rejected: never billed

    BILLABLE_STATUSES = (ReviewStatus.CLEAN, ReviewStatus.APPROVED)

    # No database-level foreign key on source, period and import_file: each has one value per
    # import, set by the importer from rows it created or locked in the same transaction, and
    # Django still enforces PROTECT on delete. PostgreSQL checks a deferred foreign key row by
    # row at commit; for these three that cost ~15 µs per imported row (docs/benchmarks.md).
    source = models.ForeignKey(
        Source, on_delete=models.PROTECT, related_name="+", db_index=False, db_constraint=False
    )
    period = models.ForeignKey(
        BillingPeriod,
        on_delete=models.PROTECT,
        related_name="charges",
        db_index=False,
        db_constraint=False,
    )
    # FK indexes on import_file, pi and project are left out on purpose: rows arrive in random
    # order of them, and maintaining those B-trees doubled the cost of a million-row import.
    # Queries reach charges by period first (the composite indexes below).
    import_file = models.ForeignKey(
        ImportFile,
        on_delete=models.PROTECT,
        related_name="charges",
        db_index=False,
        db_constraint=False,
    )
    line_number = models.PositiveIntegerField(help_text="Record number in the file; header is 1.")
    fingerprint = models.CharField(max_length=32)

    # FOCUS columns. Costs in BillingCurrency, exact; ListCost etc. are null when not delivered.
    billing_period_start = models.DateTimeField()
    billing_period_end = models.DateTimeField(null=True, blank=True)
    charge_period_start = models.DateTimeField(null=True, blank=True)
    charge_period_end = models.DateTimeField(null=True, blank=True)
    billed_cost = MoneyField()
    list_cost = MoneyField(null=True, blank=True)
    contracted_cost = MoneyField(null=True, blank=True)
    effective_cost = MoneyField(null=True, blank=True)
    billing_currency = models.CharField(max_length=3)
    charge_category = models.TextField(blank=True)
    charge_class = models.TextField(blank=True)
    charge_description = models.TextField(blank=True)
    service_name = models.TextField(blank=True)
    service_category = models.TextField(blank=True)
    resource_id = models.TextField(blank=True)
    resource_name = models.TextField(blank=True)
    region_id = models.TextField(blank=True)
    sku_id = models.TextField(blank=True)
    sub_account_id = models.TextField(blank=True)
    sub_account_name = models.TextField(blank=True)
    billing_account_id = models.TextField(blank=True)
    billing_account_name = models.TextField(blank=True)
    invoice_id = models.TextField(blank=True)
    provider_name = models.TextField(blank=True)
    consumed_quantity = MoneyField(null=True, blank=True)  # exact decimal, in consumed_unit
    consumed_unit = models.TextField(blank=True)
    pricing_quantity = MoneyField(null=True, blank=True)
    pricing_unit = models.TextField(blank=True)
    tags = models.JSONField(null=True, blank=True)  # the Tags object as delivered
    extra = models.JSONField(default=dict, blank=True)  # every other column, by its header

    # Attribution: from tags, then the account map; reviewers may change it.
    # No database-level foreign key either: PostgreSQL's per-row check of these two cost ~8 s
    # of a million-row import (docs/benchmarks.md). Every writer sets them from PI and project
    # rows it holds: the importer locks each one it used before commit and refuses the import
    # if one has gone (ingest/pipeline.py), and Django enforces PROTECT on delete.
    pi = models.ForeignKey(
        PI,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="charges",
        db_index=False,
        db_constraint=False,
    )
    project = models.ForeignKey(
        Project,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="charges",
        db_index=False,
        db_constraint=False,
    )
    fund_org = models.TextField(blank=True)
    cost_center = models.TextField(blank=True)
    reference_1 = models.TextField(blank=True)
    reference_2 = models.TextField(blank=True)

    # Review: set by the importer, changed only by the review services.
    review_status = models.CharField(
        max_length=10, choices=ReviewStatus.choices, default=ReviewStatus.CLEAN
    )
    flags = models.PositiveIntegerField(default=0)  # bitmask of Flag: every reason that applies

    class Meta:
        permissions = [("review_charge", "Can approve, reject and reassign charges")]
        indexes = [
            # Status first: the review queue asks for flagged charges of any period. New rows
            # append to the end of their status's range, so imports stay fast. The id last: a
            # list of one status and period, newest first, reads its page from the index in
            # order (11 ms for 10,001 flagged ids at a million charges; 190 ms without).
            models.Index(fields=["review_status", "period", "id"], name="charge_status_period_id"),
            # A PI's charges: the portal's pages and the admin's PI filter. Without it each
            # scans the table (1.3 s for a PI's open month at a million charges; 0.05 s with).
            models.Index(fields=["pi", "period"], name="charge_pi_period"),
            # PostgreSQL also has two small partial indexes, made by migration 0017 (not
            # declared here: they use INCLUDE, which SQLite lacks): the charges in review, for
            # the queue and the status and reason filters, and the charges that aren't usage.
            # And, made by migrations 0019 and 0020 for PostgreSQL alone: (project, period) for
            # the project filter, and a BRIN bloom index of the four columns the charge list's
            # search matches (docs/benchmarks.md, session 7).
        ]
        constraints = [
            # A delivered row is one charge, whatever path wrote it: two imports of one file can
            # never both land. It replaces the (period, source) index it starts with, so the
            # table keeps the same number of indexes, and the importer's look-up of the charges
            # already in a month (existing_fingerprints) reads this index alone.
            models.UniqueConstraint(
                fields=["period", "source", "fingerprint"], name="charge_unique_fingerprint"
            ),
            models.CheckConstraint(
                condition=Q(review_status__in=["clean", "flagged", "approved", "rejected"]),
                name="charge_review_status_valid",
            ),
            # Clean means nothing flagged; flagged means something is.
            models.CheckConstraint(
                condition=~Q(review_status="clean", flags__gt=0)
                & ~Q(review_status="flagged", flags=0),
                name="charge_flags_match_status",
            ),
        ]

    def __str__(self):
        return f"{self.service_name or 'charge'} {self.resource_id} {self.billed_cost}"

    @property
    def reasons(self) -> list[str]:
        return Flag.codes(self.flags)

    @property
    def is_billable(self) -> bool:
        return self.review_status in self.BILLABLE_STATUSES

    @property
    def discount_cost(self):
        """List price minus billed; None when no list price was delivered."""
        return None if self.list_cost is None else self.list_cost - self.billed_cost


class ReviewDecision(models.Model):
    """One reviewer's decision on a set of charges: approve, reject, return to the queue, reassign.

    Written only by the review services, with the charges it covers (`charges`) and an audit event,
    in one transaction. A charge's review history is its decisions, oldest first.
    """

    class Action(models.TextChoices):
        APPROVE = "approve", "Approved"
        REJECT = "reject", "Rejected"
        RETURN = "return", "Returned to the queue"
        REASSIGN = "reassign", "Reassigned"

    period = models.ForeignKey(BillingPeriod, on_delete=models.PROTECT, related_name="decisions")
    action = models.CharField(max_length=10, choices=Action.choices)
    created_at = models.DateTimeField(auto_now_add=True)
    acting_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    actor = models.CharField(max_length=150)
    note = models.TextField(blank=True)  # required for a rejection
    charge_count = models.PositiveIntegerField()
    # Per currency, the exact BilledCost of the charges decided on: {"USD": "1234.5600"}
    billed = models.JSONField(default=dict)
    # For a reassignment: the new attribution, and the account-map entry it saved, if any.
    attribution = models.JSONField(default=dict, blank=True)
    account_mapping = models.ForeignKey(
        AccountMapping, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    charges = models.ManyToManyField(Charge, related_name="decisions")

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=~Q(action="reject", note=""), name="review_decision_reject_has_note"
            ),
        ]

    def __str__(self):
        return f"{self.get_action_display()} {self.charge_count} charge(s) in {self.period_id}"


class ImportJob(models.Model):
    """An upload from the admin: files checked by a dry run, then imported, maybe by a worker.

    The job keeps the uploaded files (under MEDIA_ROOT/uploads/<id>/) until it is imported or
    discarded, the dry-run receipt to show before committing, and progress while a worker runs.
    """

    class Status(models.TextChoices):
        SOURCE = "source", "Waiting for its source"  # one file of a batch, source not guessed
        CHECKING = "checking", "Checking (dry run)"
        CHECKED = "checked", "Checked, waiting for confirmation"
        QUEUED = "queued", "Queued"
        IMPORTING = "importing", "Importing"
        DONE = "done", "Imported"
        FAILED = "failed", "Failed"
        DISCARDED = "discarded", "Discarded"

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    acting_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    source = models.ForeignKey(Source, null=True, blank=True, on_delete=models.PROTECT)
    requested_period = models.CharField(max_length=7, blank=True)
    append = models.BooleanField(default=False)
    # "focus" or a converter's name in billing.usage.CONVERTERS (slurm, storage, tokens): the
    # upload is converted to FOCUS rows before the dry run.
    input_format = models.CharField(max_length=30, default="focus")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.CHECKING)
    # [{"name": "aws_2026-10.csv", "path": "uploads/12/aws_2026-10.csv", "size": 1234}]
    files = models.JSONField(default=list)
    receipt = models.JSONField(default=dict, blank=True)  # the dry run's result, as JSON
    rows_total = models.PositiveIntegerField(default=0)  # rows to import (from the dry run)
    rows_done = models.PositiveIntegerField(default=0)  # progress of the real import
    error = models.TextField(blank=True)
    import_run = models.ForeignKey(
        Import, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Jobs made by one upload of several sources' files (one job, and one import, per file)
    # share a batch: a random hex key, empty for an upload of one source.
    batch = models.CharField(max_length=32, blank=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        names = ", ".join(f["name"] for f in self.files) or "no files"
        return f"Upload #{self.pk}: {names} ({self.get_status_display()})"


class ReviewItem(Charge):
    """The review queue: charges that were flagged, as the admin's review page shows them."""

    class Meta:
        proxy = True
        verbose_name = "charge to review"
        verbose_name_plural = "review queue"


class PIDelegate(models.Model):
    """A person a PI lets read their portal: their projects, statements, charges and files.

    Granted and revoked only by billing/services/pis.py (each with an audit event). A revoked
    grant is kept, with `revoked_at`, as the record of who could see what and when; granting the
    same person again makes a new row.
    """

    pi = models.ForeignKey(PI, on_delete=models.CASCADE, related_name="delegates")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="pi_delegations"
    )
    granted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    granted_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["pi", "-granted_at"]
        verbose_name = "PI delegate"
        constraints = [
            models.UniqueConstraint(
                fields=["pi", "user"],
                condition=Q(revoked_at__isnull=True),
                name="pi_delegate_one_active_grant",
            ),
        ]

    def __str__(self):
        state = " (revoked)" if self.revoked_at else ""
        return f"{self.user} for {self.pi}{state}"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class Rate(models.Model):
    """One effective-dated price of a usage service (HPC, storage, tokens), with its subsidy rule.

    A rate applies from `effective_from` (00:00 UTC) until the next rate for the same (service,
    key, unit). Priced by billing/usage/pricing.py: the allowance first, then the percentage on
    what is left (docs/sources.md). Changed through the admin or `openchargeback rates load`;
    both are audited (billing/reference_audit.py).
    """

    class Per(models.TextChoices):
        PI = "pi", "per PI per month"
        PROJECT = "project", "per project per month"

    service = models.CharField(
        max_length=50, help_text="What is billed, e.g. hpc-cpu, hpc-gpu, storage, tokens."
    )
    key = models.CharField(
        max_length=200, help_text="Partition, GPU type, storage tier or model name."
    )
    unit = models.CharField(
        max_length=50, help_text="The consumed unit, e.g. core-hour, gpu-hour, TB-month."
    )
    effective_from = models.DateField(help_text="First day (UTC) this rate applies.")
    # Pricing units per consumed unit (service units per core-hour); 1 when billed as consumed.
    # Exact decimals of any scale, like the price (billing/money.py): a centre's allowance in
    # TB-months converted from GiB (0.536870912) or a multiplier with many places stays exact.
    multiplier = MoneyField(default=Decimal(1))
    pricing_unit = models.CharField(
        max_length=50, blank=True, help_text="Unit the list price is per, if not the consumed unit."
    )
    # Currency per pricing unit, exact (billing/money.py).
    list_price = MoneyField()
    currency = models.CharField(max_length=3, default="USD")
    subsidy_percent = models.DecimalField(
        max_digits=5, decimal_places=2, default=0, help_text="0–100, applied after the allowance."
    )
    allowance_quantity = MoneyField(
        default=Decimal(0),
        help_text="Consumed units included free each month (0 = none), before the percentage.",
    )
    allowance_per = models.CharField(max_length=10, choices=Per.choices, blank=True)
    description = models.CharField(max_length=200, blank=True)
    active = models.BooleanField(default=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["service", "key", "unit", "effective_from"]
        constraints = [
            models.UniqueConstraint(
                fields=["service", "key", "unit", "effective_from"], name="rate_unique_per_date"
            ),
            models.CheckConstraint(
                condition=Q(subsidy_percent__gte=0) & Q(subsidy_percent__lte=100),
                name="rate_subsidy_percent_0_100",
            ),
            models.CheckConstraint(
                condition=Q(allowance_quantity__gte=0), name="rate_allowance_not_negative"
            ),
            models.CheckConstraint(condition=Q(multiplier__gt=0), name="rate_multiplier_positive"),
            # lte, with the check above: equal to zero by value (SQLite stores "0.0" as text)
            models.CheckConstraint(
                condition=Q(allowance_quantity__lte=0) | ~Q(allowance_per=""),
                name="rate_allowance_names_its_holder",
            ),
        ]

    def __str__(self):
        unit = self.pricing_unit or self.unit
        return f"{self.service}/{self.key} per {unit} from {self.effective_from}"
