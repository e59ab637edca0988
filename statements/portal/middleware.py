"""Nothing the portal serves is kept by a browser's or a proxy's cache.

A PI's statements, PDFs and charge CSVs are theirs alone: `Cache-Control: private, no-store` on
every response under the portal and its login and password pages, so a shared computer's cache
or an institutional proxy never holds a copy after logout.
"""

from __future__ import annotations

from django.urls import reverse
from django.utils.cache import patch_cache_control


def portal_prefixes() -> tuple[str, ...]:
    """/portal/ and /accounts/ (where the portal's login and password pages live)."""
    login = reverse("portal-login")  # /accounts/login/
    return (reverse("portal:home"), login[: login.rstrip("/").rfind("/") + 1])


class PortalNoStoreMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response
        self._prefixes: tuple[str, ...] | None = None

    def __call__(self, request):
        response = self.get_response(request)
        if self._prefixes is None:
            self._prefixes = portal_prefixes()
        if request.path_info.startswith(self._prefixes):
            # no-store alone forbids keeping a copy; private also keeps shared caches out of
            # it for clients that ignore no-store. Any max-age a view set is dropped.
            response.headers.pop("Cache-Control", None)
            patch_cache_control(response, private=True, no_store=True)
        return response
