"""The deployment's files agree with the code: every environment variable the settings and
gunicorn read is in .env.example and docs/configuration.md (and nothing stale is); the compose
file is valid YAML with the services, health checks and volumes a production needs and no secret
written into it; the image runs as a user that is not root."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
READERS = ("openchargeback/settings.py", "gunicorn.conf.py")
# Read by a library on the settings' behalf (dj_database_url.config reads DATABASE_URL).
IMPLICIT = {"DATABASE_URL"}
# Read by the compose file's PostgreSQL container, or by a library (boto3), not by the settings.
NOT_SETTINGS = {
    "POSTGRES_USER",
    "POSTGRES_PASSWORD",
    "POSTGRES_DB",
    "POSTGRES_SHARED_BUFFERS",
    "POSTGRES_MAX_WAL_SIZE",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
}


def _env_name(node: ast.AST) -> str | None:
    """NAME when node reads it: os.environ.get("NAME"…), os.getenv, os.environ["NAME"],
    env_bool("NAME"…)."""
    if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
        func = ast.unparse(node.func)
        if func in ("os.environ.get", "os.getenv", "env_bool"):
            return node.args[0].value
    if isinstance(node, ast.Subscript) and ast.unparse(node.value) == "os.environ":
        if isinstance(node.slice, ast.Constant):
            return node.slice.value
    return None


def variables_read() -> set[str]:
    names = set(IMPLICIT)
    for relative in READERS:
        tree = ast.parse((REPO / relative).read_text())
        names |= {name for node in ast.walk(tree) if (name := _env_name(node))}
    return names


def test_the_scan_finds_reads_of_every_shape():
    found = {
        _env_name(node)
        for node in ast.walk(
            ast.parse(
                'os.environ.get("A")\nenv_bool("B", True)\nos.environ["C"]\n'
                'int(os.environ.get(\n    "D", "1"))\nos.getenv("E")\nprint("F")'
            )
        )
    }
    assert found - {None} == {"A", "B", "C", "D", "E"}
    # The real settings: a sample of each shape, so the scan cannot quietly find nothing.
    assert {"DJANGO_SECRET_KEY", "DJANGO_DEBUG", "DJANGO_EMAIL_BACKEND", "GUNICORN_WORKERS"} <= (
        variables_read()
    )


def test_env_example_documents_every_variable_and_no_other():
    text = (REPO / ".env.example").read_text()
    listed = set(re.findall(r"^#? ?([A-Z][A-Z0-9_]+)=", text, flags=re.M))
    read = variables_read()
    assert read - listed == set(), "add these to .env.example"
    assert listed - read - NOT_SETTINGS == set(), "not read by settings.py or gunicorn.conf.py"


def test_configuration_doc_has_a_row_for_every_variable():
    doc = (REPO / "docs/configuration.md").read_text()
    documented = set(re.findall(r"`([A-Z][A-Z0-9_]{2,})`", doc))
    assert variables_read() - documented == set(), "add these to docs/configuration.md"


def compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


APP_SERVICES = ("web", "worker", "beat")


def test_compose_runs_every_part_with_health_checks_and_persistent_volumes():
    services = compose()["services"]
    assert set(services) >= {"migrate", "web", "worker", "beat", "db", "redis"}
    for name in (*APP_SERVICES, "db", "redis"):
        check = services[name].get("healthcheck", {})
        assert check.get("test") and check["test"][0] in ("CMD", "CMD-SHELL"), name
    assert services["web"]["command"][0] == "gunicorn"
    assert services["worker"]["command"][:4] == ["celery", "-A", "openchargeback", "worker"]
    assert services["beat"]["command"][:4] == ["celery", "-A", "openchargeback", "beat"]
    for name in APP_SERVICES:
        deps = services[name]["depends_on"]
        assert deps["migrate"]["condition"] == "service_completed_successfully", name
        assert deps["redis"]["condition"] == "service_healthy", name
    assert services["migrate"]["depends_on"]["db"]["condition"] == "service_healthy"
    # Named volumes for everything that must outlive a container.
    declared = set(compose()["volumes"])
    assert declared == {"pgdata", "redisdata", "instance"}
    assert "pgdata:/var/lib/postgresql/data" in services["db"]["volumes"]
    for name in APP_SERVICES:
        assert "instance:/data" in services[name]["volumes"], name


SECRET_KEYS = re.compile(r"PASSWORD|SECRET|TOKEN|_KEY$|^DATABASE_URL$|BROKER_URL|CACHE_URL")


def test_compose_takes_configuration_from_env_file_and_holds_no_secret():
    services = compose()["services"]
    for name in (*APP_SERVICES, "migrate", "db"):
        assert services[name]["env_file"] == ".env", name
    for name, service in services.items():
        environment = service.get("environment") or {}
        if isinstance(environment, list):
            environment = dict(item.partition("=")[::2] for item in environment)
        inline = sorted(key for key in environment if SECRET_KEYS.search(key))
        assert inline == [], f"{name} sets {inline} inline: put them in .env"
    raw = (REPO / "docker-compose.yml").read_text()
    assert not re.search(r"://[^/\s:@]+:[^@\s]+@", raw), "a URL with a password in the file"


def test_every_variable_the_compose_file_interpolates_is_documented():
    raw = (REPO / "docker-compose.yml").read_text()
    interpolated = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", raw))
    assert {"POSTGRES_SHARED_BUFFERS", "POSTGRES_MAX_WAL_SIZE"} <= interpolated
    listed = set(re.findall(r"^#? ?([A-Z][A-Z0-9_]+)=", (REPO / ".env.example").read_text(), re.M))
    doc = (REPO / "docs/configuration.md").read_text()
    assert interpolated - listed == set(), "add these to .env.example"
    assert {n for n in interpolated if f"`{n}`" not in doc} == set(), "add to configuration.md"
    # The PostgreSQL service takes its sizes from them (docs/operations.md).
    command = " ".join(compose()["services"]["db"]["command"])
    assert "shared_buffers=${POSTGRES_SHARED_BUFFERS" in command
    assert "max_wal_size=${POSTGRES_MAX_WAL_SIZE" in command


def test_image_runs_as_a_user_that_is_not_root_and_leaves_secrets_out():
    dockerfile = (REPO / "Dockerfile").read_text()
    users = re.findall(r"^USER\s+(\S+)", dockerfile, flags=re.M)
    assert users and users[-1] not in ("root", "0")
    assert "collectstatic" in dockerfile
    # Byte-code compiled at build: the user can't write /app, so every process would compile it.
    assert "compileall" in dockerfile
    ignored = (REPO / ".dockerignore").read_text().split()
    assert {".git", ".env", ".venv", "instance"} <= set(ignored)
