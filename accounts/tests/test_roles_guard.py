"""Roles can't be escalated (issue 11): each path tried over HTTP with the admin's own forms, as a
finance admin would, and the audit trail of every user, group and permission change."""

from __future__ import annotations

import threading
import time

import pytest
from django.contrib.auth.models import Group, Permission
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction

from accounts.models import AuditEvent, User
from accounts.roles import FINANCE_ADMIN, REVIEWER
from billing.models import PI

pytestmark = pytest.mark.django_db


def user_form(user: User, **fields) -> dict:
    """The user admin's change form as the browser posts it, plus `fields`."""
    data = {
        "username": user.username,
        "first_name": user.first_name,
        "last_name": user.last_name,
        "email": user.email,
        "date_joined_0": user.date_joined.strftime("%Y-%m-%d"),
        "date_joined_1": user.date_joined.strftime("%H:%M:%S"),
    }
    if user.is_active:
        data["is_active"] = "on"
    data.update(fields)
    return data


def change_url(user: User) -> str:
    return f"/admin/accounts/user/{user.pk}/change/"


@pytest.fixture
def finance(client, django_user_model):
    """A finance admin, logged in: staff, in the finance admin role, not superuser."""
    user = django_user_model.objects.create_user("fran", password="pw", is_staff=True)
    user.groups.add(Group.objects.get(name=FINANCE_ADMIN))
    client.force_login(user)
    return user


@pytest.fixture
def root(django_user_model):
    return django_user_model.objects.create_superuser("root", "root@example.edu", "pw")


def test_finance_admin_cannot_make_itself_superuser(client, finance):
    every_permission = list(Permission.objects.values_list("pk", flat=True)[:5])
    reviewer = Group.objects.get(name=REVIEWER)

    response = client.post(
        change_url(finance),
        user_form(
            finance,
            first_name="Fran",
            is_superuser="on",
            is_staff="on",
            groups=[reviewer.pk],
            user_permissions=every_permission,
        ),
    )

    assert response.status_code == 302  # saved: the other fields are the user's to edit
    finance.refresh_from_db()
    assert finance.first_name == "Fran"
    assert not finance.is_superuser
    assert list(finance.groups.values_list("name", flat=True)) == [FINANCE_ADMIN]
    assert not finance.user_permissions.exists()
    page = client.get(change_url(finance)).content.decode()
    assert 'name="is_superuser"' not in page and 'name="groups"' not in page


def test_finance_admin_cannot_grant_staff_or_roles_to_another_user(
    client, finance, django_user_model
):
    other = django_user_model.objects.create_user("otto", password="pw")
    role = Group.objects.get(name=FINANCE_ADMIN)

    client.post(change_url(other), user_form(other, is_staff="on", groups=[role.pk]))

    other.refresh_from_db()
    assert not other.is_staff and not other.is_superuser
    assert not other.groups.exists()


def test_finance_admin_cannot_edit_repassword_or_delete_a_superuser(client, finance, root):
    assert client.get(change_url(root)).status_code == 200  # may look (view permission)
    response = client.post(change_url(root), user_form(root, email="me@evil.example"))
    assert response.status_code == 403
    password = f"/admin/accounts/user/{root.pk}/password/"
    new = {"password1": "Take0ver-now!", "password2": "Take0ver-now!"}
    assert client.post(password, new).status_code == 403
    assert (
        client.post(f"/admin/accounts/user/{root.pk}/delete/", {"post": "yes"}).status_code == 403
    )
    bulk = {"action": "delete_selected", "_selected_action": [root.pk], "post": "yes"}
    assert client.post("/admin/accounts/user/", bulk).status_code == 403

    root.refresh_from_db()
    assert root.email == "root@example.edu" and root.check_password("pw")


def test_finance_admin_cannot_change_groups_or_their_permissions(client, finance):
    # Even given the group permissions explicitly: only a superuser changes the roles.
    finance.user_permissions.add(
        *Permission.objects.filter(content_type__app_label="auth", codename__endswith="_group")
    )
    reviewer = Group.objects.get(name=REVIEWER)
    before = set(reviewer.permissions.values_list("pk", flat=True))
    everything = list(Permission.objects.values_list("pk", flat=True))

    url = f"/admin/auth/group/{reviewer.pk}/change/"
    response = client.post(url, {"name": REVIEWER, "permissions": everything})
    assert response.status_code == 403
    response = client.post(
        "/admin/auth/group/add/", {"name": "root-ish", "permissions": everything}
    )
    assert response.status_code == 403
    delete = client.post(f"/admin/auth/group/{reviewer.pk}/delete/", {"post": "yes"})
    assert delete.status_code == 403

    assert set(reviewer.permissions.values_list("pk", flat=True)) == before
    assert not Group.objects.filter(name="root-ish").exists()


