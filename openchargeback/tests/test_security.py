"""Site security: production settings from the environment (check --deploy clean, a required
secret key, HTTPS, the admin's path), login lockout with its audit trail, and the headers every
response carries."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from accounts.models import AuditEvent, User

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "a-long-Portal-passphrase-42"
PRODUCTION_ENV = {
    "DJANGO_SECRET_KEY": "prod-" + "k3y-Th1s-is-only-for-the-test-of-check-deploy-" * 2,
    "DJANGO_ALLOWED_HOSTS": "billing.example.edu",
    "OPENCHARGEBACK_BASE_URL": "https://billing.example.edu",
}
DROP = (
    "DJANGO_DEBUG",
    "DJANGO_SECRET_KEY",
    "DJANGO_SECRET_KEY_FILE",
    "DATABASE_URL",
    "OPENCHARGEBACK_BASE_URL",
)


def manage(*args, env: dict, tmp_path) -> subprocess.CompletedProcess:
    """manage.py in a fresh process, with the environment a deployment would give it."""
    base = {k: v for k, v in os.environ.items() if k not in DROP and not k.startswith("DJANGO_")}
    base.update(OPENCHARGEBACK_HOME=str(tmp_path / "instance"), **env)
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO,
        env=base,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_deploy_is_clean_with_production_values(tmp_path):
    result = manage(
        "check", "--deploy", "--fail-level", "WARNING", env=PRODUCTION_ENV, tmp_path=tmp_path
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout
    assert "WARNING" not in result.stderr and "?: (" not in result.stderr


@pytest.mark.parametrize(
    "env",
    [{}, {"DJANGO_SECRET_KEY": "dev-only-insecure-key-do-not-use-in-production"}],
    ids=["no key", "development key"],
)
def test_production_refuses_to_start_without_its_own_secret_key(tmp_path, env):
    result = manage(
        "check", env={"DJANGO_ALLOWED_HOSTS": "billing.example.edu", **env}, tmp_path=tmp_path
    )
    assert result.returncode != 0
    # Said as what to set, not as a traceback (openchargeback/cli.py).
    assert "configuration: DJANGO_SECRET_KEY is required when DEBUG is off" in result.stderr
    assert "Traceback" not in result.stderr


def test_development_runs_with_the_development_key(tmp_path):
    result = manage("check", env={"DJANGO_DEBUG": "1"}, tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr


def test_secret_key_from_a_file(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("file-" + "x9" * 30 + "\n")
    result = manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        env={
            "DJANGO_SECRET_KEY_FILE": str(secret),
            "DJANGO_ALLOWED_HOSTS": "billing.example.edu",
            "OPENCHARGEBACK_BASE_URL": "https://billing.example.edu",
        },
        tmp_path=tmp_path,
    )
    assert result.returncode == 0, result.stderr


def test_check_deploy_names_a_missing_base_url(tmp_path):
    env = {k: v for k, v in PRODUCTION_ENV.items() if k != "OPENCHARGEBACK_BASE_URL"}
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=env, tmp_path=tmp_path)
    assert result.returncode != 0
    assert "openchargeback.W001" in result.stderr and "OPENCHARGEBACK_BASE_URL" in result.stderr


SHOW = (
    "import json; from django.conf import settings as s; from django.urls import reverse; "
    "print(json.dumps({k: getattr(s, k, None) for k in ("
    "'SECURE_SSL_REDIRECT', 'SESSION_COOKIE_SECURE', 'CSRF_COOKIE_SECURE', "
    "'SESSION_COOKIE_HTTPONLY', 'CSRF_COOKIE_HTTPONLY', 'SECURE_HSTS_SECONDS', "
    "'SECURE_PROXY_SSL_HEADER', 'X_FRAME_OPTIONS', 'AXES_FAILURE_LIMIT', "
    "'AXES_LOCKOUT_PARAMETERS', 'SESSION_COOKIE_AGE', 'SESSION_EXPIRE_AT_BROWSER_CLOSE')} "
    "| {'admin': reverse('admin:index')}))"
)


def test_production_defaults_and_their_environment_variables(tmp_path):
    prod = json.loads(
        manage("shell", "--no-imports", "-c", SHOW, env=PRODUCTION_ENV, tmp_path=tmp_path).stdout
    )
    assert prod["SECURE_SSL_REDIRECT"] and prod["SESSION_COOKIE_SECURE"]
    assert prod["CSRF_COOKIE_SECURE"] and prod["SESSION_COOKIE_HTTPONLY"]
    assert prod["CSRF_COOKIE_HTTPONLY"] and prod["SECURE_HSTS_SECONDS"] >= 31536000
    assert prod["SECURE_PROXY_SSL_HEADER"] is None and prod["X_FRAME_OPTIONS"] == "DENY"
    assert prod["AXES_FAILURE_LIMIT"] == 10
    assert prod["AXES_LOCKOUT_PARAMETERS"] == ["username", "ip_address"]
    assert prod["SESSION_COOKIE_AGE"] == 3600 and prod["SESSION_EXPIRE_AT_BROWSER_CLOSE"]
    assert prod["admin"] == "/admin/"
    tuned = json.loads(
        manage(
            "shell",
            "--no-imports",
            "-c",
            SHOW,
            env={
                **PRODUCTION_ENV,
                "DJANGO_SECURE_PROXY_SSL_HEADER": "1",
                "OPENCHARGEBACK_ADMIN_PATH": "/backoffice-7f3a/",
                "OPENCHARGEBACK_LOGIN_FAILURE_LIMIT": "5",
                "OPENCHARGEBACK_LOCKOUT_BY": "username+ip_address",
            },
            tmp_path=tmp_path,
        ).stdout
    )
    assert tuned["SECURE_PROXY_SSL_HEADER"] == ["HTTP_X_FORWARDED_PROTO", "https"]
    assert tuned["admin"] == "/backoffice-7f3a/"
    assert tuned["AXES_FAILURE_LIMIT"] == 5
    assert tuned["AXES_LOCKOUT_PARAMETERS"] == [["username", "ip_address"]]
    dev = json.loads(
        manage(
            "shell", "--no-imports", "-c", SHOW, env={"DJANGO_DEBUG": "1"}, tmp_path=tmp_path
        ).stdout
    )
    assert not dev["SECURE_SSL_REDIRECT"] and not dev["SESSION_COOKIE_SECURE"]


def test_https_redirect_when_on(client, settings):
    settings.SECURE_SSL_REDIRECT = True
    response = client.get("/accounts/login/")
    assert response.status_code == 301 and response["Location"].startswith("https://")
    assert client.get("/accounts/login/", secure=True).status_code == 200


@pytest.fixture
def ada(db):
    user = User(username="ada@example.edu", email="ada@example.edu")
    user.set_password(PASSWORD)
    user.save()
    return user


def _attempt(client, username, password, ip="10.0.0.1"):
    return client.post(
        "/accounts/login/", {"username": username, "password": password}, REMOTE_ADDR=ip
    )


def test_ten_wrong_passwords_lock_the_account_and_it_is_audited(client, ada):
    for _ in range(9):
        assert _attempt(client, "ada@example.edu", "wrong").status_code == 200
    locked = _attempt(client, "ada@example.edu", "wrong")
    assert locked.status_code == 429 and b"Too many failed logins" in locked.content
    # Now even the right password, from another address, is refused.
    again = _attempt(client, "ada@example.edu", PASSWORD, ip="10.9.9.9")
    assert again.status_code == 429 and "_auth_user_id" not in client.session
    event = AuditEvent.objects.filter(action="auth.locked_out").first()
    assert event is not None and event.object_id == str(ada.pk) and event.user is None
    assert event.details["username"] == "ada@example.edu" and event.details["failure_limit"] == 10
    assert AuditEvent.objects.filter(action="auth.login_failed").count() >= 10


def test_ten_failures_from_one_address_lock_the_address(client, ada):
    for i in range(10):
        _attempt(client, f"guess{i}@example.edu", "wrong", ip="10.6.6.6")
    assert _attempt(client, "ada@example.edu", PASSWORD, ip="10.6.6.6").status_code == 429
    assert _attempt(client, "ada@example.edu", PASSWORD, ip="10.7.7.7").status_code == 302


def test_the_limit_is_configurable_and_covers_the_admin_login(client, ada, settings):
    settings.AXES_FAILURE_LIMIT = 3
    ada.is_staff = True
    ada.save()
    for _ in range(3):
        client.post("/admin/login/", {"username": "ada@example.edu", "password": "nope"})
    response = client.post("/admin/login/", {"username": "ada@example.edu", "password": PASSWORD})
    assert response.status_code == 429
    assert AuditEvent.objects.filter(action="auth.locked_out").exists()


def test_a_success_before_the_limit_starts_counting_again(client, ada):
    for _ in range(9):
        _attempt(client, "ada@example.edu", "wrong")
    assert _attempt(client, "ada@example.edu", PASSWORD).status_code == 302
    client.logout()
    assert _attempt(client, "ada@example.edu", "wrong").status_code == 200


def test_every_response_carries_the_security_headers(client, ada):
    response = client.get("/accounts/login/")
    csp = response["Content-Security-Policy"]
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";") if d.strip())
    assert directives["script-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'" and directives["object-src"] == "'none'"
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["Cross-Origin-Opener-Policy"] == "same-origin"
    login = _attempt(client, "ada@example.edu", PASSWORD)
    assert login.cookies["sessionid"]["httponly"]
    assert login.cookies["sessionid"]["samesite"] == "Lax"
    assert AuditEvent.objects.filter(action="auth.login", user=ada).exists()


def test_admin_pages_have_no_inline_scripts(admin_client):
    for url in ("/admin/", "/admin/billing/charge/", "/admin/login/"):
        body = admin_client.get(url).content.decode()
        for tag in body.split("<script")[1:]:
            opening = tag.split(">", 1)[0]
            assert "src=" in opening or 'type="application/json"' in opening, (url, opening)
