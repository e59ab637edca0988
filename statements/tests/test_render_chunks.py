"""Rendering in chunks: one task draws many statements, and still each statement commits on its
own, is drawn once however often its task runs, and a failure or a crash part-way through a
chunk leaves the statements before it rendered and the rest to a retry (docs/statements.md)."""

from __future__ import annotations

import os
from collections import Counter
from decimal import Decimal

import pytest
from django.core.files.storage import default_storage

from billing.models import PI, BillingPeriod, Project
from statements import tasks
from statements.models import Statement, StatementEmail, StatementRun
from statements.selectors import run_progress
from statements.services import delivery, generation, statement_generate

from .conftest import mailed

pytestmark = pytest.mark.django_db(transaction=True)
N_PIS = 4  # three projects each: 12 statements, 4 emails


@pytest.fixture
def closed_month(make_charges):
    for i in range(N_PIS):
        pi = PI.objects.create(email=f"pi{i}@example.edu", name=f"PI {i}")
        for p in range(3):
            project = Project.objects.create(code=f"p{i}-{p}")
            for r in range(3):
                make_charges(
                    [Decimal("1.0000000001"), Decimal(f"{r}.3333333333")],
                    pi=pi,
                    project=project,
                    fund_org=f"FUND-{i}",
                    service_name=["Compute", "Storage"][r % 2],
                    resource_id=f"r-{r}",
                    list_cost=Decimal("2.50"),
                )
    BillingPeriod.objects.filter(key="2025-01").update(status="closed")


@pytest.fixture
def held(monkeypatch):
    """Generation without its render tasks: returns the chunks it would have enqueued."""
    queued: list[list[int]] = []
    monkeypatch.setattr(
        generation,
        "enqueue",
        lambda statement_ids, email_ids: queued.extend(delivery.render_chunks(statement_ids)),
    )
    return queued


@pytest.fixture
def draws(monkeypatch):
    """Counts how often each statement's PDF is drawn."""
    counts: Counter = Counter()
    draw = delivery.render_pdf

    def counting(data):
        counts[data.number] += 1
        return draw(data)

    monkeypatch.setattr(delivery, "render_pdf", counting)
    return counts


def stored_pdfs() -> list[str]:
    folder = default_storage.path("statements/2025-01")
    return sorted(os.listdir(folder)) if os.path.isdir(folder) else []


def test_chunks_keep_the_order_and_spread_small_batches():
    assert delivery.render_chunks([]) == []
    assert delivery.render_chunks([3, 1, 2]) == [[3], [1], [2]]
    big = delivery.render_chunks(list(range(5000)))
    assert len(big) == 5000 // delivery.RENDER_CHUNK
    assert [pk for chunk in big for pk in chunk] == list(range(5000))
    small = delivery.render_chunks(list(range(240)))
    assert len(small) == delivery.RENDER_MIN_TASKS
    assert max(len(c) for c in small) <= delivery.RENDER_CHUNK


def test_a_generation_renders_by_chunks_in_process(closed_month, config, monkeypatch, draws):
    calls = []
    task = tasks.render_statements_task
    monkeypatch.setattr(task, "delay", lambda ids: (calls.append(list(ids)), task.apply((ids,)))[1])
    result = statement_generate(period_key="2025-01", config=config)

    statements = list(Statement.objects.order_by("pk"))
    assert len(statements) == 3 * N_PIS
    assert calls == delivery.render_chunks([s.pk for s in statements])
    assert len(calls) > 1
    assert {s.status for s in statements} == {"ready"}
    assert set(draws.values()) == {1}
    assert len(stored_pdfs()) == len(statements)
    assert run_progress(StatementRun.objects.get(pk=result.run_id))["done"]


def test_a_chunk_run_twice_renders_each_statement_once(closed_month, config, held, draws):
    statement_generate(period_key="2025-01", config=config)
    ids = [pk for chunk in held for pk in chunk]
    assert Statement.objects.filter(status="rendering").count() == len(ids) == 3 * N_PIS

    first = tasks.render_statements_task.apply((ids,)).get()
    again = tasks.render_statements_task.apply((ids,)).get()

    assert first == {"rendered": len(ids)}
    assert again == {"done already": len(ids)}
    assert set(draws.values()) == {1} and len(draws) == len(ids)
    assert len(stored_pdfs()) == len(ids)
    for s in Statement.objects.all():
        assert s.status == "ready" and s.pdf_path.endswith(f"{s.number}-v1.pdf")


def test_progress_moves_one_statement_at_a_time(closed_month, config, held, monkeypatch):
    result = statement_generate(period_key="2025-01", config=config)
    run = StatementRun.objects.get(pk=result.run_id)
    seen = []
    draw = delivery.render_pdf

    def watching(data):
        seen.append(run_progress(run)["rendered"])  # read while the chunk is being drawn
        return draw(data)

    monkeypatch.setattr(delivery, "render_pdf", watching)
    ids = [pk for chunk in held for pk in chunk]
    delivery.statements_render(ids)
    assert seen == list(range(len(ids)))
    assert run_progress(run) | {"statements_by_status": None} == {
        "statements": len(ids),
        "rendered": len(ids),
        "statements_by_status": None,
        "emails": 0,
        "emails_finished": 0,
        "emails_by_status": {},
        "done": True,
    }


