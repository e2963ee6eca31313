# Dockerfile: pg_envelope images. Stages:
#   build    Debian 12 + dev packages, builds and installs the extension (script/build)
#   test     runs every suite exactly as CI does (script/test)
#   runtime  PostgreSQL 15 + SoftHSM2 only, the installed extension and provisioning tool;
#            the entrypoint provisions the token from PIN secrets, then runs postgres; healthy
#            once envelope.status() says the keeper is ready (docker/healthcheck.sh).
#
#   docker build --target test .                       # CI-equivalent run
#   docker build -t pg_envelope .                      # runtime image (last stage)
#   docker run -d --name pge -p 5432:5432 \
#     -v pge-hsm:/var/lib/pg_envelope/hsm -v pge-data:/var/lib/postgresql/data \
#     -v $PWD/secrets/hsm_pin:/run/secrets/hsm_pin:ro \
#     -v $PWD/secrets/hsm_so_pin:/run/secrets/hsm_so_pin:ro \
#     -v $PWD/secrets/pg_password:/run/secrets/pg_password:ro -e POSTGRES_PASSWORD_FILE=/run/secrets/pg_password \
#     pg_envelope
# or `docker compose up -d` / `podman-compose up -d` with compose.yaml (PINs as compose secrets).

FROM debian:12 AS build
ENV DEBIAN_FRONTEND=noninteractive
WORKDIR /src
# Packages first, so the layer survives source edits. script/bootstrap holds the one package
# list (python3-cryptography for t_trustpoint included).
COPY script/bootstrap script/bootstrap
RUN script/bootstrap && rm -rf /var/lib/apt/lists/*
COPY . .
RUN SKIP_BOOTSTRAP=1 script/build

FROM build AS test
RUN SKIP_BUILD=1 script/test

FROM debian:12 AS runtime
ENV DEBIAN_FRONTEND=noninteractive
COPY script/bootstrap /usr/local/share/pg_envelope/bootstrap
# No default cluster from the package: the entrypoint makes its own in PGDATA.
RUN mkdir -p /etc/postgresql-common \
 && echo 'create_main_cluster = false' >/etc/postgresql-common/createcluster.conf \
 && /usr/local/share/pg_envelope/bootstrap --runtime \
 && rm -rf /var/lib/apt/lists/*

COPY --from=build /usr/lib/postgresql/15/lib/pg_envelope.so /usr/lib/postgresql/15/lib/
COPY --from=build /usr/share/postgresql/15/extension/pg_envelope* /usr/share/postgresql/15/extension/
COPY --from=build /usr/local/bin/pg_envelope_provision /usr/local/bin/pg_envelope_rewrap /usr/local/bin/
COPY hsm/provision-softhsm hsm/softhsm2.conf.in /usr/local/share/pg_envelope/hsm/
COPY docker/pg_envelope.conf /etc/pg_envelope/pg_envelope.conf
COPY docker/entrypoint.sh /usr/local/bin/pg_envelope-entrypoint
# The health check asks envelope.status() through script/common.sh's keeper_state.
COPY script/common.sh /usr/local/share/pg_envelope/script/common.sh
COPY docker/healthcheck.sh /usr/local/bin/pg_envelope-healthcheck

ENV PATH=/usr/lib/postgresql/15/bin:$PATH \
    PGDATA=/var/lib/postgresql/data \
    HSM_DIR=/var/lib/pg_envelope/hsm \
    HSM_PIN_FILE=/run/secrets/hsm_pin \
    HSM_SO_PIN_FILE=/run/secrets/hsm_so_pin \
    HSM_TOKEN_LABEL=pg_envelope \
    HSM_KEK_LABEL=pg_envelope-kek \
    SOFTHSM2_CONF=/var/lib/pg_envelope/hsm/softhsm2.conf

RUN mkdir -p "$HSM_DIR" "$PGDATA" /run/pg_envelope /run/postgresql \
 && chown -R postgres:postgres /var/lib/pg_envelope "$PGDATA" /run/pg_envelope /run/postgresql \
 && chmod 0700 "$HSM_DIR" "$PGDATA" /run/pg_envelope

# The token (KEK) and the database are state: keep both on volumes, and back them up together.
VOLUME ["/var/lib/pg_envelope/hsm", "/var/lib/postgresql/data"]
EXPOSE 5432
STOPSIGNAL SIGINT
HEALTHCHECK --interval=10s --timeout=10s --start-period=60s --retries=5 \
  CMD ["/usr/local/bin/pg_envelope-healthcheck"]
ENTRYPOINT ["/usr/local/bin/pg_envelope-entrypoint"]
CMD ["postgres"]
