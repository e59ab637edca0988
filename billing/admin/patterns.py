"""Review patterns in the admin: edit them (each change audited by billing/reference_audit.py)
and test them against a period before trusting them with the next import."""

import re

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.template.response import TemplateResponse
from django.urls import path

from ..models import BillingPeriod, ReviewPattern
from ..services.patterns import review_patterns_preview


class PreviewForm(forms.Form):
    period = forms.ModelChoiceField(
        queryset=BillingPeriod.objects.order_by("-key"), to_field_name="key", empty_label=None
    )
    kind = forms.ChoiceField(
        choices=ReviewPattern.Kind.choices, initial=ReviewPattern.Kind.FLAG, label="Try a"
    )
    pattern = forms.CharField(
        required=False,
        max_length=500,
        label="pattern",
        help_text="Optional: a pattern to try before adding it (not saved).",
    )
    ignore_case = forms.BooleanField(required=False)

    def clean_pattern(self):
        text = self.cleaned_data["pattern"].strip()
        if text:
            try:
                re.compile(text)
            except re.error as exc:
                raise forms.ValidationError(f"Not a valid regular expression: {exc}") from None
        return text


@admin.register(ReviewPattern)
class ReviewPatternAdmin(admin.ModelAdmin):
    list_display = ("pattern", "kind", "enabled", "ignore_case", "origin", "note", "updated_at")
    list_filter = ("kind", "enabled", "origin")
    search_fields = ("pattern", "note")
    fields = ("kind", "pattern", "ignore_case", "enabled", "note", "origin")
    readonly_fields = ("origin",)
    change_list_template = "admin/billing/reviewpattern/change_list.html"

    def get_urls(self):
        view = self.admin_site.admin_view(self.preview_view)
        return [
            path("preview/", view, name="billing_reviewpattern_preview"),
        ] + super().get_urls()

    def preview_view(self, request):
        """How many of a period's charges each pattern would flag (GET: nothing is written)."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        form = PreviewForm(request.GET or None)
        result = trial = None
        if form.is_valid():
            rows = list(ReviewPattern.objects.order_by("kind", "id"))
            if form.cleaned_data["pattern"]:
                trial = ReviewPattern(
                    kind=form.cleaned_data["kind"],
                    pattern=form.cleaned_data["pattern"],
                    ignore_case=form.cleaned_data["ignore_case"],
                    enabled=False,
                    note="not saved",
                )
                rows.append(trial)
            result = review_patterns_preview(period=form.cleaned_data["period"], patterns=rows)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Test review patterns against a period",
            "form": form,
            "result": result,
            "trial": trial,
        }
        return TemplateResponse(request, "admin/billing/reviewpattern/preview.html", context)
