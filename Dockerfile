# cdcsync container worker: `cdcsync run` over the mapped tables' DynamoDB streams.
#   docker build -t cdcsync .
#   docker run -e CDCSYNC_OPENSEARCH_URL=https://search.example:9200 -e CDCSYNC_CHECKPOINTS=dynamodb://cdcsync-leases \
#              -e AWS_REGION=eu-west-1 -v "$PWD/mappings:/app/mappings:ro" -p 9464:9464 cdcsync
#
# Supply chain: the dependencies are exactly requirements.lock and the build backend exactly
# requirements-build.lock (pip --require-hashes; `make lock` refreshes both). The final image has no
# pip, setuptools or wheel: the venv is made without pip, the base image's pip and ensurepip's
# bundled wheels are removed.
# Base image: python:3.12-slim-bookworm, pinned by its multi-arch index digest with `make lock-base-image`.
# UNPINNED: no registry was reachable where this was written: the FROM lines carry the tag only.
# UNPINNED: run `make lock-base-image` where one is (docs/security.md). Never type a digest in by hand.
FROM python:3.12-slim-bookworm AS build
WORKDIR /src
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY requirements.lock requirements-build.lock ./
RUN python -m venv /opt/tools \
    && /opt/tools/bin/pip install --require-hashes --no-deps -r requirements-build.lock \
    && python -m venv --without-pip /opt/venv \
    && /opt/tools/bin/pip --python /opt/venv/bin/python install --require-hashes --no-deps --no-compile \
       -r requirements.lock
COPY pyproject.toml README.md ./
COPY cdcsync ./cdcsync
RUN /opt/tools/bin/pip wheel --no-deps --no-build-isolation -w /dist . \
    && /opt/tools/bin/pip --python /opt/venv/bin/python install --no-deps --no-compile /dist/cdcsync-*.whl \
    && /opt/venv/bin/python -m compileall -q /opt/venv

FROM python:3.12-slim-bookworm
LABEL org.opencontainers.image.title="cdcsync" \
      org.opencontainers.image.description="DynamoDB Streams to OpenSearch sync worker"
# No installer in the image: nothing at run time can fetch and install code.
RUN python -m pip uninstall --yes --quiet setuptools wheel pip \
    && rm -rf /usr/local/lib/python3.12/ensurepip/_bundled \
    && groupadd --system --gid 10001 cdcsync && useradd --system --uid 10001 --gid cdcsync --home-dir /app cdcsync
WORKDIR /app
COPY --from=build /opt/venv /opt/venv
COPY --chown=cdcsync:cdcsync mappings ./mappings
# MALLOC_ARENA_MAX: glibc's arenas capped for every command (backfill's segment threads too); the
# worker also caps them itself (cdcsync/worker/arenas.py).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    MALLOC_ARENA_MAX=2 \
    CDCSYNC_MAPPINGS=/app/mappings \
    CDCSYNC_METRICS_ADDR=0.0.0.0:9464 \
    CDCSYNC_LOG_FORMAT=json \
    CDCSYNC_DLQ=file:///tmp/cdcsync-dlq.jsonl \
    CDCSYNC_CHECKPOINTS=file:///tmp/cdcsync-checkpoints.json
USER 10001:10001
EXPOSE 9464
# /healthz answers 503 when the coordinator loop is stuck; python is the only client the image has.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:9464/healthz', timeout=4).status == 200 else 1)"]
# SIGTERM: finish in-flight writes, checkpoint, release leases, exit within 30 s.
STOPSIGNAL SIGTERM
ENTRYPOINT ["cdcsync"]
CMD ["run"]
