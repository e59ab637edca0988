"""A write the database guards refuse becomes a message on the page, never a server error."""

from django.contrib import messages
from django.db import IntegrityError
from django.http import HttpResponseRedirect

from .dbguards import guard_refusal


class GuardRefusalMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if not isinstance(exception, IntegrityError):
            return None
        message = guard_refusal(exception)
        if message is None:
            return None
        messages.error(request, f"Refused: {message}.")
        # Back to the page the write came from (a GET of the same URL for a form).
        return HttpResponseRedirect(request.get_full_path())
