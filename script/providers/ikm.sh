# script/providers/ikm.sh: PGE_TOKEN=ikm, the KEK derived from an IKM command
# (envelope.kek_provider = ikm_command; README "Key providers"). Sourced by script/common.sh.
# shellcheck shell=bash

# provision_token_ikm DIR [--kek-label L]: DIR/ikm-command (owned by the server user, mode
# 0700) prints a fixed random 32-byte IKM as lowercase hex; DIR/ikm.hex records the same hex
# (mode 0600) for tests that grep for it; DIR/ikm_salt is a salt that pg_init_hook_ikm copies
# into every cluster a test creates, so that they all reach one KEK, as servers sharing one
# SoftHSM token do. An existing command is kept (the IKM must not change under a cluster); KEK
# labels need no provisioning (each label derives its own KEK).
provision_token_ikm() {
  local dir=$1 hex
  make_pg_dir "$dir"
  if [[ ! -f $dir/ikm-command ]]; then
    hex=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')
    printf '%s\n' "$hex" >"$dir/ikm.hex"
    printf '#!/bin/sh\n# test IKM source for pg_envelope (script/providers/ikm.sh)\nprintf '"'"'%%s\\n'"'"' %s\n' \
      "$hex" >"$dir/ikm-command"
    head -c 32 /dev/urandom >"$dir/ikm_salt"
    chmod 0600 "$dir/ikm.hex" "$dir/ikm_salt"
    chmod 0700 "$dir/ikm-command"
    if [[ $(id -u) -eq 0 ]]; then chown "$PG_USER" "$dir/ikm.hex" "$dir/ikm-command" "$dir/ikm_salt"; fi
  fi
  shift
  while [[ $# -gt 0 ]]; do
    [[ $1 == --kek-label ]] && echo "KEK '$2': created (derived from the IKM)"
    shift
  done
  echo "IKM command: $dir/ikm-command"
}

# envelope_settings_ikm DIR: postgresql.conf lines for a server whose keeper runs DIR/ikm-command.
envelope_settings_ikm() {
  cat <<CONF
shared_preload_libraries = 'pg_envelope'
envelope.kek_provider = 'ikm_command'
envelope.ikm_command = '$1/ikm-command'
envelope.kek_label = 'pg_envelope-kek'
CONF
}

# pg_init_hook_ikm DIR DATADIR: after initdb, the cluster gets a copy of DIR/ikm_salt (the
# documented way for clusters to share a KEK: same IKM, same salt). IKM_SHARED_SALT=0 skips
# it (the cluster then creates its own salt at its first start).
pg_init_hook_ikm() {
  local dir=$1 data=$2
  [[ ${IKM_SHARED_SALT:-1} == 1 && -f $dir/ikm_salt ]] || return 0
  make_pg_dir "$data/pg_envelope"
  cp "$dir/ikm_salt" "$data/pg_envelope/ikm_salt"
  chmod 0600 "$data/pg_envelope/ikm_salt"
  if [[ $(id -u) -eq 0 ]]; then chown "$PG_USER" "$data/pg_envelope/ikm_salt"; fi
}
