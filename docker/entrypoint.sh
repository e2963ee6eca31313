#!/usr/bin/env bash
# docker/entrypoint.sh: runtime-image entrypoint. Copies the PIN secrets to private files,
# provisions the SoftHSM token and KEK idempotently, initdb's PGDATA on first start, then
# execs postgres as the postgres user with SOFTHSM2_CONF in its environment.
#
#   HSM_PIN_FILE (/run/secrets/hsm_pin)        user PIN secret (required)
#   HSM_SO_PIN_FILE (/run/secrets/hsm_so_pin)  SO PIN secret (needed only to create the token)
#   POSTGRES_PASSWORD_FILE                     superuser password for TCP logins (optional;
#                                              without it only local socket logins work)
#   HSM_DIR, HSM_TOKEN_LABEL, HSM_KEK_LABEL, PGDATA   see the Dockerfile
set -euo pipefail

say() { echo "entrypoint: $*"; }
die() { echo "entrypoint: $*" >&2; exit 1; }

[[ $# -gt 0 ]] || set -- postgres
if [[ $1 != postgres ]]; then
  exec "$@"   # e.g. `docker run ... pg_envelope bash`
fi
[[ $(id -u) -eq 0 ]] || die "must start as root (it drops to postgres itself)"

PRIVATE=/run/pg_envelope
install -d -m 0700 -o postgres -g postgres "$PRIVATE"

# Secrets are usually mounted root-owned and world-readable; the keeper and the tool want a
# 0600 file owned by the server user, so copy them.
[[ -r $HSM_PIN_FILE ]] || die "no user PIN secret at $HSM_PIN_FILE (mount it as a secret)"
install -m 0600 -o postgres -g postgres "$HSM_PIN_FILE" "$PRIVATE/user.pin"
so_pin_args=()
if [[ -r $HSM_SO_PIN_FILE ]]; then
  install -m 0600 -o postgres -g postgres "$HSM_SO_PIN_FILE" "$PRIVATE/so.pin"
  so_pin_args=(--so-pin-file "$PRIVATE/so.pin")
elif [[ ! -d $HSM_DIR/tokens ]] || [[ -z $(ls -A "$HSM_DIR/tokens" 2>/dev/null) ]]; then
  die "no token yet and no SO PIN secret at $HSM_SO_PIN_FILE to create one"
else
  # The wrapper wants an SO PIN file path; an existing token never needs its content.
  : >"$PRIVATE/so.pin"; chown postgres:postgres "$PRIVATE/so.pin"; chmod 0600 "$PRIVATE/so.pin"
  so_pin_args=(--so-pin-file "$PRIVATE/so.pin")
fi

say "provisioning token '$HSM_TOKEN_LABEL' in $HSM_DIR"
/usr/local/share/pg_envelope/hsm/provision-softhsm --dir "$HSM_DIR" --user postgres \
  --token-label "$HSM_TOKEN_LABEL" --kek-label "$HSM_KEK_LABEL" \
  --pin-file "$PRIVATE/user.pin" "${so_pin_args[@]}" --tool /usr/local/bin/pg_envelope_provision
rm -f "$PRIVATE/so.pin"   # only the user PIN stays available to the server
[[ $SOFTHSM2_CONF == "$HSM_DIR/softhsm2.conf" ]] || export SOFTHSM2_CONF=$HSM_DIR/softhsm2.conf

if [[ ! -s $PGDATA/PG_VERSION ]]; then
  say "initialising $PGDATA"
  install -d -m 0700 -o postgres -g postgres "$PGDATA"
  pw_args=(--auth-local=peer --auth-host=scram-sha-256)
  if [[ -n ${POSTGRES_PASSWORD_FILE:-} ]]; then
    install -m 0600 -o postgres -g postgres "$POSTGRES_PASSWORD_FILE" "$PRIVATE/pg_password"
    pw_args+=(--pwfile="$PRIVATE/pg_password")
  fi
  (cd / && runuser -u postgres -- initdb -D "$PGDATA" -U postgres -E UTF8 --locale=C.UTF-8 \
     "${pw_args[@]}" --no-instructions)
  rm -f "$PRIVATE/pg_password"
  echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
fi
# Settings for the extension live in one image-owned file.
if ! grep -q "^include_if_exists = '/etc/pg_envelope/pg_envelope.conf'" "$PGDATA/postgresql.conf"; then
  echo "include_if_exists = '/etc/pg_envelope/pg_envelope.conf'" >>"$PGDATA/postgresql.conf"
fi
if [[ $HSM_TOKEN_LABEL != pg_envelope || $HSM_KEK_LABEL != pg_envelope-kek ]]; then
  set -- "$@" -c "envelope.token_label=$HSM_TOKEN_LABEL" -c "envelope.kek_label=$HSM_KEK_LABEL"
fi

say "starting postgres (then: CREATE EXTENSION pg_envelope; once SELECT * FROM envelope.status() says ready)"
shift
cd /
exec setpriv --reuid=postgres --regid=postgres --init-groups \
  env SOFTHSM2_CONF="$SOFTHSM2_CONF" postgres -D "$PGDATA" "$@"
