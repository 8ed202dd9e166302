#!/usr/bin/env bash
# custodians: the ProtectServer custodian schemes end to end on the lab token: N of M (any 2 of
# 3 shares restore, 1 does not; a duplicate, a share of another set or an altered share is
# refused naming it), M of M with passphrase-protected shares, and the single custodian whose
# wrapping key carries the archive key. Every refusal leaves the destination empty; every
# share file bit flip and truncation is refused.
# Usage: bash custodians.sh /abs/path/to/hsmsh
set -u
NAME=custodians
# shellcheck source=common.bash
source "$(dirname "${BASH_SOURCE[0]}")/common.bash" "$@"

"$HSMSH" lab init > /dev/null 2>&1
printf '1234' > "$work/pin"
BLUE="pkcs11:token=blue?pin-source=file:$work/pin"
n_tok=0
fresh() {  # a new empty token; sets $T
  n_tok=$((n_tok + 1))
  softhsm2-util --init-token --free --label "r$n_tok" --pin 1234 --so-pin 12345678 > /dev/null
  T="pkcs11:token=r$n_tok?pin-source=file:$work/pin"
}
objects() {  # objects URI: how many objects the token holds
  "$HSMSH" -e "print(#assert(require('hsm').token('$1'):find_all({})))" 2>/dev/null
}
summary() { python3 -c 'import json
s=[json.loads(l) for l in open("out") if l.startswith("{")][-1]
print("%s/%s/%s/%s" % (s.get("migrated"), s.get("skipped"), s.get("blocked"), s.get("failed")))'; }

# ---- N of M ----
mkdir -p "$work/nofm"
h run protectserver/backup-n-of-m side=backup token="$BLUE" file="$work/n.arc" shares="$work/nofm" n=3 m=3; rc_is 1
has err "N of M needs 2 <= n < m and m >= 3"
h run protectserver/backup-n-of-m side=backup token="$BLUE" file="$work/n.arc" shares="$work/nofm" n=2 m=3; rc_is 0
has err "wrote $work/nofm/share-3 (share 3 of 3)"
check "three share files, mode 0600" [ "$(stat -c %a "$work"/nofm/share-* | sort -u)" = "600" ]
for pair in 1,2 1,3 2,3; do
  fresh
  a=${pair%,*} b=${pair#*,}
  h run protectserver/backup-n-of-m side=restore token="$T" file="$work/n.arc" \
    shares="$work/nofm/share-$a,$work/nofm/share-$b" --json; rc_is 0
  check "shares $pair restore 22 objects: $(summary)" [ "$(summary)" = "22/0/3/0" ]
done
fresh
h run protectserver/backup-n-of-m side=restore token="$T" file="$work/n.arc" shares="$work/nofm/share-2"; rc_is 1
has err "1 share"; check "one share writes nothing" [ "$(objects "$T")" -eq 0 ]
h run protectserver/backup-n-of-m side=restore token="$T" file="$work/n.arc" shares="$work/nofm/share-2,$work/nofm/share-2"; rc_is 1
has err "share index 2 given twice"
cp "$work/nofm/share-1" "$work/altered"
python3 -c 'import sys; p=sys.argv[1]; b=bytearray(open(p,"rb").read()); b[60]^=0x55; open(p,"wb").write(b)' "$work/altered"
h run protectserver/backup-n-of-m side=restore token="$T" file="$work/n.arc" shares="$work/altered,$work/nofm/share-2"; rc_is 1
has err "$work/altered: share file: altered"
mkdir -p "$work/other"
h run protectserver/backup-n-of-m side=backup token="$BLUE" file="$work/o.arc" shares="$work/other" n=2 m=3; rc_is 0
h run protectserver/backup-n-of-m side=restore token="$T" file="$work/n.arc" shares="$work/other/share-1,$work/nofm/share-2"; rc_is 1
has err "is share 1 of another share set"
h run protectserver/backup-file side=restore token="$T" file="$work/n.arc" components=file:/dev/null --yes; rc_is 1
has err "held by scheme shamir"
check "refused restores wrote nothing" [ "$(objects "$T")" -eq 0 ]
h run protectserver/backup-n-of-m side=backup token="$BLUE" file="$work/n2.arc" shares="$work/nofm" n=2 m=3; rc_is 1
has err "share-1"; check "existing share files are never overwritten" [ ! -e "$work/n2.arc" ]

# Every bit flip and every truncation of a share file is refused.
good=$(od -An -v -tx1 "$work/nofm/share-1" | tr -d ' \n')
len=$(( ${#good} / 2 ))
bad_ok=0 total=0
"$HSMSH" -e "
local core = require('hsm.core')
local f = assert(io.open('$work/nofm/share-1', 'rb')); local good = f:read('a'); f:close()
local refused, total = 0, 0
for i = 1, #good do for bit = 0, 7 do
  total = total + 1
  local bad = good:sub(1, i - 1) .. string.char(good:byte(i) ~ (1 << bit)) .. good:sub(i + 1)
  if not core.share_decode(bad) then refused = refused + 1 end
end end
for l = 0, #good - 1 do total = total + 1; if not core.share_decode(good:sub(1, l)) then refused = refused + 1 end end
print(refused, total)" > "$work/flips"
read -r bad_ok total < "$work/flips"
check "all $total bit flips and truncations of a share file refused ($bad_ok)" [ "$bad_ok" = "$total" ] 
check "that is $len bytes x 9" [ "$total" -eq $((len * 9)) ]

# ---- M of M with passphrases ----
mkdir -p "$work/mofm"
printf 'alpha' > "$work/p1"; printf 'bravo' > "$work/p2"
h run protectserver/backup-multi-custodian side=backup token="$BLUE" file="$work/m.arc" shares="$work/mofm" m=2 \
  passphrases="file:$work/p1,file:$work/p2"; rc_is 0
has err "passphrase-protected"
fresh
h run protectserver/backup-multi-custodian side=restore token="$T" file="$work/m.arc" shares="$work/mofm/share-1"; rc_is 1
has err "passphrase-protected: give its passphrase"
h run protectserver/backup-multi-custodian side=restore token="$T" file="$work/m.arc" \
  shares="$work/mofm/share-1,$work/mofm/share-2" passphrases="file:$work/p1,file:$work/p1"; rc_is 1
has err "share 2: wrong passphrase"
h run protectserver/backup-multi-custodian side=restore token="$T" file="$work/m.arc" \
  shares="$work/mofm/share-1,$work/mofm/share-2" passphrases="file:$work/p1,file:$work/p2" --json; rc_is 0
check "M of M restores: $(summary)" [ "$(summary)" = "22/0/3/0" ]
lacks err alpha; lacks out alpha

# ---- single custodian ----
printf '0832240A34365AEB8273A6535EF80FA99CB5FCE8D2A19EE1977CB8D664F86968\n' > "$work/c1"
printf '263FF91EE9C7A5ECC58AFFA35B4F6A5443F0DA3B5ABE60FB45260AEA8C9458F7\n' > "$work/c2"
h run protectserver/backup-single-custodian side=backup token="$BLUE" file="$work/s.arc" \
  components="file:$work/c1,file:$work/c2" --yes; rc_is 0
fresh
h run protectserver/backup-single-custodian side=restore token="$T" file="$work/s.arc" \
  components="file:$work/c1" --yes; rc_is 1
has err "does not unwrap the archive key"
check "the wrong custodian key wrote nothing" [ "$(objects "$T")" -eq 0 ]
h run protectserver/backup-single-custodian side=restore token="$T" file="$work/s.arc" \
  components="file:$work/c1,file:$work/c2" kcvs=9c1884,62a639 --json; rc_is 0
check "single custodian restores: $(summary)" [ "$(summary)" = "22/0/3/0" ]

finish