def test_a_store_failure_mid_chunk_leaves_the_others_rendered_and_it_retryable(
    closed_month, config, held, draws, monkeypatch
):
    result = statement_generate(period_key="2025-01", config=config)
    run = StatementRun.objects.get(pk=result.run_id)
    ids = [pk for chunk in held for pk in chunk]
    broken = Statement.objects.get(pk=ids[4])
    save = default_storage.save
    disk = {"full": True}

    def failing(name, content, *args, **kwargs):
        if disk["full"] and name.startswith(f"statements/2025-01/{broken.number}-"):
            raise OSError("disk full")
        return save(name, content, *args, **kwargs)

    monkeypatch.setattr(default_storage, "save", failing)
    outcomes = delivery.statements_render(ids)
    assert outcomes[broken.pk] == "error"
    assert Counter(outcomes.values()) == {"rendered": len(ids) - 1, "error": 1}
    broken.refresh_from_db()
    assert broken.status == "rendering" and not broken.pdf_path
    progress = run_progress(run)
    assert (progress["rendered"], progress["done"]) == (len(ids) - 1, False)

    # In-process the caller hears of it; with a broker the task retries only what is left.
    with pytest.raises(tasks.StatementRenderError):
        tasks.render_statements_task.apply((ids,), throw=True).get()
    retried = {}

    def retry(**kwargs):
        retried.update(kwargs)
        return RuntimeError("retry")

    monkeypatch.setattr(tasks.render_statements_task, "retry", retry)
    tasks.render_statements_task.push_request(is_eager=False, retries=1)
    try:
        with pytest.raises(RuntimeError, match="retry"):
            tasks.render_statements_task.run(ids)
    finally:
        tasks.render_statements_task.pop_request()
    assert retried == {"args": ([broken.pk],), "countdown": 2 * tasks.RENDER_RETRY_DELAY}

    disk["full"] = False  # the disk has room again
    assert tasks.render_statements_task.apply(([broken.pk],)).get() == {"rendered": 1}
    assert run_progress(run)["done"]
    assert draws.pop(broken.number) == 4  # drawn by each of the four attempts, stored once
    assert set(draws.values()) == {1} and len(draws) == len(ids) - 1
    assert len(stored_pdfs()) == len(ids)


def test_a_task_killed_mid_chunk_and_run_again_loses_and_doubles_nothing(
    closed_month, config, held, draws, monkeypatch, private_media
):
    statement_generate(period_key="2025-01", send=True, config=config)
    ids = [pk for chunk in held for pk in chunk]
    draw = delivery.render_pdf
    killed_at = Statement.objects.get(pk=ids[7]).number

    def dying(data):
        if data.number == killed_at:
            raise SystemExit("worker killed")  # not an Exception: nothing in the chunk catches it
        return draw(data)

    monkeypatch.setattr(delivery, "render_pdf", dying)
    with pytest.raises(SystemExit):
        delivery.statements_render(ids)
    statuses = dict(Statement.objects.values_list("pk", "status"))
    assert [statuses[pk] for pk in ids[:7]] == ["ready"] * 7  # each committed on its own
    assert all(statuses[pk] == "rendering" for pk in ids[7:])
    assert not mailed(private_media / "mail")  # died before it looked at the emails

    monkeypatch.setattr(delivery, "render_pdf", draw)
    delivery.statements_render(ids)  # the redelivered task
    delivery.statements_render(ids)  # and once more, for good measure
    assert set(Statement.objects.values_list("status", flat=True)) == {"sent"}
    assert len(stored_pdfs()) == len(ids)
    assert set(draws.values()) == {1} and len(draws) == len(ids)  # the kill came before drawing
    assert set(StatementEmail.objects.values_list("status", flat=True)) == {"sent"}
    messages = mailed(private_media / "mail")
    assert sorted(m["To"] for m in messages) == [f"pi{i}@example.edu" for i in range(N_PIS)]


def test_emails_go_once_when_a_pis_statements_are_in_different_chunks(
    closed_month, config, held, monkeypatch, private_media
):
    monkeypatch.setattr(delivery, "RENDER_CHUNK", 2)  # PIs have 3 statements: split over chunks
    monkeypatch.setattr(delivery, "RENDER_MIN_TASKS", 1)
    result = statement_generate(period_key="2025-01", send=True, config=config)
    assert max(len(c) for c in held) == 2
    assert StatementEmail.objects.filter(status="pending").count() == N_PIS
    for chunk in held:
        tasks.render_statements_task.apply((chunk,)).get()
    for chunk in reversed(held):  # every chunk delivered again
        tasks.render_statements_task.apply((chunk,)).get()

    run = StatementRun.objects.get(pk=result.run_id)
    assert run_progress(run)["done"]
    messages = mailed(private_media / "mail")
    assert sorted(m["To"] for m in messages) == [f"pi{i}@example.edu" for i in range(N_PIS)]
    for m in messages:
        assert len([p for p in m.walk() if p.get_filename()]) == 3
    assert set(Statement.objects.values_list("status", flat=True)) == {"sent"}


def test_resume_renders_what_a_batch_still_waits_for_by_chunks(closed_month, config, held, draws):
    from statements.services import statement_run_resume

    result = statement_generate(period_key="2025-01", config=config)
    run = StatementRun.objects.get(pk=result.run_id)
    ids = [pk for chunk in held for pk in chunk]
    delivery.statements_render(ids[:5])  # a worker got this far, then the broker was lost

    assert statement_run_resume(run=run) == {"rendering": len(ids) - 5, "emails": 0}
    assert run_progress(run)["done"]
    assert set(draws.values()) == {1} and len(draws) == len(ids)
    assert len(stored_pdfs()) == len(ids)