def test_a_superuser_grants_roles_and_it_is_audited_with_who_and_before_after(
    client, root, django_user_model
):
    client.force_login(root)
    other = django_user_model.objects.create_user("otto", password="pw")
    role = Group.objects.get(name=FINANCE_ADMIN)

    response = client.post(change_url(other), user_form(other, is_staff="on", groups=[role.pk]))

    assert response.status_code == 302
    other.refresh_from_db()
    assert other.is_staff and list(other.groups.all()) == [role]
    change = AuditEvent.objects.get(action="user.change", object_id=str(other.pk))
    assert (change.actor, change.user) == ("root", root)
    assert change.before == {"is_staff": False} and change.after == {"is_staff": True}
    groups = AuditEvent.objects.get(action="user.groups", object_id=str(other.pk))
    assert (groups.actor, groups.before, groups.after) == ("root", [], [FINANCE_ADMIN])


def test_a_pi_login_is_never_staff(client, root, django_user_model):
    login = django_user_model.objects.create_user("ada@example.edu", password="pw")
    pi = PI.objects.create(email="ada@example.edu", user=login)

    # Not even a superuser, in the admin: the form says why and nothing is saved.
    client.force_login(root)
    response = client.post(change_url(login), user_form(login, is_staff="on"))
    assert response.status_code == 200
    assert "staff need their own login" in response.content.decode()
    login.refresh_from_db()
    assert not login.is_staff

    # Nor from code, on either side of the link.
    login.is_staff = True
    with pytest.raises(ValidationError):
        login.save()
    login.is_staff, login.is_superuser = False, True
    with pytest.raises(ValidationError):
        login.save()
    staff = django_user_model.objects.create_user("sam", password="pw", is_staff=True)
    pi.user = staff
    with pytest.raises(ValidationError):
        pi.save()
    assert User.objects.get(pk=login.pk).is_staff is False
    assert PI.objects.get(pk=pi.pk).user_id == login.pk


@pytest.mark.parametrize("flag", ["is_staff", "is_superuser"])
def test_the_database_refuses_a_staff_pi_login_on_paths_that_skip_save(flag, django_user_model):
    """QuerySet.update and bulk writes skip save(): the triggers of billing 0006 refuse them."""
    login = django_user_model.objects.create_user("ada@example.edu", password="pw")
    PI.objects.create(email="ada@example.edu", user=login)
    staff = django_user_model.objects.create_user("sam", password="pw", **{flag: True})
    bob = PI.objects.create(email="bob@example.edu")

    with pytest.raises(IntegrityError), transaction.atomic():
        User.objects.filter(pk=login.pk).update(**{flag: True})
    with pytest.raises(IntegrityError), transaction.atomic():
        PI.objects.filter(pk=bob.pk).update(user=staff)
    with pytest.raises(IntegrityError), transaction.atomic():
        PI.objects.bulk_create([PI(email="carol@example.edu", user=staff)])

    assert not User.objects.filter(pk=login.pk, **{flag: True}).exists()
    assert PI.objects.get(pk=bob.pk).user_id is None
    assert not PI.objects.filter(email="carol@example.edu").exists()
    # Unlinked logins and non-staff links stay allowed.
    User.objects.filter(pk=staff.pk).update(is_staff=True)
    PI.objects.filter(pk=bob.pk).update(user=django_user_model.objects.create_user("bob"))


def test_changes_from_code_are_audited_too(django_user_model):
    """A shell or a command: no request, so the operating-system user is the actor."""
    user = django_user_model.objects.create_user("otto", password="pw")
    created = AuditEvent.objects.get(action="user.create")
    assert created.after["username"] == "otto" and created.actor.endswith("@cli")
    assert "password" not in str(created.after)

    group = Group.objects.create(name="auditors")
    permission = Permission.objects.get(codename="view_charge")
    group.permissions.add(permission)
    group.user_set.add(user)  # from the group's side
    user.user_permissions.add(permission)
    user.set_password("new-secret-1")
    user.is_superuser = True
    user.save()
    group.permissions.clear()
    user.groups.remove(group)

    events = list(
        AuditEvent.objects.filter(action__in=("group.permissions", "user.groups"))
        .order_by("id")
        .values_list("action", "before", "after")
    )
    assert events == [
        ("group.permissions", [], ["billing.view_charge"]),
        ("user.groups", [], ["auditors"]),
        ("group.permissions", ["billing.view_charge"], []),
        ("user.groups", ["auditors"], []),
    ]
    perms = AuditEvent.objects.get(action="user.permissions")
    assert (perms.before, perms.after) == ([], ["billing.view_charge"])
    change = AuditEvent.objects.get(action="user.change")
    assert change.before == {"is_superuser": False} and change.after == {"is_superuser": True}
    assert change.details == {"password_changed": True}
    assert "new-secret" not in str(change.details) + str(change.after)
    assert AuditEvent.objects.filter(action="group.create", object_repr="auditors").exists()

    user_pk = user.pk
    user.delete()
    group.delete()
    deleted = AuditEvent.objects.get(action="user.delete")
    assert deleted.object_id == str(user_pk) and deleted.before["is_superuser"] is True
    assert AuditEvent.objects.filter(action="group.delete", object_repr="auditors").exists()


