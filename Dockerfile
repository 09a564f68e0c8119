# drd as a container: `docker run -v /etc/drd:/etc/drd:ro -v drd-state:/var/lib/drd
#   -p 9477:9477 drd` runs the daemon (`drd run`); any other drd command works too,
#   e.g. `docker run --rm -v /etc/drd:/etc/drd:ro drd replicate --dry-run`.
# No config or secret is baked in: mount drd.toml at /etc/drd/drd.toml and the
# secret files it names (Docker/Kubernetes secrets under /run/secrets work well).
# Set `[daemon] listen = "0.0.0.0:9477"` to reach /metrics and /webhook from outside,
# and then not in plain HTTP: set `[daemon] tls_cert_file`/`tls_key_file` (mounted secrets),
# or publish the port only to a TLS-terminating reverse proxy on a private network.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: a wheel of drd, then a virtualenv with it and its pinned dependencies
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY drd ./drd
# Binary wheels only: the dependencies all ship them, so no compiler is ever needed.
RUN python -m venv /opt/drd \
 && /opt/drd/bin/pip install --no-cache-dir --only-binary=:all: -c constraints.txt "setuptools>=68" wheel \
 && /opt/drd/bin/pip wheel --no-cache-dir --no-deps --no-build-isolation --wheel-dir /wheels . \
 && /opt/drd/bin/pip install --no-cache-dir --only-binary=:all: -c constraints.txt /wheels/drd-*.whl \
 && /opt/drd/bin/pip uninstall --yes setuptools wheel

# --- runtime: the virtualenv on a slim Python, as an unprivileged user
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="drd" \
      org.opencontainers.image.description="Disaster recovery and verified replication for OCI registries" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/drd/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DRD_CONFIG=/etc/drd/drd.toml
RUN groupadd --system --gid 10001 drd \
 && useradd --system --uid 10001 --gid drd --home-dir /var/lib/drd --no-create-home \
      --shell /usr/sbin/nologin drd \
 && install -d -o drd -g drd -m 0700 /var/lib/drd
COPY --from=build /opt/drd /opt/drd
USER 10001:10001
WORKDIR /var/lib/drd
VOLUME ["/var/lib/drd"]
EXPOSE 9477
# SIGTERM starts the drain (daemon.drain_timeout): give `docker stop -t` more than that.
STOPSIGNAL SIGTERM
# The image's own Python checks /healthz: no curl in the image. It tries http, then https
# without verifying the certificate (a liveness check on loopback, not a trust decision).
# With tls_client_ca_file (mTLS) it cannot get in: override it with --health-cmd.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import ssl, sys, urllib.request as r\nfor scheme in ('http', 'https'):\n    try:\n        sys.exit(r.urlopen(scheme + '://127.0.0.1:9477/healthz', timeout=2, context=ssl._create_unverified_context()).status != 200)\n    except Exception:\n        pass\nsys.exit(1)"]
ENTRYPOINT ["drd"]
CMD ["run"]
