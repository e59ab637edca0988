"""Rate cards in the admin: effective-dated prices with their subsidy and allowance.

Saves go through billing/services/rates.py (a second rate for the same thing and date is refused,
naming both); every change is audited (billing/reference_audit.py).
"""

from django.contrib import admin, messages
from django.core.exceptions import ValidationError

from ..models import Rate
from ..reference_audit import acting_as
from ..services.rates import RateError, check_terms, rate_clash, rate_save


@admin.register(Rate)
class RateAdmin(admin.ModelAdmin):
    list_display = (
        "service",
        "key",
        "unit",
        "effective_from",
        "list_price",
        "multiplier",
        "pricing_unit",
        "subsidy_percent",
        "allowance_quantity",
        "allowance_per",
        "active",
    )
    list_filter = ("service", "active", "effective_from")
    search_fields = ("service", "key", "description")
    date_hierarchy = "effective_from"
    fieldsets = (
        (None, {"fields": ("service", "key", "unit", "effective_from", "active", "description")}),
        ("Price", {"fields": ("list_price", "currency", "multiplier", "pricing_unit")}),
        (
            "Subsidy (the allowance first, then the percentage on what is left)",
            {"fields": ("allowance_quantity", "allowance_per", "subsidy_percent")},
        ),
    )

    def get_form(self, request, obj=None, **kwargs):
        form = super().get_form(request, obj, **kwargs)

        class RateForm(form):
            def clean(self):
                data = super().clean()
                probe = Rate(
                    pk=self.instance.pk,
                    **{k: data.get(k) for k in ("service", "key", "unit", "effective_from")},
                )
                if all(data.get(k) for k in ("service", "key", "unit", "effective_from")):
                    other = rate_clash(probe)
                    if other is not None:
                        raise ValidationError(
                            f"Rate #{other.pk} already prices {probe.service}/{probe.key} per "
                            f"{probe.unit} from {probe.effective_from} ({other.list_price} "
                            f"{other.currency}); change that one or pick another date."
                        )
                terms = ("list_price", "multiplier", "allowance_quantity", "subsidy_percent")
                if not self.errors and all(data.get(k) is not None for k in terms):
                    try:  # the range and places the service refuses, before "saved" is shown
                        check_terms(
                            Rate(
                                **{k: data[k] for k in terms},
                                allowance_per=data.get("allowance_per", ""),
                            )
                        )
                    except RateError as exc:
                        raise ValidationError(str(exc)) from None
                return data

        return RateForm

    def save_model(self, request, obj, form, change):
        try:
            rate_save(rate=obj, acting_user=request.user)
        except RateError as exc:  # the form checked; a race with another save lands here
            messages.error(request, str(exc))

    def delete_model(self, request, obj):
        with acting_as(request.user):
            obj.delete()

    def delete_queryset(self, request, queryset):
        with acting_as(request.user):
            for rate in queryset:
                rate.delete()