def test_a_login_is_not_a_user_change(client, django_user_model):
    django_user_model.objects.create_user("ada", password="right-horse-battery", is_staff=True)
    client.post("/admin/login/", {"username": "ada", "password": "right-horse-battery"})
    assert AuditEvent.objects.filter(action="auth.login").count() == 1
    assert not AuditEvent.objects.filter(action="user.change").exists()


def _wait_until_blocked(pid: int, finished, seconds: float = 30) -> None:
    """Wait (with a deadline) until backend `pid` waits on a lock, or its work is `finished()`
    without waiting (the defect: the final assertions then say what went through)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not finished():
        with connection.cursor() as cursor:
            cursor.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", [pid])
            row = cursor.fetchone()
        if row and row[0] == "Lock":
            return
        time.sleep(0.02)
    assert finished(), f"backend {pid} neither waited on a lock nor finished"


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("first", ["link", "promote"])
def test_a_link_and_a_promotion_racing_cannot_both_commit(first, django_user_model):
    """Two transactions: one links a login to a PI, the other makes that login staff. Each alone
    is fine; whichever commits second must be refused (a plain EXISTS check would let both
    through, each not seeing the other's uncommitted row)."""
    if connection.vendor != "postgresql":
        pytest.skip("needs DATABASE_URL=postgres://… (SQLite has one writer at a time)")
    login = django_user_model.objects.create_user("ada@example.edu", password="pw")
    pi = PI.objects.create(email="ada@example.edu")

    def link():
        PI.objects.filter(pk=pi.pk).update(user=login)

    def promote():
        User.objects.filter(pk=login.pk).update(is_staff=True)

    steps = {"link": link, "promote": promote}
    second = "promote" if first == "link" else "link"
    holding, release = threading.Event(), threading.Event()
    outcome = {}

    def run_first():
        try:
            with transaction.atomic():
                steps[first]()
                with connection.cursor() as cursor:
                    cursor.execute("SELECT pg_backend_pid()")
                    outcome["first_pid"] = cursor.fetchone()[0]
                holding.set()
                release.wait(timeout=60)
            outcome[first] = "committed"
        finally:
            connection.close()

    def run_second():
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                outcome["second_pid"] = cursor.fetchone()[0]
            with transaction.atomic():
                steps[second]()
            outcome[second] = "committed"
        except IntegrityError:
            outcome[second] = "refused"
        finally:
            connection.close()

    one = threading.Thread(target=run_first)
    one.start()
    assert holding.wait(timeout=60)
    two = threading.Thread(target=run_second)
    two.start()
    deadline = time.monotonic() + 30
    while "second_pid" not in outcome and time.monotonic() < deadline:
        time.sleep(0.01)
    # The second waits for the first's lock.
    _wait_until_blocked(outcome["second_pid"], finished=lambda: second in outcome)
    release.set()
    one.join(timeout=60)
    two.join(timeout=60)

    assert outcome[first] == "committed" and outcome[second] == "refused"
    linked = PI.objects.get(pk=pi.pk).user_id == login.pk
    staff = User.objects.get(pk=login.pk).is_staff
    assert linked != staff  # exactly one of the two happened


def test_the_pi_page_refuses_to_link_a_staff_login(client, finance, django_user_model):
    pi = PI.objects.create(email="ada@example.edu", name="Ada")

    response = client.post(
        f"/admin/billing/pi/{pi.pk}/change/",
        {
            "email": pi.email,
            "name": pi.name,
            "user": finance.pk,  # its own staff login
            "delegates-TOTAL_FORMS": "0",
            "delegates-INITIAL_FORMS": "0",
        },
    )

    assert response.status_code == 200
    assert "staff need their own login" in response.content.decode()
    assert PI.objects.get(pk=pi.pk).user_id is None


@pytest.mark.django_db(transaction=True)
def test_the_pi_login_triggers_come_back_after_a_table_is_remade(django_user_model):
    """They are registered guards: a migration that remakes billing_pi or accounts_user (SQLite
    drops the triggers with the old table; PostgreSQL keeps them) gets them back at migrate."""
    from django.apps import apps
    from django.db import connection

    from accounts.dbguards import drop_before_migrate, install_after_migrate, missing_guards

    assert missing_guards(connection) == []
    if connection.vendor == "sqlite":
        drop_before_migrate(sender=apps.get_app_config("accounts"), using="default")
        with connection.schema_editor() as editor:  # what a migration altering them does
            editor._remake_table(PI)
            editor._remake_table(django_user_model)
        assert {"billing_pi_login_not_staff_insert", "accounts_user_pi_login_not_staff"} <= set(
            missing_guards(connection)
        )
    else:
        with connection.cursor() as cursor:
            cursor.execute("DROP TRIGGER billing_pi_login_not_staff ON billing_pi")
        assert missing_guards(connection) == ["billing_pi_login_not_staff"]
    install_after_migrate(sender=apps.get_app_config("accounts"), using="default")
    assert missing_guards(connection) == []

    staff = django_user_model.objects.create_user("sam", password="pw", is_staff=True)
    with pytest.raises(IntegrityError), transaction.atomic():
        PI.objects.bulk_create([PI(email="carol@example.edu", user=staff)])
