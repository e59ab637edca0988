"""Upload in the admin: drop FOCUS files, read the dry-run receipt, then confirm or discard.

Pages (ImportJobAdmin.get_urls, each wrapped in admin_site.admin_view):
- billing/importjob/upload/          the upload form (drag and drop, or a plain file input)
- billing/importjob/<id>/job/        a job: its dry-run receipt, progress, or its refusal
- billing/importjob/<id>/confirm/    POST: import through the same service as the command line
- billing/importjob/<id>/discard/    POST: delete the stored files
- billing/importjob/<id>/source/     POST: give a file of a batch its source (checked again)
- billing/importjob/batch/<key>/     an upload of several sources: each file, its source, receipt
- billing/importjob/batch/<key>/confirm/  POST: import each checked file, one import per file

Uploading, confirming and discarding need `billing.add_import` (the finance admin role); the
job pages need `billing.view_importjob`. Writes go through billing/services/uploads.py.
"""

from __future__ import annotations

from decimal import Decimal

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.core.validators import RegexValidator
from django.http import Http404, HttpResponseNotAllowed
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from ..config import ConfigError, load_config
from ..models import Flag, ImportJob
from ..money import cents_text
from ..services import uploads
from ..usage import CONVERTERS

IMPORT_PERMISSION = "billing.add_import"
RUNNING = (ImportJob.Status.CHECKING, ImportJob.Status.QUEUED, ImportJob.Status.IMPORTING)


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault(
            "widget",
            MultipleFileInput(attrs={"accept": ".csv,.gz,.csv.gz,.parquet", "id": "ocb-files"}),
        )
        super().__init__(*args, **kwargs)

    def clean(self, data, initial=None):
        single = super().clean
        if isinstance(data, (list, tuple)):
            return [single(item, initial) for item in data]
        return [single(data, initial)] if data else []


