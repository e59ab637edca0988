# Django's usual `from .celery import app as celery_app` is not here: it put Celery and kombu
# (0.15 s) into the start-up of every command and web process, most of which never queue a task.
# The tasks modules (billing/tasks.py, statements/tasks.py, journals/tasks.py) load the app
# instead, so @shared_task binds to it before any task is queued or run, and
# `celery -A openchargeback` finds it in openchargeback/celery.py.


def __getattr__(name):
    # `openchargeback.celery_app` still names the app, loaded on first use.
    if name == "celery_app":
        from .celery import app

        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
