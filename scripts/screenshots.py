"""Screenshots of the admin for the docs: the dashboard (light and dark) and a period's page.
The lists' screenshots come from their browser test (openchargeback/tests/test_admin_lists.py).

    python scripts/screenshots.py http://127.0.0.1:8765 --user admin --password SECRET \
        [--period 2026-10] [--out docs/screenshots] [--chromium /usr/bin/chromium] [--width 1280]

Logs in through the admin's login form and saves PNGs with headless Chromium through
Playwright for Python (requirements-dev.txt). It never downloads a browser: it launches the
system's Chromium (Debian: `apt-get install chromium`). The password may also come from
ADMIN_PASSWORD. The lists' screenshots come from their browser test
(openchargeback/tests/test_admin_lists.py, with OPENCHARGEBACK_SCREENSHOTS set).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# (file, paths to try in order, colour scheme). {period_page} is the chosen period's page (found
# through the period list).
PAGES = (
    ("dashboard.png", ("/admin/{period_query}",), "light"),
    ("dashboard-dark.png", ("/admin/{period_query}",), "dark"),
    ("period.png", ("{period_page}",), "light"),
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", help="the running server, e.g. http://127.0.0.1:8765")
    parser.add_argument("--user", default="admin")
    parser.add_argument("--password", default=os.environ.get("ADMIN_PASSWORD", ""))
    parser.add_argument("--period", default="", help="YYYY-MM for the dashboard (default: its own)")
    parser.add_argument("--out", default=str(ROOT / "docs" / "screenshots"))
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--width", type=int, default=1280)
    args = parser.parse_args(argv)
    if not args.password:
        parser.error("give --password or set ADMIN_PASSWORD")
    if not Path(args.chromium).exists():
        parser.error(f"{args.chromium} not found (Debian: apt-get install chromium)")

    from playwright.sync_api import sync_playwright

    base = args.url.rstrip("/")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    period_query = f"?period={args.period}" if args.period else ""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=args.chromium, args=["--no-sandbox", "--disable-gpu"]
        )
        page = browser.new_page(
            viewport={"width": args.width, "height": 900}, device_scale_factor=1
        )
        page.goto(f"{base}/admin/login/")
        page.fill("input[name=username]", args.user)
        page.fill("input[name=password]", args.password)
        page.click("input[type=submit]")
        page.wait_for_load_state("networkidle")
        if "/login/" in page.url:
            print("login failed: check --user and --password", file=sys.stderr)
            return 1
        period_page = _period_page(page, base, args.period)
        for name, paths, scheme in PAGES:
            page.emulate_media(color_scheme=scheme)
            for path in paths:
                url = path.format(period_query=period_query, period_page=period_page)
                response = page.goto(base + url)
                page.wait_for_load_state("networkidle")
                if response is not None and response.status == 200:
                    break
            else:
                status = response.status if response else "no response"
                print(f"{paths[-1]}: HTTP {status}", file=sys.stderr)
                return 1
            target = out / name
            page.screenshot(path=str(target), full_page=True)
            print(f"saved {target}")
        browser.close()
    return 0


def _period_page(page, base: str, key: str) -> str:
    """The admin path of the period's page: `key`, else the newest period in the list."""
    page.goto(f"{base}/admin/billing/billingperiod/" + (f"?q={key}" if key else ""))
    link = page.locator("#result_list tbody a[href*='/change/']").first
    href = link.get_attribute("href") or "/admin/billing/billingperiod/"
    return href.removeprefix(base)


if __name__ == "__main__":
    sys.exit(main())
