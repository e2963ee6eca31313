# PGE_TOKEN=opencryptoki: openCryptoki's soft token (slot 3 of the opencryptoki package), which
# offers AES-ECB/CBC but neither AES-GCM nor key wrap. Its state is system-wide
# (/var/lib/opencryptoki) and served by the pkcsslotd daemon: provisioning starts the daemon
# if it is not running (noting that in DIR/ock-started) and re-initialises the token, which
# destroys its objects; teardown_token_opencryptoki re-initialises it again and stops a daemon
# it started. The server user must be in group pkcs11 (script/bootstrap does that). Needs root.
# shellcheck shell=bash

OCK_MODULE=${OCK_MODULE:-/usr/lib/x86_64-linux-gnu/pkcs11/libopencryptoki.so}
OCK_SLOT=${OCK_SLOT:-3}
# openCryptoki's factory SO PIN; the token is re-initialised with it and it is never changed.
OCK_SO_PIN=87654321

ock_start_daemon() {
  local dir=$1
  [[ $(id -u) -eq 0 ]] || { echo "openCryptoki tests need root (pkcsslotd)" >&2; return 1; }
  id -nG "$PG_USER" | grep -qw pkcs11 ||
    { echo "$PG_USER is not in group pkcs11 (run script/bootstrap)" >&2; return 1; }
  if ! pgrep -x pkcsslotd >/dev/null; then
    # What the package's tmpfiles.d entry makes at boot (no systemd in containers).
    local d
    for d in /var/lock/opencryptoki /var/lock/opencryptoki/swtok /var/lib/opencryptoki \
             /var/lib/opencryptoki/swtok /var/lib/opencryptoki/swtok/TOK_OBJ; do
      mkdir -p "$d" && chgrp pkcs11 "$d" && chmod 0770 "$d" || return 1
    done
    /usr/sbin/pkcsslotd || return 1
    touch "$dir/ock-started"
  fi
}

# ock_reinit LABEL USER_PIN: a fresh token (every object destroyed) with this label and PIN.
ock_reinit() {
  echo "$1" | pkcsconf -I -c "$OCK_SLOT" -S "$OCK_SO_PIN" >/dev/null || return 1
  pkcsconf -u -c "$OCK_SLOT" -S "$OCK_SO_PIN" -n "$2" >/dev/null
}

provision_token_opencryptoki() {
  local dir=$1; shift
  make_pg_dir "$dir"
  ock_start_daemon "$dir" || return 1
  if [[ ! -f $dir/user.pin ]]; then
    new_pin_file "$dir/user.pin" 8  # the soft token takes 4 to 8 characters
    printf '%s\n' "$OCK_SO_PIN" | as_pg tee "$dir/so.pin" >/dev/null  # tests grep logs for it
    as_pg chmod 600 "$dir/so.pin"
    ock_reinit pg_envelope "$(head -n 1 "$dir/user.pin")" || return 1
  fi
  as_pg "$(provision_tool)" --module "$OCK_MODULE" --token-label pg_envelope \
    --pin-file "$dir/user.pin" "$@"
}

teardown_token_opencryptoki() {
  local dir=$1
  local digits
  digits=$(od -An -N8 -tu8 /dev/urandom | tr -dc '0-9')
  ock_reinit pg_envelope-free "${digits:0:8}" || true
  if [[ -f $dir/ock-started ]]; then pkill -x pkcsslotd || true; fi
}

envelope_settings_opencryptoki() {
  pkcs11_settings "$OCK_MODULE" "$1/user.pin"
}
