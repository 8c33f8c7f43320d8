# Falcon's image: one Falcon worker per Kubernetes pod (`python -m falcon_platform.worker`,
# see deploy/k8s), or `falcon up` on one machine (compose.yaml, the default command).
#
#   docker build -t registry.example/falcon:0.1.0 .
#
# Multi-stage: the build stage installs Falcon into a virtualenv and trains the default model
# into it (training is deterministic: same corpus and versions, same sha256); the runtime
# stage copies only /opt/falcon, runs as an unprivileged user and writes nowhere but
# FALCON_HOME and /tmp (on Kubernetes the root file system is read-only). To serve your own
# model instead of the baked-in one, mount it and point FALCON_MODEL_PATH at it.
# tests/unit/test_container_files.py checks this file; tests/integration/test_container_build_steps.py
# runs its model step. No container engine runs on Falcon's CI machines: the image itself is
# not built there.

# A maintained minor line, never `latest`; pin the digest in your registry for reproducible builds.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/falcon/venv/bin:$PATH
RUN python -m venv /opt/falcon/venv
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install .
ENV FALCON_MODEL_PATH=/opt/falcon/model
RUN falcon model train --out "$FALCON_MODEL_PATH" && falcon model verify --path "$FALCON_MODEL_PATH"

FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 falcon \
 && useradd --system --uid 10001 --gid falcon --home-dir /var/lib/falcon --no-create-home falcon \
 && mkdir -p /var/lib/falcon \
 && chown 10001:10001 /var/lib/falcon
COPY --from=build /opt/falcon /opt/falcon
ENV PATH=/opt/falcon/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    FALCON_HOME=/var/lib/falcon \
    FALCON_MODEL_PATH=/opt/falcon/model
USER 10001:10001
WORKDIR /var/lib/falcon
EXPOSE 8000 8001
# For `falcon up` (compose, a plain container): the supervisor says whether workers are ready.
# Kubernetes ignores HEALTHCHECK; its probes are in the rendered Deployment.
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
    CMD ["falcon", "check-health"]
CMD ["falcon", "up"]