class UploadForm(forms.Form):
    files = MultipleFileField(
        label="Files",
        help_text="FOCUS: .csv, .csv.gz or .parquet, several files of one source at once. "
        "A usage export: one file.",
    )
    source = forms.ChoiceField(
        required=False,
        help_text="Guessed from the file names with each source's filename pattern.",
    )
    period = forms.CharField(
        required=False,
        max_length=7,
        label="Period (optional)",
        validators=[RegexValidator(r"^[0-9]{4}-(0[1-9]|1[0-2])$", "Use YYYY-MM, e.g. 2026-10.")],
        help_text="Leave empty to take the month from the data. If set, rows of other months "
        "are flagged for review.",
        widget=forms.TextInput(attrs={"placeholder": "YYYY-MM", "size": 9}),
    )
    input_format = forms.ChoiceField(
        required=False,  # absent: FOCUS files, as before there were converters
        label="Format",
        initial="focus",
        help_text="A usage export (Slurm sacct, storage, tokens) is converted to FOCUS with the "
        "stored rates and account map; it needs the period. One file at a time.",
    )
    separate = forms.BooleanField(
        required=False,
        label="One import per file",
        help_text="For files of several sources: each file's source is guessed from its own "
        "name (you can change it before importing), and each file is its own import with its "
        "own receipt.",
    )
    append = forms.BooleanField(
        required=False,
        label="Append",
        help_text="Add the rows to their months instead of replacing this source's charges "
        "(for sources delivered in parts).",
    )

    def __init__(self, *args, source_names=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["source"].choices = [("", "Guess from the file names")] + [
            (name, name) for name in source_names
        ]
        self.fields["input_format"].choices = [("focus", "FOCUS files")] + [
            (name, f"{name}: {c.help}") for name, c in sorted(CONVERTERS.items())
        ]

    def clean(self):
        data = super().clean()
        if data.get("separate") and (data.get("input_format") or "focus") != "focus":
            self.add_error(
                "separate",
                "One import per file is for FOCUS files; a usage export is converted and "
                "imported one file at a time.",
            )
        return data


def _config():
    try:
        return load_config()
    except ConfigError:
        return None


class ImportJobAdmin(admin.ModelAdmin):
    """Uploads: read-only here; each row links to its job page."""

    list_display = (
        "job_link",
        "created_at",
        "status",
        "source",
        "file_names",
        "progress",
        "requested_period",
        "append",
        "acting_user",
        "import_link",
    )
    list_display_links = None
    list_filter = ("status", "source")
    list_select_related = ("source", "acting_user")
    ordering = ("-created_at", "-id")

    @admin.display(description="upload", ordering="id")
    def job_link(self, obj):
        url = reverse(f"{self.admin_site.name}:billing_importjob_job", args=[obj.pk])
        return format_html('<a href="{}">Upload #{}</a>', url, obj.pk)

    @admin.display(description="files")
    def file_names(self, obj):
        return ", ".join(f["name"] for f in obj.files)

    @admin.display(description="progress")
    def progress(self, obj):
        if obj.status == ImportJob.Status.DONE:
            return f"{obj.rows_done:,} rows"
        if obj.rows_total:
            return f"{obj.rows_done:,} / {obj.rows_total:,} rows"
        return "–"

    @admin.display(description="import")
    def import_link(self, obj):
        if not obj.import_run_id:
            return "–"
        url = reverse(f"{self.admin_site.name}:billing_import_change", args=[obj.import_run_id])
        return format_html('<a href="{}">#{}</a>', url, obj.import_run_id)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def change_view(self, request, object_id, form_url="", extra_context=None):
        return redirect(f"{self.admin_site.name}:billing_importjob_job", int(object_id))

    def changelist_view(self, request, extra_context=None):
        extra = {"can_upload": request.user.has_perm(IMPORT_PERMISSION), **(extra_context or {})}
        return super().changelist_view(request, extra_context=extra)

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path("upload/", wrap(self.upload_view), name="billing_importjob_upload"),
            path("<int:pk>/job/", wrap(self.job_view), name="billing_importjob_job"),
            path("<int:pk>/confirm/", wrap(self.confirm_view), name="billing_importjob_confirm"),
            path("<int:pk>/discard/", wrap(self.discard_view), name="billing_importjob_discard"),
            path("<int:pk>/source/", wrap(self.source_view), name="billing_importjob_source"),
            path("batch/<slug:batch>/", wrap(self.batch_view), name="billing_importjob_batch"),
            path(
                "batch/<slug:batch>/confirm/",
                wrap(self.batch_confirm_view),
                name="billing_importjob_batch_confirm",
            ),
            *super().get_urls(),
        ]

    # -- views ----------------------------------------------------------------------------------

    def _context(self, request, title, **extra):
        return {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": title,
            "can_upload": request.user.has_perm(IMPORT_PERMISSION),
            **extra,
        }

    def upload_view(self, request):
        if not request.user.has_perm(IMPORT_PERMISSION):
            raise PermissionDenied
        config = _config()
        names = uploads.source_names(config)
        if request.method == "POST":
            form = UploadForm(request.POST, request.FILES, source_names=names)
            if form.is_valid() and form.cleaned_data["separate"]:
                try:
                    jobs = uploads.import_batch_create(
                        files=form.cleaned_data["files"],
                        period=form.cleaned_data["period"] or None,
                        append=form.cleaned_data["append"],
                        acting_user=request.user,
                        config=config,
                    )
                except uploads.UploadError as exc:
                    form.add_error(None, str(exc))
                else:
                    return redirect(
                        f"{self.admin_site.name}:billing_importjob_batch", jobs[0].batch
                    )
            elif form.is_valid():
                try:
                    job = uploads.import_job_create(
                        files=form.cleaned_data["files"],
                        source=form.cleaned_data["source"] or None,
                        period=form.cleaned_data["period"] or None,
                        append=form.cleaned_data["append"],
                        input_format=form.cleaned_data["input_format"] or "focus",
                        acting_user=request.user,
                        config=config,
                    )
                except uploads.UploadError as exc:
                    form.add_error(None, str(exc))
                else:
                    return redirect(f"{self.admin_site.name}:billing_importjob_job", job.pk)
        else:
            form = UploadForm(source_names=names)
        recent = ImportJob.objects.select_related("source").order_by("-created_at", "-id")[:10]
        context = self._context(
            request,
            "Upload FOCUS files",
            form=form,
            recent=recent,
            max_bytes=uploads.max_bytes(),
            async_bytes=uploads.async_bytes(),
            patterns=sorted(uploads.source_patterns(config).items()),
        )
        return TemplateResponse(request, "admin/billing/importjob/upload.html", context)

    def job_view(self, request, pk):
        if not (
            request.user.has_perm("billing.view_importjob")
            or request.user.has_perm(IMPORT_PERMISSION)
        ):
            raise PermissionDenied
        job = get_object_or_404(ImportJob.objects.select_related("source", "acting_user"), pk=pk)
        receipt = job.receipt or {}
        check = (receipt.get("check") if job.status == ImportJob.Status.DONE else receipt) or {}
        currency_rows = [
            {"currency": cur, **totals} for cur, totals in (check.get("totals") or {}).items()
        ]
        # What changes in each month, apart: a change in one month never nets against another.
        month_rows = [
            {
                "period": key,
                **{k: v for k, v in change.items() if k != "billed_change"},
                "billed_change": sorted((change.get("billed_change") or {}).items()),
            }
            for key, change in sorted((check.get("changes") or {}).items())
        ]
        context = self._context(
            request,
            f"Upload #{job.pk}",
            job=job,
            receipt=receipt,
            check=check,
            currency_rows=currency_rows,
            month_rows=month_rows,
            running=job.status in RUNNING,
            refresh_seconds=2,
            percent=_percent(job),
            reasons=_reasons(receipt.get("flagged_by_reason")),
            background=uploads.runs_in_background(job),
            total_bytes=sum(f["size"] for f in job.files),
        )
        return TemplateResponse(request, "admin/billing/importjob/job.html", context)

    def batch_view(self, request, batch):
        """Each file of a several-source upload: its source (guessed, changeable until it is
        imported), its status, and its receipt in brief."""
        if not (
            request.user.has_perm("billing.view_importjob")
            or request.user.has_perm(IMPORT_PERMISSION)
        ):
            raise PermissionDenied
        jobs = list(ImportJob.objects.filter(batch=batch).select_related("source").order_by("id"))
        if not jobs:
            raise Http404("no such upload")
        changeable = (ImportJob.Status.SOURCE, ImportJob.Status.CHECKED, ImportJob.Status.FAILED)
        rows = []
        for job in jobs:
            receipt = job.receipt or {}
            check = (receipt.get("check") if job.status == ImportJob.Status.DONE else receipt) or {}
            rows.append(
                {
                    "job": job,
                    "name": ", ".join(f["name"] for f in job.files),
                    "check": check,
                    "totals": [
                        (currency, cents_text(Decimal(t["billed"])), t["billed"])
                        for currency, t in sorted((check.get("totals") or {}).items())
                    ],
                    "changeable": job.status in changeable and not job.import_run_id,
                }
            )
        context = self._context(
            request,
            f"Upload of {len(jobs)} file{'s' if len(jobs) != 1 else ''}",
            batch=batch,
            rows=rows,
            source_names=uploads.source_names(_config()),
            checked=sum(1 for j in jobs if j.status == ImportJob.Status.CHECKED),
            waiting=sum(1 for j in jobs if j.status == ImportJob.Status.SOURCE),
            running=any(j.status in RUNNING for j in jobs),
            refresh_seconds=2,
        )
        return TemplateResponse(request, "admin/billing/importjob/batch.html", context)

    def source_view(self, request, pk):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not request.user.has_perm(IMPORT_PERMISSION):
            raise PermissionDenied
        job = get_object_or_404(ImportJob, pk=pk)
        try:
            uploads.import_job_set_source(
                job_id=pk, source=request.POST.get("source", ""), acting_user=request.user
            )
        except uploads.UploadError as exc:
            messages.error(request, f"{', '.join(f['name'] for f in job.files)}: {exc}")
        if job.batch:
            return redirect(f"{self.admin_site.name}:billing_importjob_batch", job.batch)
        return redirect(f"{self.admin_site.name}:billing_importjob_job", pk)

    def batch_confirm_view(self, request, batch):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not request.user.has_perm(IMPORT_PERMISSION):
            raise PermissionDenied
        try:
            jobs = uploads.import_batch_confirm(batch=batch, acting_user=request.user)
        except uploads.UploadError as exc:
            messages.error(request, str(exc))
        else:
            done = sum(1 for j in jobs if j.status == ImportJob.Status.DONE)
            messages.success(request, f"{done} of {len(jobs)} file(s) imported.")
        return redirect(f"{self.admin_site.name}:billing_importjob_batch", batch)

    def confirm_view(self, request, pk):
        return self._transition(request, pk, uploads.import_job_confirm)

    def discard_view(self, request, pk):
        return self._transition(request, pk, uploads.import_job_discard)

    def _transition(self, request, pk, service):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not request.user.has_perm(IMPORT_PERMISSION):
            raise PermissionDenied
        get_object_or_404(ImportJob, pk=pk)
        try:
            job = service(job_id=pk, acting_user=request.user)
        except uploads.UploadError as exc:
            messages.error(request, str(exc))
        else:
            level = messages.ERROR if job.status == ImportJob.Status.FAILED else messages.SUCCESS
            messages.add_message(request, level, f"Upload #{job.pk}: {job.get_status_display()}.")
        return redirect(f"{self.admin_site.name}:billing_importjob_job", pk)


def _percent(job: ImportJob) -> int | None:
    if not job.rows_total:
        return None
    return min(100, job.rows_done * 100 // job.rows_total)


def _reasons(counts) -> list[tuple[str, int]]:
    """(label, count) for a receipt's flagged rows by reason, when the receipt has them."""
    if not counts:
        return []
    out = []
    for code, count in counts.items():
        try:
            label = Flag.from_code(code).label
        except ValueError:
            label = code
        out.append((label, count))
    return out


admin.site.register(ImportJob, ImportJobAdmin)
