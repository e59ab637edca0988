"""The institution's billing configuration: a YAML file, validated into plain dataclasses.

Every command takes `-c/--config PATH`; otherwise OPENCHARGEBACK_CONFIG (settings) names the file;
with neither, the built-in defaults apply. Errors name the key that is wrong
(`review.flag_patterns[1]: invalid regular expression …`), never a traceback.
"""

from __future__ import annotations

import copy
import difflib
import logging
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

logger = logging.getLogger(__name__)

# Every key the file may hold, by section ("sources[]": each entry of `sources`). A key not here
# is refused, naming the nearest known one: a misspelt key must never be silently ignored.
KNOWN_KEYS: dict[str, tuple[str, ...]] = {
    "": ("institution", "currency", "tag_mapping", "sources", "review", "journal", "email"),
    "institution": ("name", "contact_email"),
    "sources[]": ("name", "pattern", "display_name", "credit_fund_org", "account_code"),
    "review": ("flag_patterns", "fund_org_patterns"),
    "journal": (
        "fund_org_regex",
        "default_account",
        "account_tag",
        "description_template",
        "description_limit",
    ),
    "email": ("from_address", "from_name", "subject_template"),
}

# The earlier tool's keys that have no place in this file, and where their value goes now.
EARLIER_REFUSED: dict[str, str] = {
    "dev_mode": (
        "set DJANGO_EMAIL_BACKEND in the environment instead (the default writes mail to files; "
        "django.core.mail.backends.smtp.EmailBackend sends it)"
    ),
    "database": (
        "set DATABASE_URL in the environment instead (postgres://user@host:5432/name; unset: "
        "SQLite under OPENCHARGEBACK_HOME)"
    ),
    "smtp": (
        "set EMAIL_HOST, EMAIL_PORT, EMAIL_HOST_USER, EMAIL_HOST_PASSWORD and EMAIL_USE_TLS in "
        "the environment instead"
    ),
    "output": (
        "set OPENCHARGEBACK_HOME in the environment instead: statements, journals and mail "
        "files are kept under it"
    ),
    "logging": "remove it: logs go to the console; set LOG_LEVEL in the environment",
    "web": (
        "remove it: set DJANGO_SECRET_KEY and DJANGO_ALLOWED_HOSTS in the environment, create "
        "users with `openchargeback createsuperuser` and in the admin, and serve with "
        "`openchargeback serve`"
    ),
    "journal.template": (
        "remove it: journal layouts are journal templates in the admin (docs/journals.md)"
    ),
    "journal.account_code_regex": (
        "remove it: a GL account is checked by the journal template's layout, not a pattern"
    ),
}
# The earlier tool's {placeholders} in journal descriptions, as this product's template names.
EARLIER_DESCRIPTION_VARIABLES = {
    "source": "source",
    "period": "period",
    "fund_org": "fund_org",
    "pi_email": "pi_email",
    "project_id": "project",
}


def _nearest(name: str, section: str) -> str:
    """' (did you mean X?)' for the known key nearest to `name`, anywhere in the file (a key in
    its own section wins a near tie); else the section's known keys."""
    best, best_score = "", 0.0
    for sec, keys in KNOWN_KEYS.items():
        for key in keys:
            score = difflib.SequenceMatcher(None, name, key).ratio()
            score += 0.05 if sec == section else 0
            if score > best_score:
                best, best_score = _dotted(sec, key), score
    if best_score >= 0.65:
        return f" (did you mean {best}?)"
    return f" (known keys here: {', '.join(KNOWN_KEYS.get(section, ()))})"


def _dotted(section: str, key: str) -> str:
    return f"{section}.{key}" if section else key


def _unknown_keys(data: dict, problems: list[str]) -> None:
    """Every key of the file that is not known, with the nearest known one."""

    def check(mapping, section: str, where: str) -> None:
        if not isinstance(mapping, dict):
            return  # a wrong type is reported by the parser, naming the key
        for name in mapping:
            if str(name) not in KNOWN_KEYS[section]:
                problems.append(f"{where}{name}: unknown key{_nearest(str(name), section)}")

    check(data, "", "")
    for section in ("institution", "review", "journal", "email"):
        check(data.get(section), section, f"{section}.")
    if isinstance(data.get("sources"), list):
        for i, entry in enumerate(data["sources"]):
            check(entry, "sources[]", f"sources[{i}].")


