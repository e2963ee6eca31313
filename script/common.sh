# script/common.sh: helpers shared by script/server and the test runners (sourced, not run).
# shellcheck shell=bash
# Callers set -euo pipefail themselves. Everything that touches PostgreSQL runs as the server
# user (PostgreSQL refuses to run as root); SoftHSM tokens must be created as that user too.

ENVELOPE_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
PG_CONFIG=${PG_CONFIG:-$PG_BIN/pg_config}
PG_USER=${ENVELOPE_PG_USER:-postgres}
SOFTHSM_MODULE=${SOFTHSM_MODULE:-/usr/lib/softhsm/libsofthsm2.so}
PROVISION=$ENVELOPE_ROOT/hsm/provision-softhsm

# as_pg [VAR=value ...] CMD ARGS...: runs CMD as the server user from /, with the given
# environment additions (runuser keeps the rest of the environment).
as_pg() {
  if [[ $(id -u) -eq 0 ]]; then
    (cd / && runuser -u "$PG_USER" -- env "$@")
  elif [[ $(id -un) == "$PG_USER" ]]; then
    (cd / && env "$@")
  else
    echo "must run as root (or as $PG_USER)" >&2
    return 1
  fi
}

# make_pg_dir DIR: creates DIR (mode 0700) owned by the server user.
make_pg_dir() {
  mkdir -p "$1"
  if [[ $(id -u) -eq 0 ]]; then chown "$PG_USER:$(id -gn "$PG_USER")" "$1"; fi
  chmod 0700 "$1"
}

# PGE_TOKEN selects the key provider that test servers use: softhsm (the default), or the name
# of a file script/providers/NAME.sh that defines provision_token_NAME and
# envelope_settings_NAME (same contracts as below). test/integration/run runs the provider
# matrix with it.
PGE_TOKEN=${PGE_TOKEN:-softhsm}

# provision_tool (for providers): pg_envelope_provision on PATH, else the build tree's.
provision_tool() {
  command -v pg_envelope_provision 2>/dev/null || echo "$ENVELOPE_ROOT/build/pg_envelope_provision"
}

# new_pin_file FILE DIGITS (for providers): a random numeric PIN, mode 0600, owned by the server user.
new_pin_file() {
  [[ -f $1 ]] && return 0
  local digits
  digits=$(od -An -N16 -tu8 /dev/urandom | tr -dc '0-9')
  printf '%s\n' "${digits:0:$2}" | as_pg tee "$1" >/dev/null
  as_pg chmod 600 "$1"
}

for provider_file in "$ENVELOPE_ROOT"/script/providers/*.sh; do
  # shellcheck source=/dev/null
  [[ -e $provider_file ]] && source "$provider_file"
done
unset provider_file

# provision_token DIR [extra provision-softhsm args]: fresh or existing token + KEK under DIR
# (for SoftHSM: softhsm2.conf, tokens/, user.pin, so.pin), created as the server user.
provision_token() {
  local dir=$1; shift
  if [[ $PGE_TOKEN == softhsm ]]; then
    "$PROVISION" --dir "$dir" --user "$PG_USER" --generate-pins "$@"
  else
    "provision_token_$PGE_TOKEN" "$dir" "$@"
  fi
}

# pkcs11_settings MODULE PIN_FILE [INIT_ARGS]: postgresql.conf lines that load pg_envelope
# with the token labelled pg_envelope of MODULE and its KEK pg_envelope-kek.
pkcs11_settings() {
  echo "shared_preload_libraries = 'pg_envelope'"
  echo "envelope.pkcs11_module = '$1'"
  [[ -n ${3:-} ]] && echo "envelope.pkcs11_init_args = '${3//\'/\'\'}'"
  echo "envelope.token_label = 'pg_envelope'"
  echo "envelope.kek_label = 'pg_envelope-kek'"
  echo "envelope.pin_file = '$2'"
}

# envelope_settings HSM_DIR: the postgresql.conf lines that load pg_envelope with that token.
envelope_settings() {
  if [[ $PGE_TOKEN != softhsm ]]; then
    "envelope_settings_$PGE_TOKEN" "$1"
    return
  fi
  pkcs11_settings "$SOFTHSM_MODULE" "$1/user.pin"
}

# installed_scripts: the installed extension scripts (install script, then update scripts) in
# the order CREATE EXTENSION runs them.
installed_scripts() {
  local share
  share=$("$PG_CONFIG" --sharedir)
  find "$share/extension" -maxdepth 1 -name 'pg_envelope--*.sql' | sort -V
}

# status_sql HAS_EXTENSION COLUMNS: SQL selecting COLUMNS from envelope.status(). Without the
# extension (the keeper must be ready before CREATE EXTENSION can succeed) the same C function
# is declared in pg_temp from its newest definition in the installed scripts, so the
# declaration never goes stale.
status_sql() {
  local has_ext=$1 cols=$2
  if [[ $has_ext == t ]]; then
    echo "SELECT $cols FROM envelope.status();"
  else
    # shellcheck disable=SC2046  # one argument per script
    awk '/^CREATE (OR REPLACE )?FUNCTION envelope\.status\(/ {p=1; block=""}
         p {block = block $0 "\n"} p && /;[[:space:]]*$/ {p=0; last=block}
         END {printf "%s", last}' $(installed_scripts) |
      sed -e 's/envelope\.status(/pg_temp.envelope_status(/' \
          -e "s|'MODULE_PATHNAME'|'\$libdir/pg_envelope'|"
    echo "SELECT $cols FROM pg_temp.envelope_status();"
  fi
}

# keeper_state SOCKDIR PORT DB: prints the keeper state ('' when the server does not answer).
keeper_state() {
  local sock=$1 port=$2 db=$3 has_ext
  has_ext=$(as_pg "$PG_BIN/psql" -h "$sock" -p "$port" -U postgres -d "$db" -AtX -q \
      -c "SELECT count(*) > 0 FROM pg_extension WHERE extname = 'pg_envelope'" 2>/dev/null) || return 0
  status_sql "$has_ext" keeper_state |
    as_pg "$PG_BIN/psql" -h "$sock" -p "$port" -U postgres -d "$db" -AtX -q 2>/dev/null || true
}

# wait_keeper SOCKDIR PORT DB [STATE] [TIMEOUT_S]: waits until the keeper reports STATE
# (default ready). Returns 1 on timeout, printing the last state seen.
wait_keeper() {
  local sock=$1 port=$2 db=$3 want=${4:-ready} timeout=${5:-30} state="" i
  for ((i = 0; i < timeout * 5; i++)); do
    state=$(keeper_state "$sock" "$port" "$db")
    [[ $state == "$want" ]] && return 0
    sleep 0.2
  done
  echo "keeper did not reach '$want' within ${timeout}s (last state: '${state:-no answer}')" >&2
  return 1
}
