#!/usr/bin/env python3
"""Smoke test of the production shape, without Docker: run what docker-compose.yml runs.

Reads docker-compose.yml and .env.example and runs, on this host, with PostgreSQL and Redis:
the image's build step (collectstatic), the `migrate` service, then the `web` (gunicorn),
`worker` and `beat` services' own commands, and each service's health check. Then, through
gunicorn: /health, the admin's login page and its hashed stylesheet (whitenoise), an admin
login and the dashboard, an import run by the real worker, and a PI's portal page. Stops every
process it started (also on Ctrl-C or an error) and exits non-zero on the first failure.

    python scripts/smoke_gunicorn.py                     # CI: .ci/run
    python scripts/smoke_gunicorn.py --database-url postgres://postgres@127.0.0.1:5432/x \\
        --broker-url redis://127.0.0.1:6379/13

The database named in --database-url is dropped and created again: give it one of its own.
"""

from __future__ import annotations

import argparse
import http.cookiejar
import json
import os
import re
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent  # gunicorn, celery and openchargeback of this environment
COMPOSE_PORT = "127.0.0.1:8000"  # the web's address inside its container, in its health check
PASSWORD = "smoke-" + secrets.token_urlsafe(12)


def say(text: str) -> None:
    print(f"smoke: {text}", flush=True)


class Failed(Exception):
    pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def env_example() -> dict[str, str]:
    """The uncommented NAME=value lines of .env.example: compose's configuration."""
    values = {}
    for line in (REPO / ".env.example").read_text().splitlines():
        match = re.match(r"^([A-Z][A-Z0-9_]*)=(.*)$", line)
        if match:
            values[match[1]] = match[2]
    return values


def fresh_database(url: str) -> None:
    import psycopg

    parts = urllib.parse.urlsplit(url)
    name = parts.path.lstrip("/")
    if not re.fullmatch(r"[a-z0-9_]+", name):
        raise Failed(f"database name {name!r}: use lower-case letters, digits and _")
    admin = urllib.parse.urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name}")


def empty_redis(url: str) -> None:
    import redis

    redis.Redis.from_url(url).flushdb()


class Services:
    """The long-running processes, each in its own process group so that stopping it stops
    every child (gunicorn's and Celery's workers)."""

    def __init__(self, env: dict[str, str], logs: Path):
        self.env, self.logs, self.procs = env, logs, {}

    def start(self, name: str, argv: list[str]) -> None:
        say(f"start {name}: {shlex.join(argv)}")
        log = open(self.logs / f"{name}.log", "wb")  # noqa: SIM115 (closed with the process)
        self.procs[name] = (
            subprocess.Popen(
                resolve(argv),
                cwd=REPO,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            ),
            log,
        )

    def check_running(self) -> None:
        for name, (proc, _log) in self.procs.items():
            if proc.poll() is not None:
                raise Failed(f"{name} exited with {proc.returncode}:\n{self.tail(name)}")

    def tail(self, name: str, lines: int = 30) -> str:
        text = (self.logs / f"{name}.log").read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def stop(self) -> None:
        for name, (proc, _log) in self.procs.items():
            if proc.poll() is None:
                say(f"stop {name}")
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        for name, (proc, log) in self.procs.items():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                say(f"{name} did not stop in time: killed")
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            log.close()
        self.procs.clear()


def resolve(argv: list[str]) -> list[str]:
    """The compose command's program, from this environment's bin folder when it is there."""
    program = BIN / argv[0]
    return [str(program) if program.exists() else argv[0], *argv[1:]]


