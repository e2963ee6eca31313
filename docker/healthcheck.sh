#!/usr/bin/env bash
# docker/healthcheck.sh: health check of the runtime image (compose.yaml, Dockerfile HEALTHCHECK):
# healthy once envelope.status() reports keeper_state 'ready', i.e. the keeper reached the HSM
# and loaded the keys. Works before CREATE EXTENSION too: it uses keeper_state from
# script/common.sh, which the image installs beside the provisioning tool.
#
#   PGPORT   port postgres listens on (default 5432; set it if you pass -p to postgres)
set -euo pipefail

# shellcheck source=script/common.sh
source /usr/local/share/pg_envelope/script/common.sh

state=$(keeper_state /run/postgresql "${PGPORT:-5432}" postgres)
if [[ $state != ready ]]; then
  echo "pg_envelope keeper state: ${state:-no answer from postgres}"
  exit 1
fi
echo "pg_envelope keeper ready"
