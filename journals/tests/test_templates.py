"""Journal templates as data: the built-ins are installed and valid; a template that cannot be
used is refused with the field and the reason; the configuration's journal keys."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command

from billing.config import ConfigError
from journals.models import JournalTemplate
from journals.render import check_template, compile_cell

from .conftest import make_config

BUILT_IN = {
    "detail": "detail",
    "summary": "summary",
    "gl": "gl",
    "banner-gl": "gl",
    "workday-gl": "gl",
    "peoplesoft-gl": "gl",
}


@pytest.mark.django_db
def test_built_in_templates_are_installed_by_the_migration_and_valid():
    templates = {t.name: t for t in JournalTemplate.objects.all()}
    assert {name: t.kind for name, t in templates.items()} == BUILT_IN
    for template in templates.values():
        check_template(template)  # raises if not
        assert len(template.header_cells) == len(template.row_cells)


@pytest.mark.django_db
def test_fixture_reloads_by_name_without_duplicates():
    JournalTemplate.objects.filter(name="gl").update(row_layout="{{ period }}")
    call_command("loaddata", "journal_templates", verbosity=0)
    assert JournalTemplate.objects.count() == len(BUILT_IN)
    assert "{{ debit_amount }}" in JournalTemplate.objects.get(name="gl").row_layout


def make(**fields) -> JournalTemplate:
    return JournalTemplate(**{"name": "t", "kind": "gl", "row_layout": "{{ amount }}", **fields})


@pytest.mark.parametrize(
    ("fields", "field", "words"),
    [
        ({"row_layout": "{{ fund_orgg }}"}, "row_layout", "unknown variable fund_orgg"),
        ({"row_layout": "{% if %}"}, "row_layout", "column 1: Unexpected end"),
        ({"row_layout": "{{ amount }}\n{% bogus %}"}, "row_layout", "column 2"),
        ({"row_layout": ""}, "row_layout", "at least one column"),
        ({"header_layout": "a\nb"}, "header_layout", "2 column titles for 1 row columns"),
        ({"header_layout": "{{ amount }}"}, "header_layout", "unknown variable amount"),
        ({"kind": "summary", "row_layout": "{{ side }}"}, "row_layout", "unknown variable side"),
        ({"date_format": "YYYY-MM-DD"}, "date_format", "strftime"),
        ({"description_template": "{{ description }}"}, "description_template", "unknown"),
        ({"file_name": "{{ line_number }}.csv"}, "file_name", "unknown variable line_number"),
        ({"kind": "detail", "split_by_project": True}, "split_by_project", "only general"),
    ],
)
def test_unusable_templates_are_refused_with_the_field(fields, field, words):
    with pytest.raises(ValidationError) as info:
        make(**fields).clean()
    messages = " ".join(info.value.message_dict[field])
    assert words in messages


def test_loop_and_if_variables_are_understood():
    make(
        row_layout="{% if is_debit %}{{ amount }}{% else %}-{{ amount }}{% endif %}\n"
        "{% for k in segment.items %}{{ k }}{% endfor %}\n"
        '{{ description|default:"x"|truncatechars:5 }}'
    ).clean()


@pytest.mark.parametrize(
    ("text", "context", "expected"),
    [
        ("plain", {}, "plain"),
        ("{{ a }}", {"a": "x&y"}, "x&y"),
        ("{{ seg.fund }}-{{ a }}!", {"a": "1", "seg": {"fund": "F"}}, "F-1!"),
        ("{{ missing }}|{{ a.b.c }}", {"a": "x"}, "|"),
        ("{{ a|upper }}<{{ b }}>", {"a": "r&d", "b": "<i>"}, "R&D<<i>>"),
        ("{% if a %}yes{% endif %}", {"a": True}, "yes"),
        ("{{ n }}", {"n": 1234567}, "1234567"),
        ("{{ True }}/{{ None }}", {}, "True/None"),
    ],
)
def test_cells_render_without_html_escaping(text, context, expected):
    assert compile_cell(text)(context) == expected


def test_journal_configuration_keys():
    config = make_config(
        "journal:\n  account_tag: GL_Account\n  description_template: '{{ source }}'\n"
        "  description_limit: 30\n"
    )
    assert config.journal.account_tag == "GL_Account"
    assert config.journal.description_template == "{{ source }}"
    assert config.journal.description_limit == 30
    defaults = make_config("")
    assert defaults.journal.account_tag == "account_code"
    assert defaults.journal.description_limit == 0


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("journal:\n  description_limit: -1\n", "journal.description_limit"),
        ("journal:\n  description_limit: ten\n", "journal.description_limit"),
        ("journal:\n  description_template: '{% if %}'\n", "journal.description_template"),
        ("journal:\n  account_tag: ''\n", "journal.account_tag"),
    ],
)
def test_wrong_journal_configuration_names_its_key(text, words):
    with pytest.raises(ConfigError, match=words):
        make_config(text)
