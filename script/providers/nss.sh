# PGE_TOKEN=nss: NSS's software token (libsoftokn3, from libnss3) in a database under DIR/nssdb.
# The module needs its database directory as C_Initialize's pReserved
# (envelope.pkcs11_init_args); the database password is the user PIN.
# shellcheck shell=bash

NSS_SOFTOKN_MODULE=${NSS_SOFTOKN_MODULE:-/usr/lib/x86_64-linux-gnu/libsoftokn3.so}

# nss_init_args DIR: the softoken's initialisation string for the database under DIR.
nss_init_args() {
  echo "configdir='sql:$1/nssdb' certPrefix='' keyPrefix='' secmod='secmod.db' flags= dbTokenDescription='pg_envelope'"
}

provision_token_nss() {
  local dir=$1; shift
  make_pg_dir "$dir"
  new_pin_file "$dir/user.pin" 12
  if [[ ! -d $dir/nssdb ]]; then
    make_pg_dir "$dir/nssdb"
    as_pg certutil -N -d "sql:$dir/nssdb" -f "$dir/user.pin" || return 1
  fi
  as_pg "$(provision_tool)" --module "$NSS_SOFTOKN_MODULE" --init-args "$(nss_init_args "$dir")" \
    --token-label pg_envelope --pin-file "$dir/user.pin" "$@"
}

envelope_settings_nss() {
  pkcs11_settings "$NSS_SOFTOKN_MODULE" "$1/user.pin" "$(nss_init_args "$1")"
}
