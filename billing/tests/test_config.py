"""The billing configuration: the example file loads; a wrong value is a ConfigError that names
its key, and on the command line a CommandError (a message, not a traceback)."""

from __future__ import annotations

import pytest
from django.core.management.base import CommandError

from billing.config import ConfigError, load_config, parse_config
from billing.models import BillingPeriod, Charge


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


FIXTURES = __import__("pathlib").Path(__file__).parent / "fixtures"
EARLIER = FIXTURES / "earlier-tool-config.yaml"
# The earlier tool's keys that have no place in the file here: each is named with its new home.
EARLIER_REFUSED = {
    "dev_mode": "DJANGO_EMAIL_BACKEND",
    "currency": "ISO 4217",
    "database": "DATABASE_URL",
    "smtp": "EMAIL_HOST",
    "output": "OPENCHARGEBACK_HOME",
    "logging": "LOG_LEVEL",
    "web": "DJANGO_SECRET_KEY",
    "journal.template": "journal templates in the admin",
    "journal.account_code_regex": "remove it",
}


def test_an_earlier_tool_file_is_refused_naming_each_key_to_change():
    with pytest.raises(ConfigError) as info:
        load_config(EARLIER)

    lines = str(info.value).splitlines()
    assert f"{len(EARLIER_REFUSED)} key(s) to change:" in lines[0]
    for key, advice in EARLIER_REFUSED.items():
        [line] = [line for line in lines if line.startswith(f"  - {key}:")]
        assert advice in line, line


def earlier_without_refused_keys(tmp_path):
    import yaml

    data = yaml.safe_load(EARLIER.read_text(encoding="utf-8"))
    for key in EARLIER_REFUSED:
        section, _, name = key.rpartition(".")
        holder = data[section] if section else data
        del holder[name]
    data["currency"] = "USD"
    return write(tmp_path, yaml.safe_dump(data, sort_keys=False))


def test_an_earlier_tool_file_otherwise_loads_with_every_value_honoured(tmp_path):
    config = load_config(earlier_without_refused_keys(tmp_path))

    assert [(s.name, s.display_name, s.pattern) for s in config.sources] == [
        ("aws", "AWS", "aws"),
        ("on-prem_cluster", "On-Prem Cluster", "cluster|slurm"),
    ]
    assert config.source("aws").credit_fund_org == "IT-AWS"
    assert config.source("aws").account_code == "61000"
    assert config.source("on-prem_cluster").credit_fund_org == "RC-HPC"
    assert config.email.subject_template == "Cloud charges for {period}"
    assert config.email.from_name == "Cloud Billing Office"
    assert config.tag_mapping["pi_email"] == "owner_email"
    assert config.tag_mapping["reference_1"] == "award"
    assert config.journal.default_account == "60000"
    assert config.journal.description_template == (
        "{% if is_debit %}{{ source }} {{ period }} charges for {{ project }}"
        "{% else %}{{ source }} {{ period }} charges{% endif %}"
    )
    # Its flag patterns matched regardless of case and its fund/org patterns as prefixes:
    # read so, and said so.
    assert [bool(p.search("node-GPU-2")) for p in config.flag_patterns] == [False, True]
    assert [bool(p.search("SANDBOX-1")) for p in config.flag_patterns] == [True, False]
    [fund] = config.fund_org_patterns
    assert fund.fullmatch("ENG-2024-77") and not fund.fullmatch("ENGR-1")
    said = "\n".join(config.warnings)
    for key in (
        "imports.known_sources",
        "email.subject_template",
        "journal.debit_description/credit_description",
        "review.flag_patterns: the earlier tool matched these without regard to case",
        "review.fund_org_patterns: the earlier tool matched these at the start",
    ):
        assert key in said


def test_a_file_in_todays_shape_keeps_exact_patterns_and_says_nothing(tmp_path):
    config = load_config(
        write(tmp_path, "review:\n  flag_patterns: [gpu]\n  fund_org_patterns: ['^[A-Z]{3}-']\n")
    )
    assert not config.flag_patterns[0].search("GPU")
    assert not config.fund_org_patterns[0].fullmatch("ENG-2024")
    assert config.warnings == ()


@pytest.mark.parametrize(
    ("text", "key", "nearest"),
    [
        ("reveiw:\n  flag_patterns: []\n", "reveiw", "did you mean review?"),
        ("journal:\n  fund_org_regx: x\n", "journal.fund_org_regx", "journal.fund_org_regex"),
        ("review:\n  fund_org_regx: x\n", "review.fund_org_regx", "journal.fund_org_regex"),
        ("email:\n  subject: x\n", "email.subject", "email.subject_template"),
        ("sources:\n  - {name: aws, fundorg: X}\n", "sources[0].fundorg", "credit_fund_org"),
        ("institution:\n  colour: red\n", "institution.colour", "known keys here: name"),
        ("tag_mapping:\n  pi_emial: x\n", "tag_mapping.pi_emial", "tag_mapping.pi_email"),
    ],
)
def test_an_unknown_key_is_refused_naming_the_nearest_known_one(tmp_path, text, key, nearest):
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    message = str(info.value)
    assert f"{key}: unknown" in message
    assert nearest in message


def test_both_spellings_of_sources_are_refused(tmp_path):
    text = "sources: [{name: aws}]\nimports:\n  known_sources: [{name: AWS}]\n"
    with pytest.raises(ConfigError, match="imports.known_sources: .*keep one"):
        load_config(write(tmp_path, text))


@pytest.mark.django_db
def test_the_command_line_prints_what_loading_converted(tmp_path, write_focus):
    import io

    from django.core.management import call_command

    err = io.StringIO()
    call_command(
        "ingest",
        write_focus([{}]),
        "-s",
        "aws",
        "-c",
        earlier_without_refused_keys(tmp_path),
        "--dry-run",
        stdout=io.StringIO(),
        stderr=err,
    )
    assert "configuration: warning: imports.known_sources" in err.getvalue()


@pytest.mark.django_db
@pytest.mark.parametrize(
    "command",
    [
        ["periods", "list"],
        ["periods", "show", "2026-01"],
        ["periods", "close", "2026-01"],
        ["show", "ada@example.edu", "-p", "2026-01"],
        ["rates", "list"],
        ["accounts", "list"],
        ["review", "list"],
        ["sources", "list"],
        ["convert", "slurm", "nowhere.txt", "-p", "2026-01", "-s", "hpc"],
    ],
    ids=lambda c: " ".join(c[:2]),
)
def test_every_command_refuses_a_broken_configuration_before_it_acts(tmp_path, run, command):
    path = write(tmp_path, "review:\n  flag_patterns: ['(unclosed']\n")
    with pytest.raises(CommandError) as info:
        run(*command, "-c", path)
    assert str(info.value).startswith("configuration: ")
    assert "review.flag_patterns[0]" in str(info.value)
    assert not BillingPeriod.objects.exists()
