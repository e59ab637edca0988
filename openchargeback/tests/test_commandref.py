"""docs/commands.md is what the commands' own parsers say: regenerate it when one changes."""

from openchargeback.commandref import DOC, render


def test_command_reference_is_up_to_date():
    assert DOC.read_text() == render(), (
        "docs/commands.md is out of date: run python -m openchargeback.commandref"
    )


def test_command_reference_lists_each_command_subcommand_and_option():
    text = render()
    for heading in (
        "### `openchargeback ingest`",
        "### `openchargeback export-journal`",
        "#### `openchargeback periods close`",
        "#### `openchargeback review reject`",
        "### `openchargeback health`",
    ):
        assert heading in text
    ingest = text.split("### `openchargeback ingest`")[1].split("\n### ")[0]
    assert "| `--append` |" in ingest and "| `-s`, `--source` | `SOURCE` |" in ingest
    reject = text.split("#### `openchargeback review reject`")[1].split("\n#### ")[0]
    assert "Required. Why (required)." in reject
    # Django's shared options are described once, not in every table.
    assert "| `--verbosity`" not in text and "`-v/--verbosity {0,1,2,3}`" in text
