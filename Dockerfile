# syntax=docker/dockerfile:1
# The Spean image: one image for every process (`spean serve`, `spean worker`, `spean migrate`,
# `spean admin …`), non-root, no compilers or caches in the final layer.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# Dependencies first: their layer is reused until pyproject.toml changes.
COPY pyproject.toml README.md ./
RUN python -m venv /opt/spean \
    && /opt/spean/bin/pip install "hatchling==1.33.0" \
    && /opt/spean/bin/python -c "import tomllib; d = tomllib.load(open('pyproject.toml', 'rb')); print('\n'.join(d['project']['dependencies']))" > /tmp/requirements.txt \
    && /opt/spean/bin/pip install -r /tmp/requirements.txt
COPY spean spean
COPY domain domain
COPY infra infra
COPY api api
COPY realtime realtime
COPY notifications notifications
COPY sms sms
COPY consult_reports consult_reports
COPY migrations migrations
RUN /opt/spean/bin/pip install --no-deps . && /opt/spean/bin/pip uninstall --yes hatchling \
    && find /opt/spean -name __pycache__ -prune -exec rm -rf {} +

FROM ${PYTHON_IMAGE}
# Consultation reports are drawn with the machine's fonts, found through fontconfig: Khmer and
# Vietnamese (and Latin) scripts; nothing else is installed.
RUN apt-get update \
    && apt-get install --yes --no-install-recommends fontconfig fonts-khmeros fonts-dejavu-core \
    && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 spean \
    && useradd --system --uid 10001 --gid spean --home-dir /var/lib/spean --create-home --shell /usr/sbin/nologin spean
COPY --from=build /opt/spean /opt/spean
ENV PATH=/opt/spean/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    SPEAN_ENV=production \
    SPEAN_LOG_JSON=true \
    SPEAN_DATA_DIR=/var/lib/spean
USER 10001:10001
WORKDIR /var/lib/spean
EXPOSE 8000
# Liveness only (/health): readiness (/ready) is the orchestrator's business, and a container
# restarted because PostgreSQL is away would not bring PostgreSQL back.
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=2)"]
ENTRYPOINT ["spean"]
# X-Forwarded-For is trusted from no one by default: name your proxy with --forwarded-allow-ips.
CMD ["serve", "--host", "0.0.0.0", "--port", "8000", "--no-migrate"]
