"""The billing configuration: the example file loads; a wrong value is a ConfigError that names
its key, and on the command line a CommandError (a message, not a traceback)."""

from __future__ import annotations

import pytest
from django.core.management.base import CommandError

from billing.config import ConfigError, load_config, parse_config
from billing.models import Charge


def test_example_configuration_loads(config):
    assert config.currency == "USD"
    assert [s.name for s in config.sources] == ["aws", "azure", "hpc", "storage", "it_storage"]
    assert config.source("hpc").pattern == "hpc|slurm"
    assert config.source("aws").credit_fund_org == "IT-CLOUD-AWS"
    assert config.source("aws").account_code == "54100"
    assert config.source("gcp") is None
    assert config.tag_mapping["reference_1"] == "grant_number"
    assert config.tag_mapping["reference_2"] == "request_id"
    assert config.flag_patterns == ()
    assert [p.pattern for p in config.fund_org_patterns] == ["^[A-Z]{2,6}-[A-Z0-9-]+$"]
    assert config.journal.fund_org_regex.match("ECON-DEPT-2024").group("orgn") == "ECON"


def test_empty_file_gives_the_defaults(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("")

    config = load_config(path)

    assert config.currency == "USD"
    assert config.sources == ()
    assert config.tag_mapping["pi_email"] == "pi_email"


def write(tmp_path, text: str):
    path = tmp_path / "billing.yaml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("sources: [aws\n  - x: {", ["not valid YAML"]),
        ("review:\n  flag_patterns: ['(unclosed']\n", ["review.flag_patterns[0]", "(unclosed"]),
        ("review:\n  flag_patterns: ['ok', '[z-a]']\n", ["review.flag_patterns[1]"]),
        ("review:\n  fund_org_patterns: ['*']\n", ["review.fund_org_patterns[0]"]),
        ("review:\n  flag_patterns: gpu\n", ["review.flag_patterns", "expected list"]),
        ("tag_mapping:\n  owner_email: owner\n", ["tag_mapping.owner_email", "unknown field"]),
        ("tag_mapping:\n  pi_email: ''\n", ["tag_mapping.pi_email"]),
        ("sources: {name: aws}\n", ["sources", "expected list"]),
        ("sources:\n  - {name: AWS Cloud}\n", ["sources[0].name"]),
        ("sources:\n  - {name: aws}\n  - {name: aws}\n", ["sources[1].name", "twice"]),
        ("sources:\n  - {name: aws, pattern: '(('}\n", ["sources[0].pattern"]),
        ("sources:\n  - {name: aws, display_name: [1, 2]}\n", ["sources[0].display_name"]),
        ("currency: dollars\n", ["currency"]),
        ("institution: Example U\n", ["institution", "expected mapping"]),
        ("journal:\n  fund_org_regex: '(?P<orgn'\n", ["journal.fund_org_regex"]),
        ("- just\n- a list\n", ["top level"]),
    ],
)
def test_wrong_value_names_its_key(tmp_path, text, words):
    path = write(tmp_path, text)

    with pytest.raises(ConfigError) as info:
        load_config(path)

    message = str(info.value)
    assert str(path) in message
    for word in words:
        assert word in message


@pytest.mark.parametrize(
    ("text", "key"),
    [("review: []\n", "review"), ("sources: no\n", "sources"), ("tag_mapping: 0\n", "tag_mapping")],
)
def test_falsy_wrong_type_names_its_key(tmp_path, text, key):
    with pytest.raises(ConfigError, match=key):
        load_config(write(tmp_path, text))


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nowhere.yaml")


def test_parse_config_builds_flag_patterns():
    config = parse_config({"review": {"flag_patterns": ["(?i)gpu", "^test-"]}})

    assert [bool(p.search("node-GPU-1")) for p in config.flag_patterns] == [True, False]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("review:\n  flag_patterns: ['(unclosed']\n", "review.flag_patterns[0]"),
        ("tag_mapping:\n  owner_email: owner\n", "tag_mapping.owner_email"),
        ("sources: [aws\n", "not valid YAML"),
    ],
)
def test_bad_configuration_on_the_command_line_is_a_command_error(
    tmp_path, run, write_focus, text, key
):
    path = write(tmp_path, text)

    with pytest.raises(CommandError) as info:
        run("ingest", write_focus([{}]), "-s", "aws", "-c", path)

    assert str(info.value).startswith("configuration: ")
    assert key in str(info.value)
    assert Charge.objects.count() == 0


@pytest.mark.django_db
def test_missing_configuration_file_on_the_command_line(tmp_path, run, write_focus):
    with pytest.raises(CommandError, match="configuration: .*not found"):
        run("ingest", write_focus([{}]), "-s", "aws", "-c", tmp_path / "nowhere.yaml")
