"""Absolute links in mail: every link a message carries starts with OPENCHARGEBACK_BASE_URL.

Never the request's Host header: a client chooses that header, and a link mailed to a PI must
name the site the institution configured, whichever address the admin who clicked happened to
use. Invitations, delegate grants, password resets and statement emails build their links here.
"""

from django.conf import settings
from django.urls import reverse

DEFAULT_BASE_URL = "http://127.0.0.1:8000"


def base_url() -> str:
    """The site's address without a trailing slash: `https://billing.example.edu`."""
    return (getattr(settings, "OPENCHARGEBACK_BASE_URL", "") or DEFAULT_BASE_URL).rstrip("/")


def absolute(path: str) -> str:
    """`path` (from `reverse`, starting with /) under the site's address."""
    return base_url() + path


def absolute_reverse(viewname: str, **kwargs) -> str:
    return absolute(reverse(viewname, **kwargs))
