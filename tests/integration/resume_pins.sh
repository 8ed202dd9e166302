#!/usr/bin/env bash
# Resume in batch (issue 14, Deliver 5): a run started with pin-value= keeps no PIN in its
# journal, so a resume without a terminal must be given each token's PIN again: the same
# URI with its PIN, or NAME.pin-source=SOURCE. Anything else is refused before anything runs,
# and the PIN never enters the journal.
NAME=resume_pins
here=$(cd "$(dirname "$0")" && pwd)
. "$here/common.bash"
PIN=73915846
for t in rsrc rdst rother; do
  softhsm2-util --init-token --free --label $t --pin $PIN --so-pin 12345678 > /dev/null
done
SRC="pkcs11:token=rsrc?pin-value=$PIN" DST="pkcs11:token=rdst?pin-value=$PIN"
h -e "local s = require('hsm').token('$SRC')
      assert(s:generate{type = 'AES', bits = 256, label = 'k1', id = '\1', CKA_EXTRACTABLE = true})
      assert(s:generate{type = 'AES', bits = 128, label = 'k2', id = '\2', CKA_EXTRACTABLE = true})"
rc_is 0
J=$work/journal
h run generic/migrate from="$SRC" to="$DST" --journal "$J" --yes; rc_is 0
check "the journal holds no PIN" bash -c "! grep -q -e '$PIN' -e pin-value '$J'"

# No terminal, no PIN: the resume cannot log in, and says so.
h resume "$J" --yes; rc_is 1
has err "PIN"
# The same URIs again, with their PINs.
h resume "$J" from="$SRC" to="$DST" --yes; rc_is 0
has err "0 migrated, 2 skipped"
# A pin-source per token.
printf '%s' "$PIN" > "$work/pin"
h resume "$J" from.pin-source="file:$work/pin" to.pin-source="file:$work/pin" --yes; rc_is 0
has err "0 migrated, 2 skipped"
check "still no PIN in the journal" bash -c "! grep -q -e '$PIN' -e pin-value '$J'"
# Refused, before anything runs: another token, a parameter that is not a token's, no URI.
h resume "$J" from="pkcs11:token=rother?pin-value=$PIN" to="$DST"; rc_is 2
has err "from names pkcs11:token=rother, the journal's run pkcs11:token=rsrc"
lacks err "$PIN"
h resume "$J" filter=label=k1; rc_is 2
has err "filter is not a token URI parameter of generic/migrate"
h resume "$J" from.pin-source=; rc_is 2
has err "from.pin-source is empty"
h resume "$J" nope.pin-source="file:$work/pin"; rc_is 2
has err "nope is not a token URI parameter"

# A run started with pin-source= journals that source (a path, not the PIN); the PIN file
# has moved since (the run's disk filled up, say): NAME.pin-source= names the new one and
# takes its place, wherever it stood in the URI.
printf '%s' "$PIN" > "$work/pin-old"
J2=$work/journal2
h run generic/migrate from="pkcs11:token=rsrc?pin-source=file:$work/pin-old" \
  to="pkcs11:token=rdst?pin-source=file:$work/pin-old&module-path=$MODULE" --journal "$J2" --yes
rc_is 0
mv "$work/pin-old" "$work/pin-new"
h resume "$J2" --yes; rc_is 1; has err "pin-old"
h resume "$J2" from.pin-source="file:$work/pin-new" to.pin-source="file:$work/pin-new" --yes; rc_is 0
has err "0 migrated, 2 skipped"
finish
