#!/bin/sh
# The codec on a CPU without AES-NI/PCLMUL, forced: Nettle's fat library and OpenSSL both read
# their CPU features from the environment. Runs every codec test with both masked and checks
# that Nettle reported its portable code (OpenSSL has no such report; OPENSSL_ia32cap with
# bits 57 (AES-NI) and 33 (PCLMULQDQ) cleared is its documented switch).
#   run_portable_aes.sh UNIT_TEST_BINARY
set -u
bin=$1
log=$(mktemp)
trap 'rm -f "$log"' EXIT
NETTLE_FAT_VERBOSE=1 NETTLE_FAT_OVERRIDE=none OPENSSL_ia32cap='~0x200000200000000' \
  ENVELOPE_CROSS_CHECKS=20000 \
  "$bin" --gtest_filter='Nist/*:AesGcm*:Envelope*:Zeroization*' >"$log" 2>&1
rc=$?
tail -n 3 "$log"
if [ $rc -ne 0 ]; then cat "$log"; echo "portable codec tests failed (exit $rc)"; exit 1; fi
for want in "not using aes instructions" "not using pclmulqdq instructions"; do
  grep -q "libnettle: $want" "$log" || { echo "Nettle did not report '$want'"; exit 1; }
done
grep -q "PASSED" "$log" || { echo "no test ran"; exit 1; }
echo "portable codec: ok"
