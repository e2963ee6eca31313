#!/bin/sh
# The codec on a CPU without AES-NI/PCLMUL, forced: Nettle's fat library reads its CPU features
# from NETTLE_FAT_OVERRIDE, and pg_envelope passes ENVELOPE_GCRYPT_DISABLE_HWF to libgcrypt
# before it detects the CPU. Runs every codec test with both masked and checks that each
# library reported its portable code (Nettle on stderr, libgcrypt's hwflist in a unit test).
#   run_portable_aes.sh UNIT_TEST_BINARY
set -u
bin=$1
log=$(mktemp)
trap 'rm -f "$log"' EXIT
NETTLE_FAT_VERBOSE=1 NETTLE_FAT_OVERRIDE=none ENVELOPE_EXPECT_PORTABLE_AES=1 \
  ENVELOPE_GCRYPT_DISABLE_HWF=intel-aesni,intel-pclmul,intel-vaes-vpclmul,intel-avx,intel-avx2,intel-ssse3 \
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
