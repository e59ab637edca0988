"""Portal pages. Each one finds what it shows through access.py (a 404 for anything the user
may not see) and reads through selectors; the only writes are the PI's own name and delegate
grants and revocations, through billing's services."""

from __future__ import annotations

import csv

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.files.storage import default_storage
from django.http import FileResponse, Http404, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from billing.models import BillingPeriod, PIDelegate
from billing.money import money_text
from billing.services.pis import (
    PIAccessError,
    pi_delegate_grant,
    pi_delegate_revoke,
    pi_rename,
)
from openchargeback.csvsafe import safe_cell
from statements.figures import percent_text
from statements.selectors import statement_sections

from . import selectors
from .access import get_pi, get_statement, own_pi, visible_pis
from .forms import DelegateGrantForm, PINameForm


def root(request):
    """/ : staff to the admin, everyone else to the portal."""
    if request.user.is_authenticated and request.user.is_staff:
        return redirect("admin:index")
    return redirect("portal:home")


def _context(request, pi=None, **extra):
    return {"pis": visible_pis(request.user), "current_pi": pi, **extra}


@login_required
def home(request):
    pis = list(visible_pis(request.user))
    if len(pis) == 1:
        return redirect("portal:statements", pi_id=pis[0].pk)
    for pi in pis:  # each PI's latest month on statements and its amount due, per currency
        periods = selectors.statement_periods(request.user, pi)
        pi.latest = periods[0] if periods else None
    return render(request, "portal/home.html", _context(request, choices=pis))


@login_required
def statements(request, pi_id):
    pi = get_pi(request.user, pi_id)
    return render(
        request,
        "portal/statements.html",
        _context(
            request,
            pi,
            nav="statements",
            periods=selectors.statement_periods(request.user, pi),
            charge_periods=selectors.charge_periods(pi),
        ),
    )


@login_required
def statement_detail(request, statement_id):
    statement = get_statement(request.user, statement_id)
    sections = statement_sections(statement)
    for section in sections:
        section.discount_percent = percent_text(
            section.discount_amount, section.list_amount, section.due_amount
        )
        for line in section.lines:
            line.discount_percent = percent_text(
                line.discount_amount, line.list_amount, line.due_amount
            )
    return render(
        request,
        "portal/statement.html",
        _context(
            request,
            statement.pi,
            nav="statements",
            statement=statement,
            sections=sections,
            references=selectors.statement_references(statement),
            discount_percent=percent_text(
                statement.discount_amount, statement.list_amount, statement.due_amount
            ),
        ),
    )


@login_required
def statement_pdf(request, statement_id):
    statement = get_statement(request.user, statement_id)
    try:
        handle = default_storage.open(statement.pdf_path, "rb")
    except FileNotFoundError:
        raise Http404("the PDF is missing") from None
    return FileResponse(
        handle,
        as_attachment=True,
        filename=f"{statement.number}.pdf",
        content_type="application/pdf",
    )


@login_required
def open_month(request, pi_id):
    pi = get_pi(request.user, pi_id)
    return render(
        request,
        "portal/open.html",
        _context(request, pi, nav="open", open_periods=selectors.open_month(pi)),
    )


class _Echo:
    def write(self, value):
        return value


@login_required
def charges_csv(request, pi_id, period_key):
    pi = get_pi(request.user, pi_id)
    period = get_object_or_404(BillingPeriod, key=period_key)
    writer = csv.writer(_Echo(), lineterminator="\r\n")

    def status(charge):
        return "under review" if charge.review_status == "flagged" else "billable"

    def rows():
        yield writer.writerow(selectors.CSV_COLUMNS)
        for c in selectors.csv_charges(pi, period).iterator(chunk_size=2000):
            yield writer.writerow(
                [
                    period.key,
                    c.pk,
                    status(c),
                    safe_cell(c.project.code if c.project else ""),
                    safe_cell(c.fund_org),
                    safe_cell(c.service_name),
                    safe_cell(c.resource_id),
                    safe_cell(c.resource_name),
                    safe_cell(c.charge_category),
                    safe_cell(c.charge_description),
                    c.charge_period_start.isoformat() if c.charge_period_start else "",
                    c.charge_period_end.isoformat() if c.charge_period_end else "",
                    money_text(c.consumed_quantity) or "",
                    safe_cell(c.consumed_unit),
                    money_text(c.list_cost) or "",
                    money_text(c.billed_cost),
                    safe_cell(c.billing_currency),
                    safe_cell(c.source.name),
                ]
            )

    response = StreamingHttpResponse(rows(), content_type="text/csv; charset=utf-8")
    filename = f"charges-{period.key}-{pi.email.split('@')[0]}.csv"
    response["Content-Disposition"] = f'attachment; filename="{safe_filename(filename)}"'
    return response


def safe_filename(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)


def _profile(request, pi, *, form=None, name_form=None, status=200):
    delegates = pi.delegates.select_related("user").order_by("-granted_at") if pi else []
    delegated = [p for p in visible_pis(request.user) if p != pi]
    return render(
        request,
        "portal/profile.html",
        _context(
            request,
            pi,
            nav="profile",
            own=pi,
            form=form or DelegateGrantForm(),
            name_form=name_form or PINameForm(initial={"name": pi.name if pi else ""}),
            delegates=delegates,
            delegated=delegated,
        ),
        status=status,
    )


@login_required
def profile(request):
    return _profile(request, own_pi(request.user))


@login_required
@require_POST
def profile_name(request):
    """The PI sets their own display name (audited; billing.services.pis.pi_rename)."""
    pi = own_pi(request.user)
    if pi is None:
        raise Http404("only a PI has a name to set here")
    form = PINameForm(request.POST)
    if form.is_valid():
        try:
            pi = pi_rename(pi=pi, name=form.cleaned_data["name"], acting_user=request.user)
        except PIAccessError as exc:
            form.add_error("name", str(exc))
        else:
            messages.success(request, f"Your name is now {pi.name}.")
            return redirect("portal:profile")
    return _profile(request, pi, name_form=form, status=400)


@login_required
@require_POST
def delegate_grant(request):
    pi = own_pi(request.user)
    if pi is None:
        raise Http404("only a PI grants access")
    form = DelegateGrantForm(request.POST)
    if form.is_valid():
        try:
            pi_delegate_grant(
                pi=pi,
                email=form.cleaned_data["email"],
                acting_user=request.user,
                request_or_base_url=request,
            )
        except PIAccessError as exc:
            form.add_error("email", str(exc))
        else:
            messages.success(
                request, f"{form.cleaned_data['email']} can now read your statements and charges."
            )
            return redirect("portal:profile")
    return _profile(request, pi, form=form, status=400)


@login_required
@require_POST
def delegate_revoke(request, delegate_id):
    pi = own_pi(request.user)
    delegate = get_object_or_404(PIDelegate, pk=delegate_id, pi=pi) if pi else None
    if delegate is None:
        raise Http404("no such delegate")
    try:
        pi_delegate_revoke(delegate=delegate, acting_user=request.user)
    except PIAccessError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"{delegate.user.email} no longer has access.")
    return redirect(reverse("portal:profile"))