def run(argv: list[str], env: dict, what: str, timeout: float = 300) -> str:
    result = subprocess.run(
        resolve(argv), cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
    )
    if result.returncode != 0:
        raise Failed(f"{what} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result.stdout


def health_check(service: dict, env: dict, port: int) -> list[str]:
    """The service's compose health check as a command line for this host."""
    test = [part.replace("$$", "$") for part in service["healthcheck"]["test"]]
    test = [part.replace(COMPOSE_PORT, f"127.0.0.1:{port}") for part in test]
    kind, *rest = test
    if kind == "CMD-SHELL":
        return ["sh", "-c", rest[0]]
    if rest[0] == "python":
        return [sys.executable, *rest[1:]]
    return rest


def until(what: str, attempt, services: Services, timeout: float = 90) -> object:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        services.check_running()
        try:
            value = attempt()
            if value:
                return value
        except (Failed, OSError, urllib.error.URLError) as exc:
            last = exc
        time.sleep(1)
    raise Failed(f"{what}: not within {timeout:.0f} s ({last})")


class Browser:
    def __init__(self, base: str):
        self.base = base
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
        )

    def get(self, path: str) -> tuple[int, str, str]:
        try:
            with self.opener.open(self.base + path, timeout=30) as response:
                return response.status, response.geturl(), response.read().decode(errors="replace")
        except urllib.error.HTTPError as error:
            return error.code, error.geturl(), error.read().decode(errors="replace")

    def login(self, path: str, username: str, password: str) -> tuple[int, str, str]:
        status, _url, page = self.get(path)
        if status != 200:
            raise Failed(f"GET {path}: {status}")
        # The form's hidden fields as a browser sends them: the CSRF token, where to go next.
        fields = {
            name: value
            for tag in re.findall(r"<input[^>]*>", page)
            if 'type="hidden"' in tag
            for name, value in re.findall(r'name="([^"]+)"[^>]*value="([^"]*)"', tag)
        }
        if "csrfmiddlewaretoken" not in fields:
            raise Failed(f"{path}: no CSRF token in the login form")
        fields.update(username=username, password=password)
        data = urllib.parse.urlencode(fields).encode()
        request = urllib.request.Request(
            self.base + path, data=data, headers={"Referer": self.base + path}
        )
        try:
            with self.opener.open(request, timeout=30) as response:
                return response.status, response.geturl(), response.read().decode(errors="replace")
        except urllib.error.HTTPError as error:
            return error.code, error.geturl(), error.read().decode(errors="replace")


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise Failed(message)
    say(f"ok: {message}")


