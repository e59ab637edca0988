"""Fixtures for every app's tests."""

import pytest


@pytest.fixture(autouse=True)
def tasks_in_process(request):
    """Celery tasks run in-process, even when CELERY_BROKER_URL is set (CI's PostgreSQL + Redis
    run), except in the real-worker tests (marked `worker`), which start workers of their own."""
    if request.node.get_closest_marker("worker"):
        yield
        return
    from openchargeback.celery import app

    before = app.conf.task_always_eager
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = before


def pytest_terminal_summary(terminalreporter):
    """The randomized invariant tests' figures (journals/tests/test_chaos.py), shown without -s
    so CI's log says how many operations, rounds, refusals and checks ran."""
    import sys

    chaos = sys.modules.get("journals.tests.chaos")
    if chaos is None or not chaos.STATS:
        return
    terminalreporter.section("chaos: randomized invariant checks")
    for name, stats in chaos.STATS.items():
        terminalreporter.write_line(f"{name}: " + ", ".join(f"{k} {v}" for k, v in stats.items()))
