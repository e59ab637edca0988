"""`flush`, with the SQLite database guards suspended for its DELETEs (see accounts/dbguards.py).

Django's flush (and so every TransactionTestCase's teardown) empties tables with DELETE FROM on
SQLite, where our triggers fire; on PostgreSQL it uses TRUNCATE, which they don't guard.
"""

from django.core.management.commands.flush import Command as FlushCommand

from accounts.dbguards import guards_suspended


class Command(FlushCommand):
    def handle(self, **options):
        with guards_suspended():
            return super().handle(**options)
