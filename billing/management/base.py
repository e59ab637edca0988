"""Shared parts of the product's management commands: -c/--config, --user, error handling."""

from __future__ import annotations

import argparse
import json

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, OutputWrapper

from billing.config import BillingConfig, ConfigError, load_config
from billing.models import PERIOD_RE
from openchargeback.migrated import require_migrated


def clip(text: str, width: int) -> str:
    """Text for a fixed-width column: cut to `width` characters, the cut shown with "…"."""
    return text if len(text) <= width else text[: width - 1] + "…"


def period_key(value: str) -> str:
    """argparse type of every YYYY-MM argument: a malformed month is refused by its format,
    before any command looks for it."""
    if not PERIOD_RE.match(value or ""):
        raise argparse.ArgumentTypeError(f"must be YYYY-MM, got {value!r}")
    return value


class BillingCommand(BaseCommand):
    """A command that reads the billing configuration and records who acted."""

    def add_arguments(self, parser):
        self.add_common_arguments(parser)

    @staticmethod
    def add_common_arguments(parser, default=None):
        parser.add_argument(
            "-c",
            "--config",
            metavar="PATH",
            default=default,
            help="Billing configuration (YAML). Default: $OPENCHARGEBACK_CONFIG, else defaults.",
        )
        parser.add_argument(
            "--user",
            metavar="USERNAME",
            default=default,
            help="Record this user as the one acting (default: the operating-system account).",
        )

    def add_subcommand(self, subparsers, name: str, **kwargs):
        """A subcommand that also takes -c and --user after its name."""
        parser = subparsers.add_parser(name, **kwargs)
        # SUPPRESS: given only before the subcommand, the top-level value stands.
        self.add_common_arguments(parser, default=argparse.SUPPRESS)
        return parser

    def load_config(self, options) -> BillingConfig:
        """The billing configuration, read and validated once per run (execute reads it)."""
        if self._config is not None:
            return self._config
        try:
            config = load_config(options.get("config"))
        except ConfigError as exc:
            raise CommandError(f"configuration: {exc}") from None
        for warning in config.warnings:
            self.stderr.write(f"configuration: warning: {warning}")
        self._config = config
        return config

    _config: BillingConfig | None = None

    def execute(self, *args, **options):
        require_migrated()
        # Every command that takes -c refuses a broken configuration the same way, before it
        # acts, whether or not this action reads it: one that lists or shows must not take a
        # file the next import will refuse.
        self._config = None
        if options.get("stderr"):  # where its warnings go (BaseCommand.execute sets it later)
            self.stderr = OutputWrapper(options["stderr"])
        self.load_config(options)
        return super().execute(*args, **options)

    def acting_user(self, options):
        username = options.get("user")
        if not username:
            return None
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"--user: no user named {username!r}")
        return user

    def print_json(self, data) -> None:
        self.stdout.write(json.dumps(data, indent=2, sort_keys=False))
