"""The people of bench/load_bench.py: finance staff in the admin and PIs in the portal, each
pausing 2 s between pages as a person reading would. Run by load_bench.py (it passes the users
and the period through environment variables); not meant to be run by hand.

FastHttpUser (geventhttpclient), not HttpUser (requests): locust shares the two cores with the
site it measures, and requests costs it several times the CPU per request.
"""

from __future__ import annotations

import json
import os
import random
import re

import requests
from locust import FastHttpUser, constant, task

PERIOD_ID = os.environ["OC_PERIOD_ID"]
ADMIN = os.environ.get("OC_ADMIN_PATH", "/admin/")
STAFF = json.loads(os.environ["OC_STAFF"])  # [[username, password], …]
PIS = json.loads(os.environ["OC_PIS"])  # [[username, password, pi_id, pi_email], …]
TOKEN = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


def log_in(user: FastHttpUser, login_url: str, username: str, password: str) -> None:
    """Log in outside the measured client (a login is a password hash, once a session, not a
    page people wait on while reading), then hand the session cookie to it."""
    with requests.Session() as session:
        page = session.get(user.host + login_url)
        token = TOKEN.search(page.text).group(1)
        done = session.post(
            user.host + login_url,
            {"username": username, "password": password, "csrfmiddlewaretoken": token},
            allow_redirects=False,
        )
        if done.status_code != 302:
            raise RuntimeError(f"{username}: login answered {done.status_code}")
        for cookie in session.cookies:
            user.client.cookiejar.set_cookie(cookie)


def page(user: FastHttpUser, url: str, name: str) -> None:
    """GET a page; a redirect to a login form is a failure, not a fast page."""
    with user.client.get(url, name=name, catch_response=True) as response:
        if response.status_code != 200 or "login" in response.url:
            response.failure(f"{response.status_code} at {response.url}")


class FinanceStaff(FastHttpUser):
    wait_time = constant(2)

    def on_start(self):
        username, password = random.choice(STAFF)
        log_in(self, f"{ADMIN}login/", username, password)
        self.pi_email = random.choice(PIS)[3]

    @task(3)
    def dashboard(self):
        page(self, ADMIN, "admin dashboard")

    @task(3)
    def charges_of_the_month(self):
        page(self, f"{ADMIN}billing/charge/?period__id__exact={PERIOD_ID}", "charges, period")

    @task(2)
    def charges_flagged(self):
        page(
            self,
            f"{ADMIN}billing/charge/?period__id__exact={PERIOD_ID}&review_status__exact=flagged",
            name="charges, period + flagged",
        )

    @task(2)
    def charges_of_a_pi(self):
        page(self, f"{ADMIN}billing/charge/?pi_email={self.pi_email}", "charges, PI")

    @task(1)
    def charges_page_20(self):
        page(self, f"{ADMIN}billing/charge/?p=20", "charges, page 20")

    @task(3)
    def review_queue(self):
        page(self, f"{ADMIN}billing/reviewitem/?period__id__exact={PERIOD_ID}", "review queue")


class PrincipalInvestigator(FastHttpUser):
    wait_time = constant(2)

    def on_start(self):
        username, password, self.pi_id, _ = random.choice(PIS)
        log_in(self, "/accounts/login/", username, password)

    @task(2)
    def home(self):
        page(self, "/portal/", "portal home")

    @task(2)
    def statements(self):
        page(self, f"/portal/pi/{self.pi_id}/", "portal statements")

    @task(3)
    def open_month(self):
        page(self, f"/portal/pi/{self.pi_id}/open/", "portal open month")
