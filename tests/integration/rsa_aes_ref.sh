#!/usr/bin/env bash
# rsa_aes_ref: the pure-OpenSSL reference for the CKM_RSA_AES_KEY_WRAP blob (RSA-OAEP of an
# ephemeral AES key || RFC 5649 AES-KWP of the payload) that the HSM-side composition is checked
# against: RFC 3394 / 5649 vectors, round trips, and refusal of damaged blobs and wrong keys.
# Usage: bash rsa_aes_ref.sh /abs/path/to/hsmsh   (the tool comes from $HSMSH_RSA_AES_REF)
set -u
NAME=rsa_aes_ref
# shellcheck source=common.bash
source "$(dirname "${BASH_SOURCE[0]}")/common.bash" "$@"
REF=${HSMSH_RSA_AES_REF:-}
if [ -z "$REF" ] || [ ! -x "$REF" ]; then
  echo "FAIL: HSMSH_RSA_AES_REF is unset or not executable ('$REF'); run through ctest," \
       "or export HSMSH_RSA_AES_REF=build/tests/rsa_aes_ref" >&2
  exit 1
fi
check() { local what=$1; shift; if "$@"; then pass; else fail "$what"; fi; }
show() { printf '%s' "$(head -c 300 "$1" | tr '\n' '|')"; }
hexof() { od -An -tx1 -v "$1" | tr -d ' \n'; }
size() { wc -c < "$1" | tr -d ' '; }
# r ARGS...: runs the tool; sets $rc, files out/err, and $cmd for messages.
r() { cmd="rsa_aes_ref $*"; "$REF" "$@" > out 2> err; rc=$?; }
# refused WHAT: the last run exited 1 with exactly one line on stderr.
refused() {
  if [ "$rc" -eq 1 ] && [ "$(grep -c . err)" -eq 1 ]; then pass
  else fail "$1: $cmd: exit $rc, expected 1 with a one-line error (stderr: $(show err))"; fi
}
# damage IN OUT OFFSET|-N: OUT is IN with bit 0 of byte OFFSET flipped, or IN without its last N bytes.
damage() {
  python3 -c 'import sys
b = bytearray(open(sys.argv[1], "rb").read()); n = int(sys.argv[3])
if n < 0: b = b[:n]
else: b[n] ^= 1
open(sys.argv[2], "wb").write(b)' "$@"
}

# ---- known answers ----
r selftest
check "selftest passes (exit $rc: $(show out) $(show err))" [ "$rc" -eq 0 ]
check "selftest reports 5 vectors ok ($(show out))" [ "$(grep -c '^ok ' out)" -eq 5 ]
r kwp 5840df6e29b02af1ab493b705bf16ea1ae8338f4dcc176a8 466f7250617369
check "kwp on the RFC 5649 7-octet vector (got '$(show out)')" \
  [ "$rc" -eq 0 ] && [ "$(cat out)" = afbeb0f07dfbf5419200f2ccb50bb24f ]

# ---- round trips: 16, 20, 24, 32 bytes and a DER PKCS#8 RSA private key, SHA-1 and SHA-256 ----
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out priv.pem 2> /dev/null
openssl pkey -in priv.pem -pubout -out pub.pem
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out other.pem 2> /dev/null
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out payload.pem 2> /dev/null
openssl pkcs8 -topk8 -nocrypt -in payload.pem -outform DER -out payload.der
pkcs8=$(hexof payload.der)
check "the PKCS#8 payload is a DER SEQUENCE of ~1.2 KB ($(size payload.der) bytes)" \
  [ "${pkcs8:0:4}" = 3082 ] && [ "$(size payload.der)" -gt 1200 ]
for hash in sha1 sha256; do
  for payload in "$(openssl rand -hex 16)" "$(openssl rand -hex 20)" "$(openssl rand -hex 24)" \
                 "$(openssl rand -hex 32)" "$pkcs8"; do
    n=$(( ${#payload} / 2 )); kwp=$(( (n + 7) / 8 * 8 + 8 ))
    r wrap pub.pem "$payload" blob "$hash"; wrc=$rc
    r unwrap priv.pem blob "$hash"
    check "$hash, $n-byte payload: wrap exit $wrc, unwrap exit $rc ($(show err)), blob $(size blob) bytes (expected 256 + $kwp), same payload back" \
      [ "$wrc" -eq 0 ] && [ "$rc" -eq 0 ] && [ "$(size blob)" -eq $((256 + kwp)) ] \
      && [ "$(cat out)" = "$payload" ]
  done
done

# ---- refusals: damaged blobs, wrong key, wrong hash, wrong ephemeral key size ----
r wrap pub.pem "$pkcs8" good sha256
check "wrap for the refusal checks (exit $rc)" [ "$rc" -eq 0 ]
damage good bad 10; r unwrap priv.pem bad sha256; refused "a flipped bit in the RSA part"
damage good bad 700; r unwrap priv.pem bad sha256; refused "a flipped bit in the KWP part"
damage good bad "$(( $(size good) - 1 ))"; r unwrap priv.pem bad sha256
refused "a flipped bit in the last byte"
damage good bad -1; r unwrap priv.pem bad sha256; refused "a blob one byte short"
damage good bad -8; r unwrap priv.pem bad sha256; refused "a blob one semiblock short"
damage good bad -$(( $(size good) - 100 )); r unwrap priv.pem bad sha256
refused "a blob shorter than the modulus"
r unwrap other.pem good sha256; refused "unwrap with another RSA key"
r unwrap priv.pem good sha1; refused "unwrap with the wrong OAEP hash"
r unwrap priv.pem good sha256 128; refused "unwrap expecting a 128-bit ephemeral key"
r unwrap priv.pem good sha256
check "the undamaged blob still unwraps (exit $rc)" [ "$rc" -eq 0 ]
check "to the same key" [ "$(cat out)" = "$pkcs8" ]

finish