def _earlier_keys(data: dict, problems: list[str], warnings: list[str]) -> bool:
    """Convert the earlier tool's keys that have a meaning here, in `data`; report the others
    as problems naming their new spelling. True when the file has any of them."""
    earlier = False
    for dotted, advice in EARLIER_REFUSED.items():
        section, _, name = dotted.rpartition(".")
        holder = data.get(section) if section else data
        if isinstance(holder, dict) and name in holder:
            earlier = True
            problems.append(f"{dotted}: the earlier tool's key; {advice}")
            del holder[name]

    imports = data.get("imports")
    if "imports" in data:
        earlier = True
        del data["imports"]
        if not isinstance(imports, dict):
            imports = {}
        for name in imports:
            if name != "known_sources":
                problems.append(f"imports.{name}: unknown key (sources live in `sources`)")
        if "known_sources" in imports:
            if "sources" in data:
                problems.append(
                    "imports.known_sources: the earlier tool's spelling of `sources`, and "
                    "`sources` is given too; keep one (`sources`)"
                )
            else:
                converted = _earlier_sources(imports.get("known_sources"), problems)
                data["sources"] = converted
                names = ", ".join(f"{c['display_name']} → {c['name']}" for c in converted)
                warnings.append(
                    "imports.known_sources: the earlier tool's spelling, read as `sources` "
                    f"({names or 'none'}); its fund_org is credit_fund_org here"
                )

    email = data.get("email")
    if isinstance(email, dict) and isinstance(email.get("subject_template"), str):
        subject = email["subject_template"]
        if "{billing_period}" in subject:
            earlier = True
            email["subject_template"] = subject.replace("{billing_period}", "{period}")
            warnings.append(
                "email.subject_template: {billing_period} is the earlier tool's spelling, read "
                "as {period}"
            )

    journal = data.get("journal")
    if isinstance(journal, dict):
        sides = {
            k: journal.pop(k) for k in ("debit_description", "credit_description") if k in journal
        }
        if sides:
            earlier = True
            if journal.get("description_template"):
                problems.append(
                    f"journal.{'/'.join(sides)}: the earlier tool's spelling of "
                    "journal.description_template, which is given too; keep one"
                )
            else:
                template = _earlier_description(sides, problems)
                if template is not None:
                    journal["description_template"] = template
                    warnings.append(
                        f"journal.{'/'.join(sides)}: the earlier tool's spelling, read as "
                        f"journal.description_template: {template!r}"
                    )
    return earlier


def _earlier_sources(entries: Any, problems: list[str]) -> list[dict]:
    if not isinstance(entries, list):
        problems.append(f"imports.known_sources: expected list, got {entries!r}")
        return []
    converted = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            problems.append(f"imports.known_sources[{i}]: expected mapping, got {entry!r}")
            continue
        for name in entry:
            if name not in ("name", "pattern", "fund_org", "account_code"):
                problems.append(f"imports.known_sources[{i}].{name}: unknown key")
        label = str(entry.get("name") or "").strip()
        slug = re.sub(r"[^a-z0-9_.-]+", "_", label.lower()).strip("_.-")
        if not slug:
            problems.append(f"imports.known_sources[{i}].name: expected a name, got {label!r}")
            continue
        source = {"name": slug, "display_name": label}
        pattern = entry.get("pattern")
        if pattern:
            source["pattern"] = pattern
        if entry.get("fund_org"):
            source["credit_fund_org"] = entry["fund_org"]
        if entry.get("account_code"):
            source["account_code"] = entry["account_code"]
        converted.append(source)
    return converted


