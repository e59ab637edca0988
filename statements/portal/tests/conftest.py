"""A small world for the portal tests: two PIs with final statements for 2025-01 (closed), an
open 2025-02 with a flagged charge, and one user for every role of the authorization matrix:
anonymous, the owner (Ada), her delegate, her revoked delegate, another PI (Bob) and staff."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.utils import timezone

from accounts.models import User
from billing.models import PI, BillingPeriod, Charge, Flag, PIDelegate, Project
from billing.services import period_close
from billing.tests.conftest import make_charges  # noqa: F401  (fixture)
from statements.models import Statement
from statements.services import statement_generate

PASSWORD = "a-long-Portal-passphrase-42"


@dataclass
class World:
    ada: PI
    bob: PI
    ada_user: User
    bob_user: User
    delegate: User
    revoked: User
    staff: User
    january: BillingPeriod
    february: BillingPeriod
    ada_statement: Statement
    bob_statement: Statement


def _user(username, *, staff=False, superuser=False) -> User:
    user = User(username=username, email=username, is_staff=staff, is_superuser=superuser)
    user.set_password(PASSWORD)
    user.save()
    return user


@pytest.fixture(autouse=True)
def private_media(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.OPENCHARGEBACK_CONFIG = None
    return tmp_path


@pytest.fixture
def world(make_charges, django_capture_on_commit_callbacks) -> World:  # noqa: F811
    ada = PI.objects.create(email="ada@example.edu", name="Ada Lovelace")
    bob = PI.objects.create(email="bob@example.edu", name="Bob Babbage")
    engines = Project.objects.create(code="engines", name="Analytical engines")
    bridges = Project.objects.create(code="bridges")
    # Realistic names: test_phone.py's screenshots of these pages are the docs' (docs/portal.md).
    make_charges(
        [Decimal("10.005"), Decimal("20.0049"), Decimal("1234.5")],
        pi=ada,
        project=engines,
        fund_org="MATH-1843",
        service_name="Compute",
        resource_id="i-0a3f9c2e7b1d45e08",
        resource_name="engine-sim-01",
        list_cost=Decimal("2000.00"),
    )
    make_charges(
        [Decimal("7.25")],
        pi=ada,
        project=engines,
        fund_org="MATH-1843",
        service_name="Storage",
        resource_id="vol-0c81d2e4f5a6b7c89",
        resource_name="engines-archive",
    )
    make_charges(
        [Decimal("99.99")],
        pi=bob,
        project=bridges,
        fund_org="ENG-2000",
        service_name="Compute",
        resource_id="i-07d4b1a9c3e2f6a51",
        resource_name="bridge-fem-02",
    )
    january = BillingPeriod.objects.get(key="2025-01")
    period_close(key="2025-01", actor="test")
    with django_capture_on_commit_callbacks(execute=True):
        statement_generate(period_key="2025-01", actor="test")
    # An open month: Ada's charges so far, one of them flagged for review.
    february = BillingPeriod.objects.create(key="2025-02")
    feb = make_charges(
        [Decimal("3.333"), Decimal("3.333"), Decimal("50.00")],
        period=february,
        pi=ada,
        project=engines,
        fund_org="MATH-1843",
        service_name="Compute",
        billing_period_start=datetime(2025, 2, 1, tzinfo=UTC),
    )
    Charge.objects.filter(pk=feb[2].pk).update(
        review_status=Charge.ReviewStatus.FLAGGED, flags=int(Flag.PATTERN_MATCH)
    )
    ada_user = _user("ada@example.edu")
    bob_user = _user("bob@example.edu")
    ada.user, bob.user = ada_user, bob_user
    ada.save()
    bob.save()
    delegate = _user("grants@example.edu")
    revoked = _user("former@example.edu")
    PIDelegate.objects.create(pi=ada, user=delegate, granted_by=ada_user)
    PIDelegate.objects.create(pi=ada, user=revoked, granted_by=ada_user, revoked_at=timezone.now())
    staff = _user("finance", staff=True, superuser=True)
    return World(
        ada=ada,
        bob=bob,
        ada_user=ada_user,
        bob_user=bob_user,
        delegate=delegate,
        revoked=revoked,
        staff=staff,
        january=january,
        february=february,
        ada_statement=Statement.objects.get(pi=ada),
        bob_statement=Statement.objects.get(pi=bob),
    )


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "browser: drives the system's Chromium with Playwright (skips without it)"
    )
