"""The institution's billing configuration: a YAML file, validated into plain dataclasses.

Every command takes `-c/--config PATH`; otherwise OPENCHARGEBACK_CONFIG (settings) names the file;
with neither, the built-in defaults apply. Errors name the key that is wrong
(`review.flag_patterns[1]: invalid regular expression …`), never a traceback.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from django.conf import settings

# Internal attribution fields, in the order statements and journals use them.
ATTRIBUTION_FIELDS = (
    "pi_email",
    "project_id",
    "fund_org",
    "cost_center",
    "reference_1",
    "reference_2",
)
# What a tag may also say without being stored on the charge: the PI's display name, which fills
# a PI whose name is still empty (docs/configuration.md, "PI names").
TAG_MAPPING_FIELDS = (*ATTRIBUTION_FIELDS, "pi_name")
DEFAULT_TAG_MAPPING = {name: name for name in TAG_MAPPING_FIELDS}


class ConfigError(Exception):
    """The configuration is missing, unreadable, or has a wrong value (the message says where)."""


@dataclass(frozen=True)
class SourceConfig:
    name: str
    pattern: str = ""  # regex searched in an uploaded file's name to guess its source
    display_name: str = ""
    credit_fund_org: str = ""
    account_code: str = ""


@dataclass(frozen=True)
class JournalConfig:
    # Named groups split a fund/org into GL segments; a fund/org must match it in full.
    fund_org_regex: re.Pattern = re.compile(r"^(?P<orgn>[^-]+)-(?P<fund>.+)$")
    # GL account when neither the charge's tag nor its source gives one.
    default_account: str = ""
    # Tag key whose value on a charge is its GL account (matched like tag_mapping keys).
    account_tag: str = "account_code"
    # Description of journal lines when the journal template gives none (Django template text).
    description_template: str = ""
    # Characters a line's description is cut to when the journal template gives no limit; 0: none.
    description_limit: int = 0


@dataclass(frozen=True)
class EmailConfig:
    from_address: str = "billing@example.edu"
    from_name: str = "Research Computing Billing"
    subject_template: str = "Research computing statement for {period}"


@dataclass(frozen=True)
class BillingConfig:
    institution_name: str = "Research Computing"
    contact_email: str = ""
    currency: str = "USD"
    tag_mapping: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_TAG_MAPPING))
    sources: tuple[SourceConfig, ...] = ()
    flag_patterns: tuple[re.Pattern, ...] = ()
    fund_org_patterns: tuple[re.Pattern, ...] = ()
    journal: JournalConfig = field(default_factory=JournalConfig)
    email: EmailConfig = field(default_factory=EmailConfig)
    path: str = ""

    def source(self, name: str) -> SourceConfig | None:
        for source in self.sources:
            if source.name == name:
                return source
        return None


def _expect(value: Any, kind: type | tuple[type, ...], key: str) -> Any:
    if not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        names = names.replace("dict", "mapping").replace("str", "text").replace("list", "list")
        raise ConfigError(f"{key}: expected {names}, got {value!r}")
    return value


def _section(data: dict, name: str, kind: type, key: str | None = None):
    """A sub-section: absent or null means empty; any other wrong type is an error."""
    value = data.get(name)
    if value is None:
        return kind()
    return _expect(value, kind, key or name)


def _text(section: dict, name: str, key: str, default: str = "") -> str:
    value = section.get(name, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ConfigError(f"{key}.{name}: expected text, got {value!r}")
    return str(value).strip()


def _count(section: dict, name: str, key: str, default: int = 0) -> int:
    value = section.get(name, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{key}.{name}: expected a whole number, 0 or more, got {value!r}")
    return value


def _template(section: dict, name: str, key: str) -> str:
    """Django template text (journal descriptions), checked to compile."""
    text = section.get(name, "")
    if text is None:
        return ""
    if not isinstance(text, str):
        raise ConfigError(f"{key}.{name}: expected template text, got {text!r}")
    from django.template import Engine, TemplateSyntaxError

    try:
        Engine(autoescape=False).from_string(text)
    except TemplateSyntaxError as exc:
        raise ConfigError(f"{key}.{name}: invalid template {text!r}: {exc}") from None
    return text.strip()


def _regex(value: Any, key: str) -> re.Pattern:
    _expect(value, str, key)
    try:
        return re.compile(value)
    except re.error as exc:
        raise ConfigError(f"{key}: invalid regular expression {value!r}: {exc}") from None


def _regex_list(section: dict, name: str, key: str) -> tuple[re.Pattern, ...]:
    values = _section(section, name, list, f"{key}.{name}")
    return tuple(_regex(v, f"{key}.{name}[{i}]") for i, v in enumerate(values))


def parse_config(data: Any, path: str = "") -> BillingConfig:
    """Validate a parsed YAML document into a BillingConfig."""
    if data is None:
        data = {}
    _expect(data, dict, "top level")

    institution = _section(data, "institution", dict)
    currency = _text(data, "currency", "", "USD").upper()
    if not re.fullmatch(r"[A-Z]{3}", currency):
        raise ConfigError(f"currency: expected a three-letter ISO 4217 code, got {currency!r}")

    mapping = dict(DEFAULT_TAG_MAPPING)
    raw_mapping = _section(data, "tag_mapping", dict)
    for name, tag_key in raw_mapping.items():
        if name not in TAG_MAPPING_FIELDS:
            known = ", ".join(TAG_MAPPING_FIELDS)
            raise ConfigError(f"tag_mapping.{name}: unknown field (known fields: {known})")
        if not isinstance(tag_key, str) or not tag_key.strip():
            raise ConfigError(f"tag_mapping.{name}: expected a tag key, got {tag_key!r}")
        mapping[name] = tag_key.strip()

    sources = []
    seen = set()
    for i, raw in enumerate(_section(data, "sources", list)):
        key = f"sources[{i}]"
        _expect(raw, dict, key)
        name = _text(raw, "name", key)
        if not re.fullmatch(r"[a-z0-9][a-z0-9_.-]*", name):
            raise ConfigError(
                f"{key}.name: expected a short lowercase name (letters, digits, - _ .), "
                f"got {name!r}"
            )
        if name in seen:
            raise ConfigError(f"{key}.name: source {name!r} is listed twice")
        seen.add(name)
        pattern = _text(raw, "pattern", key, name)
        _regex(pattern, f"{key}.pattern")
        sources.append(
            SourceConfig(
                name=name,
                pattern=pattern,
                display_name=_text(raw, "display_name", key, name),
                credit_fund_org=_text(raw, "credit_fund_org", key),
                account_code=_text(raw, "account_code", key),
            )
        )

    review = _section(data, "review", dict)
    journal = _section(data, "journal", dict)
    email = _section(data, "email", dict)
    journal_config = JournalConfig(
        fund_org_regex=_regex(
            journal.get("fund_org_regex", JournalConfig.fund_org_regex.pattern),
            "journal.fund_org_regex",
        ),
        default_account=_text(journal, "default_account", "journal"),
        account_tag=_text(journal, "account_tag", "journal", JournalConfig.account_tag),
        description_template=_template(journal, "description_template", "journal"),
        description_limit=_count(journal, "description_limit", "journal"),
    )
    if not journal_config.account_tag:
        raise ConfigError("journal.account_tag: expected a tag key, got an empty value")
    defaults = EmailConfig()
    return BillingConfig(
        institution_name=_text(institution, "name", "institution", BillingConfig.institution_name),
        contact_email=_text(institution, "contact_email", "institution"),
        currency=currency,
        tag_mapping=mapping,
        sources=tuple(sources),
        flag_patterns=_regex_list(review, "flag_patterns", "review"),
        fund_org_patterns=_regex_list(review, "fund_org_patterns", "review"),
        journal=journal_config,
        email=EmailConfig(
            from_address=_text(email, "from_address", "email", defaults.from_address),
            from_name=_text(email, "from_name", "email", defaults.from_name),
            subject_template=_text(email, "subject_template", "email", defaults.subject_template),
        ),
        path=path,
    )


def load_config(path: str | Path | None = None) -> BillingConfig:
    """Read and validate the configuration at `path` (or the configured default)."""
    path = path or settings.OPENCHARGEBACK_CONFIG
    if not path:
        return BillingConfig()
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: configuration file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read configuration file: {exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    try:
        return parse_config(data, str(path))
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