def smoke(args: argparse.Namespace, home: Path) -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO_", "CELERY_", "DATABASE_", "CACHE_", "LOG_", "GUNICORN_"))
        and not k.startswith(("OPENCHARGEBACK_", "EMAIL_"))
    }
    env.update(env_example())  # compose's env_file
    env.update(
        # The image's own environment (Dockerfile ENV), on this host.
        OPENCHARGEBACK_HOME=str(home / "data"),
        DJANGO_STATIC_ROOT=str(home / "static"),
        GUNICORN_BIND=f"127.0.0.1:{port}",
        # What a deployment fills in: its own secret, and where its services are.
        DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
        DATABASE_URL=args.database_url,
        CELERY_BROKER_URL=args.broker_url,
        CACHE_URL=args.broker_url,
        OPENCHARGEBACK_CONFIG=str(REPO / "config.example.yaml"),
        GUNICORN_WORKERS="2",
        LOG_LEVEL="INFO",
        # The worker's node name in its health check ($HOSTNAME in a container).
        HOSTNAME=socket.gethostname(),
        # This checkout's code, before any installed copy of it.
        PYTHONPATH=str(REPO),
        PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    )
    say(f"fresh database and broker: {args.database_url} {args.broker_url}")
    fresh_database(args.database_url)
    empty_redis(args.broker_url)

    say("image build step: collectstatic")
    run(["openchargeback", "collectstatic", "--noinput", "-v0"], env, "collectstatic")
    expect((home / "static" / "staticfiles.json").exists(), "hashed static files collected")
    say("service migrate: " + shlex.join(compose["migrate"]["command"]))
    run(compose["migrate"]["command"], env, "migrate")
    run(
        ["openchargeback", "createsuperuser", "--noinput", "--username", "smoke-admin",
         "--email", "smoke-admin@example.edu"],
        {**env, "DJANGO_SUPERUSER_PASSWORD": PASSWORD},
        "createsuperuser",
    )  # fmt: skip

    services = Services(env, home)
    try:
        for name in ("web", "worker", "beat"):
            services.start(name, compose[name]["command"])
        base = f"http://127.0.0.1:{port}"
        browser = Browser(base)

        def healthy():
            status, _url, body = browser.get("/health")
            return json.loads(body) if status == 200 else None

        body = until("/health answers 200", healthy, services)
        expect(
            body == {"status": "ok", "checks": {"database": "ok", "broker": "ok"}},
            f"/health through gunicorn: {json.dumps(body)}",
        )
        for name in ("web", "worker", "beat"):
            argv = health_check(compose[name], env, port)
            until(
                f"{name}'s health check",
                lambda a=argv, n=name: run(a, env, f"{n}'s health check", 30) is not None,
                services,
            )
            say(f"ok: {name}'s compose health check passes")

        status, _url, page = browser.get("/admin/login/")
        expect(status == 200 and "csrfmiddlewaretoken" in page, "admin login page: 200")
        css = re.search(r'href="(/static/admin/css/base\.[0-9a-f]{12}\.css)"', page)
        expect(css is not None, "admin stylesheet has a hashed name")
        status, _url, _css = browser.get(css[1])
        expect(status == 200 and "body" in _css, f"whitenoise serves {css[1]}")
        status, url, page = browser.login("/admin/login/", "smoke-admin", PASSWORD)
        expect(
            status == 200 and url == f"{base}/admin/", f"admin login: {status} {url[len(base) :]}"
        )

        say("an import through the real worker")
        sample = REPO / "sample_data" / "aws_2026-09.csv"
        script = (
            "import json; from billing.tasks import import_files_task as t; "
            f"r = t.delay(paths=[{str(sample)!r}], source='aws', period='2026-09', "
            f"config_path={env['OPENCHARGEBACK_CONFIG']!r}); "
            "print(json.dumps(r.get(timeout=180)))"
        )
        out = run(["openchargeback", "shell", "--no-imports", "-c", script], env, "import task")
        result = json.loads(out.strip().splitlines()[-1])
        expect(
            result["status"] == "imported" and result["rows_imported"] > 0,
            f"worker imported {sample.name}: {result['rows_imported']} rows, "
            f"import #{result['import_id']}",
        )
        status, _url, page = browser.get("/admin/")
        expect(status == 200 and "2026-09" in page, "dashboard shows the imported month")

        say("a PI's portal login")
        script = (
            "from accounts.models import User; from billing.models import PI; "
            "pi = PI.objects.order_by('email').first(); "
            f"u = User.objects.create_user(pi.email, pi.email, {PASSWORD!r}); "
            "pi.user = u; pi.save(); print(pi.email)"
        )
        email = run(["openchargeback", "shell", "--no-imports", "-c", script], env, "PI user")
        pi_browser = Browser(base)
        status, url, page = pi_browser.login("/accounts/login/", email.strip(), PASSWORD)
        expect(status == 200 and "/portal/" in url, f"portal page after login: {url[len(base) :]}")
        services.check_running()
    except Failed:
        for name in list(services.procs):
            print(f"--- {name} log (last lines)\n{services.tail(name)}", file=sys.stderr)
        raise
    finally:
        services.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--database-url",
        default="postgres://postgres@127.0.0.1:5432/openchargeback_smoke",
        help="a PostgreSQL database of its own: dropped and created again",
    )
    parser.add_argument(
        "--broker-url", default="redis://127.0.0.1:6379/13", help="a Redis database of its own"
    )
    args = parser.parse_args()
    # Ctrl-C or a CI runner's SIGTERM: the finally blocks stop the services.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with tempfile.TemporaryDirectory(prefix="oc-smoke-") as home:
        try:
            smoke(args, Path(home))
        except Failed as failure:
            print(f"smoke: FAILED: {failure}", file=sys.stderr)
            return 1
    say("passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
