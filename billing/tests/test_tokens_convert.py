"""Token usage files: the ChatGPT Edu export and the generic CSV, and attribution by map."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from billing.usage import ConversionError, tokens

from .usage_fixtures import EDU_CSV, GENERIC_CSV, GENERIC_MAP_CSV, TOKENS_MAP_JSON, write


def test_edu_export_reads_credits_per_day(tmp_path):
    fmt, uses = tokens.read_uses(write(tmp_path, "edu.csv", EDU_CSV))
    assert fmt == "edu"
    assert [(u.start.day, u.user, u.key, u.quantity, u.unit) for u in uses] == [
        (5, "ada@example.edu", "chat.completion.5.reasoning", Decimal("10"), "credit"),
        (7, "ada@example.edu", "codex", Decimal("217.535"), "credit"),
        (8, "grace@example.edu", "chat.completion.5.reasoning", Decimal("10"), "credit"),
        (11, "ada@example.edu", "chat_tool.imagegen", Decimal("125"), "credit"),
        (12, "ada@example.edu", "codex", Decimal("7.295"), "credit"),
        (20, "ada@example.edu", "chat.completion.5.reasoning", Decimal("100"), "credit"),
    ]
    assert uses[0].end - uses[0].start == datetime(2026, 1, 2) - datetime(2026, 1, 1)
    assert uses[0].start.tzinfo == UTC
    owners = tokens.read_map(write(tmp_path, "projects.json", TOKENS_MAP_JSON))
    assert owners.owner(uses[0]).tags["project_id"] == "engines"
    assert owners.owner(uses[2]) is None  # grace: untagged, flagged on import


def test_generic_file_splits_input_and_output_in_million_tokens(tmp_path):
    fmt, uses = tokens.read_uses(write(tmp_path, "usage.csv", GENERIC_CSV))
    assert fmt == "generic"
    assert [(u.key, u.quantity, u.unit) for u in uses] == [
        ("gpt-4o:input", Decimal("1.2"), "million tokens"),
        ("gpt-4o:output", Decimal("0.3"), "million tokens"),
        ("gpt-4o:input", Decimal("0.4"), "million tokens"),
        ("gpt-4o:output", Decimal("0.05"), "million tokens"),
    ]
    stamped = uses[2]
    assert (stamped.start, (stamped.end - stamped.start).total_seconds()) == (
        datetime(2026, 1, 4, 15, 30, tzinfo=UTC),
        1,
    )
    owners = tokens.read_map(write(tmp_path, "map.csv", GENERIC_MAP_CSV))
    assert [owners.owner(u).tags["project_id"] for u in uses] == ["engines"] * 2 + [
        "difference"
    ] * 2


@pytest.mark.parametrize(
    "text, message",
    [
        ("date,user,model\n2026-01-01,a,m\n", "missing tokens"),
        ("date,user,model,tokens\n2026-01-01,a,m,1.5\n", "line 2: tokens must be a whole"),
        ("date,user,model,tokens\n2026-01-01,a,,5\n", "line 2: no model"),
    ],
)
def test_bad_usage_files_are_refused_naming_the_line(tmp_path, text, message):
    with pytest.raises(ConversionError, match=message):
        tokens.read_uses(write(tmp_path, "bad.csv", text))


def test_a_line_outside_the_month_is_refused(tmp_path):
    _, uses = tokens.read_uses(write(tmp_path, "edu.csv", EDU_CSV))
    with pytest.raises(ConversionError, match="line 2: 2026-01-05 is not in 2026-02"):
        tokens.in_month(uses, "2026-02")
