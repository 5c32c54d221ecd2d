# syntax=docker/dockerfile:1
#
# aws-root-exporter container image.
#
#   docker build -t aws-root-exporter:0.1.0 \
#     --build-arg VERSION=0.1.0 --build-arg REVISION="$(git rev-parse HEAD)" .
#
# Pin PYTHON_IMAGE by digest in CI (python:3.11-slim-bookworm@sha256:...) for
# reproducible builds; the tag below is the default for local builds.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- builder: builds the project wheel and collects its dependencies as wheels
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# .dockerignore is an allow-list: only pyproject.toml, README.md, LICENSE and exporter/ arrive.
COPY . .
# The project wheel, then every dependency as a binary wheel. --only-binary makes the
# build fail instead of compiling an sdist, so neither stage ever needs a compiler.
RUN pip wheel --no-deps . -w /dist \
 && pip wheel --only-binary=:all: -w /wheels /dist/*.whl \
 && sha256sum /wheels/*.whl > /wheels.sha256

# ---- runtime: the wheels installed into a slim Python, nothing else
FROM ${PYTHON_IMAGE}
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="aws-root-exporter" \
      org.opencontainers.image.description="Prometheus exporter for AWS root user posture and activity across an AWS Organization" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/aws-root-exporter/aws-root-exporter" \
      org.opencontainers.image.documentation="https://github.com/aws-root-exporter/aws-root-exporter/blob/main/docs/deployment.md"

# No .pyc written at run time (read-only root filesystem); pip compiles bytecode at
# install time instead, so imports stay fast.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# A fixed, unprivileged user (the distroless "nonroot" ids) that Kubernetes
# runAsUser/runAsGroup 65532 and runAsNonRoot can verify. Its home does not exist: the
# exporter writes nothing but an optional state file on a mounted volume. The volume's mount
# point exists and belongs to that user because Docker gives a new named volume the owner of
# the directory it is mounted on (a missing one would be root's, and unwritable).
RUN groupadd --system --gid 65532 nonroot \
 && useradd --system --uid 65532 --gid 65532 --no-create-home \
      --home-dir /nonexistent --shell /usr/sbin/nologin nonroot \
 && install -d -o 65532 -g 65532 -m 0700 /var/lib/aws-root-exporter

# The wheels are bind-mounted from the builder, so no wheel file ends up in a layer. Their
# hashes are copied first because buildah (podman build) keys the cache of a RUN on its text,
# not on what a mount holds: without them, a rebuild after a code change reused the layer
# installed from the old wheels. The check proves the installed wheels are the listed ones.
COPY --from=builder /wheels.sha256 /usr/local/share/aws-root-exporter/wheels.sha256
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    sha256sum --check --quiet /usr/local/share/aws-root-exporter/wheels.sha256 \
 && pip install --no-index --find-links=/wheels /wheels/aws_root_exporter-*.whl \
 && aws-root-exporter --help > /dev/null

WORKDIR /
USER 65532:65532
EXPOSE 9784

# Liveness only (the process serves HTTP); readiness (/-/ready) is for Kubernetes.
# Python's urllib, because the slim image has no curl or wget.
# Reads the same settings as `serve` (listen address, web config: HTTPS, basic auth).
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["aws-root-exporter", "healthcheck"]

ENTRYPOINT ["aws-root-exporter"]
CMD ["serve"]
