"""Journals: the templates finance staff edit, and the record of every export.

A template's layouts are Django template text, one column per line; each cell is rendered on
its own with HTML autoescaping off and then written by the csv module, which does all quoting
(openchargeback/csvsafe.py). Exports are written only by journals.services.journal_export, with an
audit event, in one transaction.
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q

from billing.models import BillingPeriod
from billing.money import MoneyField


class JournalTemplateManager(models.Manager):
    def get_by_natural_key(self, name):
        return self.get(name=name)


class JournalTemplate(models.Model):
    """A journal layout: what each row means (kind) and how its columns are written."""

    class Kind(models.TextChoices):
        DETAIL = "detail", "Detail (one row per charge)"
        SUMMARY = "summary", "Summary (one row per statement)"
        GL = "gl", "General ledger (debits and credits)"

    class Delimiter(models.TextChoices):
        COMMA = ",", "Comma"
        SEMICOLON = ";", "Semicolon"
        TAB = "\t", "Tab"
        PIPE = "|", "Pipe"

    class LineEnding(models.TextChoices):
        CRLF = "crlf", "CR LF (Windows, RFC 4180)"
        LF = "lf", "LF (Unix)"

    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=10, choices=Kind.choices)
    notes = models.TextField(blank=True, help_text="What this layout is for; not exported.")
    header_layout = models.TextField(
        blank=True,
        help_text="Column titles, one per line (template text allowed). Empty: no header row.",
    )
    row_layout = models.TextField(
        help_text="One cell template per line, e.g. {{ fund_org }}. Each line is one column."
    )
    delimiter = models.CharField(max_length=1, choices=Delimiter.choices, default=",")
    line_ending = models.CharField(
        max_length=4, choices=LineEnding.choices, default=LineEnding.CRLF
    )
    date_format = models.CharField(
        max_length=40,
        default="%Y-%m-%d",
        help_text="strftime format of the date variables, e.g. %m/%d/%Y or %d-%b-%Y.",
    )
    description_template = models.CharField(
        max_length=500,
        blank=True,
        help_text="Template of the {{ description }} variable. Empty: the configuration's "
        "journal.description_template, else the built-in one for the kind.",
    )
    description_limit = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Cut {{ description }} to this many characters. Empty: the configuration's "
        "journal.description_limit (0 there means no limit).",
    )
    split_by_project = models.BooleanField(
        default=False,
        help_text="General ledger only: one debit per project as well as per fund/org, "
        "account and source.",
    )
    file_name = models.CharField(
        max_length=200,
        blank=True,
        help_text="Template of the file name, e.g. journal-{{ period }}-{{ currency }}.csv. "
        "Empty: journal-PERIOD-TEMPLATE-CURRENCY.csv.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = JournalTemplateManager()

    class Meta:
        ordering = ["kind", "name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(kind__in=["detail", "summary", "gl"]), name="journal_template_kind"
            ),
        ]

    def __str__(self):
        return self.name

    def natural_key(self):
        return (self.name,)

    @property
    def header_cells(self) -> list[str]:
        return _cells(self.header_layout)

    @property
    def row_cells(self) -> list[str]:
        return _cells(self.row_layout)

    @property
    def lineterminator(self) -> str:
        return "\r\n" if self.line_ending == self.LineEnding.CRLF else "\n"

    def clean(self):
        from .render import TemplateCheckError, check_template

        try:
            check_template(self)
        except TemplateCheckError as exc:
            raise ValidationError(exc.errors) from None


def _cells(layout: str) -> list[str]:
    """One cell per line; trailing blank lines are ignored, inner ones are empty columns."""
    lines = layout.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    while lines and not lines[-1].strip():
        lines.pop()
    return lines


class JournalExport(models.Model):
    """One journal file written: who, when, which period and template, its checksum and totals.

    One row per file; an export of a period with charges in two currencies writes two files.
    Amounts are exact, non-negative cents (each side's total); rows counts data rows only.
    """

    period = models.ForeignKey(BillingPeriod, on_delete=models.PROTECT, related_name="journals")
    template = models.ForeignKey(JournalTemplate, on_delete=models.PROTECT, related_name="exports")
    # The template's name and kind at export time (templates are editable).
    template_name = models.CharField(max_length=100)
    kind = models.CharField(max_length=10, choices=JournalTemplate.Kind.choices)
    period_status = models.CharField(
        max_length=10, help_text="The period's status when exported (open means a draft)."
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    acting_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    actor = models.CharField(max_length=150)
    currency = models.CharField(max_length=3)
    file_name = models.CharField(max_length=255)
    path = models.CharField(max_length=1000, help_text="Where the file was written.")
    sha256 = models.CharField(max_length=64)
    size_bytes = models.BigIntegerField()
    rows = models.PositiveIntegerField()
    debit_amount = MoneyField(help_text="Total of the debit side, exact, in currency.")
    credit_amount = MoneyField(help_text="Total of the credit side, exact, in currency.")

    class Meta:
        ordering = ["-created_at", "-id"]
        permissions = [("export_journal", "Can export journals")]
        indexes = [models.Index(fields=["period", "kind"], name="journal_export_period_kind")]
        constraints = [
            models.CheckConstraint(
                condition=Q(debit_amount__gte=0) & Q(credit_amount__gte=0),
                name="journal_export_amounts_non_negative",
            ),
        ]

    def __str__(self):
        return self.file_name
