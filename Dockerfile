# syntax=docker/dockerfile:1
# One image for the four services: `goalwatch serve ingestion|goals|evaluator|notifier`
# (docs/kubernetes.md). Build: docker build -t goalwatch:0.1.0 .
#
# Two stages: durable-rules ships only as source and needs a C compiler to build its wheel;
# the runtime stage copies the finished virtual environment and carries no compiler.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build

# gcc, g++ and make for durable-rules' C engine (and any other dependency without a wheel).
RUN apt-get update \
    && apt-get install --yes --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN python -m venv /opt/goalwatch

WORKDIR /src
COPY pyproject.toml README.md ./
COPY goalwatch ./goalwatch
COPY services ./services
# A regular (not editable) install: the runtime image has no source tree to point back to.
# Bytecode is compiled now, since the root filesystem is read-only at run time.
RUN /opt/goalwatch/bin/pip install --no-cache-dir . \
    && /opt/goalwatch/bin/python -m compileall -q /opt/goalwatch/lib


FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="goalwatch" \
      org.opencontainers.image.description="Alerting backbone for performance management: ingestion, goals, evaluator and notifier services" \
      org.opencontainers.image.licenses="Apache-2.0"

# tini as PID 1: it forwards SIGTERM to the service (which then drains and exits) and reaps
# the worker processes the evaluator's rule checks spawn.
RUN apt-get update \
    && apt-get install --yes --no-install-recommends tini \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 goalwatch \
    && useradd --system --uid 10001 --gid 10001 --home-dir /tmp --no-create-home \
       --shell /usr/sbin/nologin goalwatch

COPY --from=build /opt/goalwatch /opt/goalwatch

# The shipped rules and metric catalogue are the defaults (GOALWATCH_RULES_DIR=rules,
# GOALWATCH_CATALOGUE_FILE=catalogue/metrics.yaml, relative to /app); Kubernetes mounts
# ConfigMaps over them.
WORKDIR /app
COPY rules ./rules
COPY catalogue ./catalogue
COPY examples ./examples

# Nothing is written under /opt or /app at run time: logs go to stderr, state to NATS and
# Redis. HOME and TMPDIR point at /tmp, the one writable place (an emptyDir in Kubernetes).
ENV PATH=/opt/goalwatch/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    TMPDIR=/tmp \
    GOALWATCH_HOST=0.0.0.0

USER 10001:10001

EXPOSE 8001 8002 8003 8004

ENTRYPOINT ["/usr/bin/tini", "--", "goalwatch"]
CMD ["--help"]
