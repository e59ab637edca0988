# OpenChargeback: one image for the web (gunicorn), the Celery workers and beat, and commands.
# Configuration comes only from environment variables (.env.example; docs/deployment.md).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    OPENCHARGEBACK_HOME=/data \
    DJANGO_STATIC_ROOT=/app/static \
    GUNICORN_BIND=0.0.0.0:8000

WORKDIR /app
# Dependencies first: a change to the code alone reuses this layer.
COPY requirements.txt ./
RUN pip install -r requirements.txt
COPY . .
RUN pip install --no-deps -e . \
    # The code's byte-code, inside the image: PYTHONDONTWRITEBYTECODE above, and a user that can't
    # write /app, would otherwise make every command and worker compile it at start (0.1 s).
    && python -m compileall -q /app \
    # Hashed, compressed static files, inside the image (no secret is kept: a throwaway key).
    && DJANGO_SECRET_KEY=collectstatic-at-build-only OPENCHARGEBACK_HOME=/tmp/build \
       openchargeback collectstatic --noinput -v0 \
    && rm -rf /tmp/build \
    && useradd --system --uid 10001 --user-group --home-dir /data --no-create-home openchargeback \
    && mkdir -p /data \
    && chown openchargeback:openchargeback /data

# Never root at run time: the instance folder (/data, a volume) is the only place it writes.
USER openchargeback
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4).status != 200)"]
CMD ["gunicorn", "-c", "gunicorn.conf.py"]
