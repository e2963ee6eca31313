# test/integration/lib.sh: tiny framework for integration tests that run their own servers.
# shellcheck shell=bash disable=SC2034  # variables here are used by the sourcing tests
# Source it from test/integration/t_NAME.sh (after set -euo pipefail), then:
#
#   it_init [--no-token]      temp dir owned by postgres ($IT_TMP) + fresh SoftHSM token in
#                             $IT_HSM (PIN file $IT_PIN_FILE, conf $IT_SOFTHSM_CONF)
#   pg_init NAME              initdb $IT_TMP/NAME, preloading pg_envelope with that token
#   pg_conf NAME 'line'       append a line to NAME's postgresql.conf
#   pg_start NAME PORT        start (SOFTHSM2_CONF exported, log $IT_TMP/NAME.log, socket in
#                             $IT_SOCK, no TCP)
#   pg_stop NAME [MODE]       stop (default fast)        pg_restart NAME [PORT]
#   wait_ready NAME PORT [STATE] [TIMEOUT_S] [DB]  poll until keeper_state = STATE (ready)
#   status_at PORT DB COLS    columns of envelope.status() (works before CREATE EXTENSION)
#   psql_at PORT DB "SQL"     psql -AtX -v ON_ERROR_STOP=1; prints output, fails on error
#                             (these three connect as $IT_USER, default postgres)
#   psql_fail PORT DB "SQL"   runs SQL that must fail; prints its error output
#   psql_fail_state PORT DB SQLSTATE "SQL"  runs SQL that must fail with that SQLSTATE
#                             (VERBOSITY verbose); prints its error output
#   assert_eq WANT GOT MSG | assert_contains TEXT NEEDLE MSG | assert_not_contains ...
#   assert_file_contains FILE NEEDLE MSG | assert_file_not_contains FILE NEEDLE MSG
#   pass MSG | fail MSG       report a step; fail exits 1
#   it_log NAME               path of NAME's server log
# On exit every server started is stopped, logs of failed runs are printed, and $IT_TMP is
# removed unless KEEP_TMP=1. Ports: IT_PORT_BASE (default 56000) + a per-test offset.

# shellcheck source=script/common.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")/../../script" && pwd)/common.sh"

IT_NAME=$(basename "$0" .sh)
IT_PORT_BASE=${IT_PORT_BASE:-56000}
IT_TMP=""
IT_SERVERS=()

it_cleanup() {
  local rc=$? name
  set +e
  for name in "${IT_SERVERS[@]}"; do
    if [[ -f $IT_TMP/$name/postmaster.pid ]]; then
      as_pg "$PG_BIN/pg_ctl" -D "$IT_TMP/$name" -m immediate -w stop >/dev/null 2>&1
    fi
    if [[ $rc -ne 0 && -f $IT_TMP/$name.log ]]; then
      echo "---- last lines of $name.log ----"
      tail -n 40 "$IT_TMP/$name.log"
    fi
  done
  # Providers with system-wide state (openCryptoki) clean their token up.
  if [[ -n $IT_TMP ]] && declare -F "teardown_token_$PGE_TOKEN" >/dev/null; then
    "teardown_token_$PGE_TOKEN" "$IT_HSM" >/dev/null 2>&1
  fi
  if [[ -n $IT_TMP && -d $IT_TMP ]]; then
    if [[ ${KEEP_TMP:-0} == 1 ]]; then
      echo "$IT_NAME: kept $IT_TMP"
    else
      rm -rf "$IT_TMP"
    fi
  fi
  exit "$rc"
}

# shellcheck disable=SC2120  # the optional --no-token argument
it_init() {
  IT_TMP=$(mktemp -d "/tmp/pg_envelope-it-$IT_NAME.XXXXXX")
  trap it_cleanup EXIT
  trap 'exit 130' INT TERM
  make_pg_dir "$IT_TMP"
  IT_SOCK=$IT_TMP/sock
  make_pg_dir "$IT_SOCK"
  IT_HSM=$IT_TMP/hsm
  IT_PIN_FILE=$IT_HSM/user.pin
  IT_SOFTHSM_CONF=$IT_HSM/softhsm2.conf
  if [[ ${1:-} != --no-token ]]; then
    provision_token "$IT_HSM" >"$IT_TMP/provision.log" 2>&1 || {
      cat "$IT_TMP/provision.log"
      fail "provisioning the token"
    }
  fi
}

it_log() { echo "$IT_TMP/$1.log"; }

pg_init() {
  local name=$1
  as_pg "$PG_BIN/initdb" -D "$IT_TMP/$name" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 \
      --no-instructions >"$IT_TMP/$name.initdb.log" 2>&1 || {
    cat "$IT_TMP/$name.initdb.log"
    fail "initdb $name"
  }
  {
    echo "# pg_envelope integration test settings"
    envelope_settings "$IT_HSM"
    echo "listen_addresses = ''"
    echo "unix_socket_directories = '$IT_SOCK'"
    echo "lc_messages = 'C'"
    echo "fsync = off"
  } | as_pg tee -a "$IT_TMP/$name/postgresql.conf" >/dev/null
  # A provider may need per-cluster files (script/providers/README.md).
  if declare -F "pg_init_hook_$PGE_TOKEN" >/dev/null; then "pg_init_hook_$PGE_TOKEN" "$IT_HSM" "$IT_TMP/$name"; fi
}

pg_conf() { echo "$2" | as_pg tee -a "$IT_TMP/$1/postgresql.conf" >/dev/null; }