def _earlier_description(sides: dict, problems: list[str]) -> str | None:
    """The earlier tool's {placeholder} descriptions as one Django template."""
    texts = {}
    for key, text in sides.items():
        if not isinstance(text, str):
            problems.append(f"journal.{key}: expected text, got {text!r}")
            return None

        def name(match, key=key):
            variable = EARLIER_DESCRIPTION_VARIABLES.get(match.group(1))
            if variable is None:
                problems.append(
                    f"journal.{key}: {{{match.group(1)}}} has no equivalent (known: "
                    f"{', '.join('{' + v + '}' for v in EARLIER_DESCRIPTION_VARIABLES)})"
                )
                return match.group(0)
            return "{{ " + variable + " }}"

        texts[key] = re.sub(r"\{(\w+)\}", name, text).strip()
    debit = texts.get("debit_description", "")
    credit = texts.get("credit_description", "")
    if not debit or not credit or debit == credit:
        return debit or credit
    return "{% if is_debit %}" + debit + "{% else %}" + credit + "{% endif %}"


def _earlier_patterns(review: dict, warnings: list[str]) -> None:
    """The earlier tool matched flag patterns without regard to case, and fund/org patterns at
    the start of the value (a prefix). Here both are exact: say so, and keep the file's meaning
    by writing it out, (?i) and .*, in the patterns that get seeded."""
    flags = review.get("flag_patterns")
    if isinstance(flags, list) and flags:
        review["flag_patterns"] = [
            p if not isinstance(p, str) or p.startswith("(?i)") else f"(?i){p}" for p in flags
        ]
        warnings.append(
            "review.flag_patterns: the earlier tool matched these without regard to case; "
            "here a pattern is case-sensitive unless it says (?i), so they are read as "
            f"{review['flag_patterns']!r}; write them so to silence this warning"
        )
    funds = review.get("fund_org_patterns")
    if isinstance(funds, list) and funds:
        review["fund_org_patterns"] = [
            p if not isinstance(p, str) or p.endswith(".*") else f"(?:{p}).*" for p in funds
        ]
        warnings.append(
            "review.fund_org_patterns: the earlier tool matched these at the start of a "
            "fund/org (a prefix); here a fund/org must match in full, so they are read as "
            f"{review['fund_org_patterns']!r}; write them so to silence this warning"
        )


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
    # What loading said without refusing (the earlier tool's keys converted, meanings changed).
    warnings: tuple[str, ...] = ()

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
    data = copy.deepcopy(data)
    problems: list[str] = []
    warnings: list[str] = []
    earlier = _earlier_keys(data, problems, warnings)
    currency_text = data.get("currency")
    if isinstance(currency_text, str) and currency_text.strip() in ("$", "€", "£", "¥"):
        problems.append(
            f"currency: {currency_text!r} is a symbol (the earlier tool's meaning); give the "
            "ISO 4217 code, e.g. USD"
        )
        del data["currency"]
    _unknown_keys(data, problems)
    if problems:
        raise ConfigError(
            f"{len(problems)} key(s) to change:\n" + "\n".join(f"  - {p}" for p in problems)
        )
    if earlier and isinstance(data.get("review"), dict):
        _earlier_patterns(data["review"], warnings)

    institution = _section(data, "institution", dict)
    currency = _text(data, "currency", "", "USD").upper()
    if not re.fullmatch(r"[A-Z]{3}", currency):
        raise ConfigError(f"currency: expected a three-letter ISO 4217 code, got {currency!r}")

    mapping = dict(DEFAULT_TAG_MAPPING)
    raw_mapping = _section(data, "tag_mapping", dict)
    for name, tag_key in raw_mapping.items():
        if name not in TAG_MAPPING_FIELDS:
            known = ", ".join(TAG_MAPPING_FIELDS)
            near = difflib.get_close_matches(str(name), TAG_MAPPING_FIELDS, n=1, cutoff=0.6)
            hint = f"did you mean tag_mapping.{near[0]}? " if near else ""
            raise ConfigError(f"tag_mapping.{name}: unknown field ({hint}known fields: {known})")
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
        warnings=tuple(warnings),
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
        config = parse_config(data, str(path))
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    for warning in config.warnings:
        logger.warning("%s: %s", path, warning)
    return config
