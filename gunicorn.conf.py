"""gunicorn's settings, read from environment variables (docs/configuration.md).

    gunicorn -c gunicorn.conf.py

serves the site (openchargeback.wsgi) on GUNICORN_BIND. Run `openchargeback migrate` and
`openchargeback collectstatic --noinput` first (the container image collects at build time).
"""

import multiprocessing
import os
from pathlib import Path

wsgi_app = "openchargeback.wsgi:application"
bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000").split(",")
# Pages wait on the database, not the CPU: two processes a core, plus one.
workers = int(os.environ.get("GUNICORN_WORKERS", str(2 * multiprocessing.cpu_count() + 1)))
threads = int(os.environ.get("GUNICORN_THREADS", "1"))
# A big admin upload is checked by a task above OPENCHARGEBACK_UPLOAD_ASYNC_BYTES; a request that
# still takes longer than this is stuck, and its worker is replaced.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "120"))
graceful_timeout = 30
keepalive = 5
# Replace each worker after this many requests (with jitter) so memory a request grew is returned.
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "1000"))
max_requests_jitter = max_requests // 10
# The proxy in front (nginx) may say the client's scheme and address.
forwarded_allow_ips = os.environ.get("GUNICORN_FORWARDED_ALLOW_IPS", "127.0.0.1,::1")
# Access log: "-" for stderr, a path for a file, unset for none (the application logs its own).
accesslog = os.environ.get("GUNICORN_ACCESSLOG") or None
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "WARNING").lower()
# Worker heartbeats in memory, not on a container's overlay disk (a slow disk stalls them).
if Path("/dev/shm").is_dir():
    worker_tmp_dir = "/dev/shm"
