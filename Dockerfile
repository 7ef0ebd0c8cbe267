# syntax=docker/dockerfile:1
# One image for every cronwork role; the command picks the role:
#   docker run IMAGE api | worker | beat | migrate
# Build from the repository root: docker build -t cronwork:local .
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- builder: compilers live here only, in case a dependency has no wheel for the target platform ---------
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Dependencies first, from the hashed lock alone (`make lock` compiles it from pyproject.toml's pins), so that
# a code change does not reinstall them and every file pip installs is checked against its hash.
COPY requirements.lock ./
RUN pip install --require-hashes -r requirements.lock
# Then the project itself, built as a wheel and installed (not editable) with --no-deps: the lock has them.
COPY . .
RUN pip wheel --no-deps --wheel-dir /tmp/wheels . \
 && pip install --no-deps /tmp/wheels/*.whl

# --- runtime: the slim base, the venv, tini, a non-root user; no compilers ---------------------------------
FROM ${PYTHON_IMAGE} AS runtime
# tini as PID 1 forwards SIGTERM to cronwork (whose worker drains running tasks) and reaps zombies.
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 cronwork \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin cronwork
COPY --from=builder /opt/venv /opt/venv

# The image's health check follows the role PID 1 runs (`tini -- cronwork ROLE`): the API answers /healthz,
# a worker or beat passes `cronwork probe ROLE`, and one-shot commands (migrate) have nothing to check.
COPY --chmod=0755 <<'EOF' /usr/local/bin/cronwork-healthcheck
#!/bin/sh
set -euf
set -- $(tr '\0' ' ' < /proc/1/cmdline)
while [ "$#" -gt 0 ] && [ "${1##*/}" != cronwork ]; do shift; done
case "${2:-}" in
  api) exec python -c 'import os, urllib.request
urllib.request.urlopen("http://127.0.0.1:%s/healthz" % os.environ.get("PORT", "8000"), timeout=4)' ;;
  worker | beat) exec cronwork probe "$2" ;;
  *) exit 0 ;;
esac
EOF

# HOME is /tmp too: anything that writes under ~ (gunicorn's control socket, caches) finds it writable. Logs are
# JSON lines, for the platform's log pipeline.
ENV PATH=/opt/venv/bin:$PATH \
    HOME=/tmp \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PORT=8000 \
    HEARTBEAT_DIR=/tmp \
    LOG_FORMAT=json
WORKDIR /app
# Numeric, so that Kubernetes' runAsNonRoot can verify it. The processes write only to /tmp, so the container
# runs with a read-only root filesystem (docker run --read-only --tmpfs /tmp, or the Helm chart's emptyDir).
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 CMD ["cronwork-healthcheck"]
ENTRYPOINT ["/usr/bin/tini", "--", "cronwork"]
CMD ["api"]