pg_start() {
  local name=$1 port=$2
  echo "$port" >"$IT_TMP/$name.port"
  [[ " ${IT_SERVERS[*]} " == *" $name "* ]] || IT_SERVERS+=("$name")
  as_pg SOFTHSM2_CONF="$IT_SOFTHSM_CONF" "$PG_BIN/pg_ctl" -D "$IT_TMP/$name" -l "$IT_TMP/$name.log" \
      -o "-p $port" -w -t 60 start >/dev/null || fail "starting server $name on port $port"
}

pg_stop() {
  as_pg "$PG_BIN/pg_ctl" -D "$IT_TMP/$1" -m "${2:-fast}" -w -t 60 stop >/dev/null ||
    fail "stopping server $1"
}

pg_restart() {
  local name=$1 port=${2:-$(cat "$IT_TMP/$1.port")}
  pg_stop "$name"
  pg_start "$name" "$port"
}

wait_ready() {
  local name=$1 port=$2 state=${3:-ready} timeout=${4:-30} db=${5:-postgres}
  wait_keeper "$IT_SOCK" "$port" "$db" "$state" "$timeout" ||
    fail "server $name: keeper did not reach '$state' within ${timeout}s"
}

psql_at() {
  as_pg "$PG_BIN/psql" -h "$IT_SOCK" -p "$1" -U "${IT_USER:-postgres}" -d "$2" -AtX -q -v ON_ERROR_STOP=1 -c "$3"
}

psql_fail() {
  local out
  if out=$(as_pg "$PG_BIN/psql" -h "$IT_SOCK" -p "$1" -U "${IT_USER:-postgres}" -d "$2" -AtX -q \
      -v ON_ERROR_STOP=1 -c "$3" 2>&1); then
    fail "expected an error from: $3 (got: $out)"
  fi
  echo "$out"
}

psql_fail_state() {
  local port=$1 db=$2 want=$3 sql=$4 out got
  if out=$(as_pg "$PG_BIN/psql" -h "$IT_SOCK" -p "$port" -U "${IT_USER:-postgres}" -d "$db" -AtX -q \
      -v ON_ERROR_STOP=1 -v VERBOSITY=verbose -c "$sql" 2>&1); then
    fail "expected SQLSTATE $want from: $sql (it succeeded: $out)"
  fi
  got=$(sed -n 's/^.*ERROR:  \([0-9A-Z]\{5\}\): .*$/\1/p' <<<"$out" | head -n 1)
  [[ $got == "$want" ]] || fail "expected SQLSTATE $want from: $sql (got '$got': $out)"
  echo "$out"
}

status_at() {
  local port=$1 db=$2 cols=$3 has_ext
  has_ext=$(psql_at "$port" "$db" \
      "SELECT count(*) > 0 FROM pg_extension WHERE extname = 'pg_envelope'") || fail "server on $port does not answer"
  status_sql "$has_ext" "$cols" |
    as_pg "$PG_BIN/psql" -h "$IT_SOCK" -p "$port" -U postgres -d "$db" -AtX -q -v ON_ERROR_STOP=1
}

# it_token_module / it_token_init_args: the PKCS#11 module of this test's token and its
# C_Initialize string (NSS's softoken needs one), for tools that open the token themselves.
it_token_module() {
  case $PGE_TOKEN in
    nss) echo "$NSS_SOFTOKN_MODULE" ;;
    opencryptoki) echo "$OCK_MODULE" ;;
    *) echo "$SOFTHSM_MODULE" ;;
  esac
}
it_token_init_args() {
  if [[ $PGE_TOKEN == nss ]]; then nss_init_args "$IT_HSM"; fi
}

# it_provision_tool ARGS...: pg_envelope_provision on this test's token (module, init string,
# token label pg_envelope, the test's PIN file) with more arguments, as the server user.
it_provision_tool() {
  local args=(--module "$(it_token_module)" --token-label pg_envelope --pin-file "$IT_PIN_FILE")
  local init
  init=$(it_token_init_args)
  [[ -n $init ]] && args+=(--init-args "$init")
  as_pg SOFTHSM2_CONF="$IT_SOFTHSM_CONF" "$(provision_tool)" "${args[@]}" "$@" </dev/null
}

pass() { echo "ok - $*"; }
fail() { echo "FAIL: $*" >&2; exit 1; }

assert_eq() {
  [[ $2 == "$1" ]] || fail "${3:-values differ}: expected '$1', got '$2'"
  pass "${3:-equal}"
}
assert_contains() {
  [[ $1 == *"$2"* ]] || fail "${3:-missing text}: '$2' not in '$1'"
  pass "${3:-contains}"
}
assert_not_contains() {
  [[ $1 != *"$2"* ]] || fail "${3:-unexpected text}: '$2' found"
  pass "${3:-does not contain}"
}
assert_file_contains() {
  grep -qF -- "$2" "$1" || fail "${3:-missing in file}: '$2' not in $1"
  pass "${3:-file contains}"
}
assert_file_not_contains() {
  # The needle may be a secret: never echo it.
  ! grep -qF -- "$2" "$1" || fail "${3:-found in file}: forbidden text found in $1"
  pass "${3:-file does not contain}"
}

# pgtool [VAR=value ...] TOOL ARGS...: a PostgreSQL client tool (pg_dump, pg_restore, createdb,
# psql, ...) as the server user against this test's socket directory; VAR=value pairs (such as
# PGOPTIONS=...) go into its environment.
pgtool() {
  local env=()
  while [[ $1 == *=* ]]; do env+=("$1"); shift; done
  local tool=$1; shift
  as_pg "${env[@]}" PGHOST="$IT_SOCK" PGUSER=postgres "$PG_BIN/$tool" "$@"
}
