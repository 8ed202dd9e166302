#!/usr/bin/env bash
# canary: every recipe, run with a canary secret in every parameter that could carry one,
# never shows it: not on stdout or stderr, not in --json events, not in the journal, not in
# any file it writes. The secrets: the tokens' user PIN and SO PIN (each with a comma, given
# as pin-value in every URI, and as a literal where a pin-source is expected: the operator's
# mistake), key components and passphrases (given as literals by mistake, and properly as
# files), and the combined key. Each is looked for raw, as hex (both cases) and as base64.
# Usage: bash canary.sh /abs/path/to/hsmsh
set -u
NAME=canary
# shellcheck source=common.bash
source "$(dirname "${BASH_SOURCE[0]}")/common.bash" "$@"

tag=$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')
PIN="Pq7Zr,Xw9Tp-$tag"          # the comma is where a pattern-based filter used to stop
SO="Sk4Vb,Jm2Hc-$tag"
PASS="Passphrase-Lz8Nf-$tag"
C1=$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')
C2=$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')
KEY=$(python3 -c "import sys; a, b = bytes.fromhex(sys.argv[1]), bytes.fromhex(sys.argv[2]); print(bytes(x ^ y for x, y in zip(a, b)).hex())" "$C1" "$C2")
printf '%s\n' "$SO" > "$work/so"; printf '%s\n' "$PIN" > "$work/pin"
printf '%s\n' "$C1" > "$work/c1"; printf '%s\n' "$C2" > "$work/c2"
for i in 1 2 3; do printf '%s-%d\n' "$PASS" "$i" > "$work/p$i"; done

# scan.py FILE...: the secrets found in the files, in any of their forms: raw, hex (both
# cases) and base64 for the PINs and the passphrase (and the part of a PIN after its comma);
# hex, bytes and base64 for the components and the combined key (half of one is a leak too).
cat > scan.py <<'PY'
import base64, os, sys
pin, so, pw, *hexes = os.environ["CANARY_SECRETS"].split("\n")
needles = set()
for s in (pin, so, pw, pin.split(",")[1], so.split(",")[1]):
    b = s.encode()
    needles |= {b, b.hex().encode(), b.hex().upper().encode(), base64.b64encode(b).rstrip(b"=")}
for h in hexes:
    b = bytes.fromhex(h)
    needles |= {b, b[:16], h.encode(), h.upper().encode(), base64.b64encode(b).rstrip(b"=")}
found = set()
for path in sys.argv[1:]:
    try:
        data = open(path, "rb").read()
    except OSError:
        continue
    for n in needles:
        if n in data:
            found.add("%s in %s" % (n[:12], os.path.basename(path)))
print(" ".join(sorted(found)[:3]))
PY
export CANARY_SECRETS="$PIN
$SO
$PASS
$C1
$C2
$KEY"
leaks() { python3 scan.py "$@"; }

# The scanner finds what it must (else every pass below would mean nothing).
printf 'x %s y\n' "$(printf '%s' "$SO" | base64 | tr -d '=')" > control
check "the scanner finds the SO PIN as base64 in a control file" [ -n "$(leaks control)" ]
printf 'x%sy' "${PIN#*,}" > control
check "the scanner finds the part of the PIN after its comma" [ -n "$(leaks control)" ]

# Tokens blue and green with the canary PINs; blue holds a few extractable keys.
for t in blue green; do
  softhsm2-util --init-token --free --label "$t" --pin "$PIN" --so-pin "$SO" > /dev/null ||
    { fail "softhsm2-util --init-token $t"; finish; }
done
cat > fill.lua <<'LUA'
local hsm = require("hsm")
local s = hsm.token(os.getenv("CANARY_URI"))
assert(s:generate{type = "AES", bits = 256, label = "aes", id = "\1", CKA_EXTRACTABLE = true, CKA_ENCRYPT = true})
assert(s:generate{type = "RSA", bits = 2048, label = "rsa", id = "\2", CKA_EXTRACTABLE = true})
assert(s:generate{type = "EC", curve = "P-256", label = "ec", id = "\3", CKA_EXTRACTABLE = true})
LUA
CANARY_URI="pkcs11:token=blue?pin-source=file:$work/pin" "$HSMSH" fill.lua > out 2> err ||
  { fail "filling blue: $(show err)"; finish; }
BLUE="pkcs11:token=blue?pin-value=$PIN"
GREEN="pkcs11:token=green?pin-value=$PIN"

# Every recipe's parameters: id, name, type, required (1/0), enum values.
cat > meta.lua <<'LUA'
local recipe = require("hsm.recipe")
for _, r in ipairs(recipe.list()) do
  local rec = recipe.load(r)
  local names = {}
  for n in pairs(rec.params or {}) do names[#names + 1] = n end
  table.sort(names)
  for _, n in ipairs(names) do
    local p = rec.params[n]
    print(table.concat({rec.id, n, p.type or "string", p.required == false and "0" or
      (p.default ~= nil and "0" or "1"), table.concat(p.values or {}, "|")}, "\t"))
  end
end
LUA
"$HSMSH" meta.lua > meta.tsv 2> err || { fail "reading the recipes' parameters: $(show err)"; finish; }
check "the recipes' parameters were read ($(wc -l < meta.tsv) lines)" [ "$(wc -l < meta.tsv)" -gt 40 ]

# args RECIPE VARIANT SIDE: one name=value per line. Every URI carries the PIN; a pin-source
# or sources parameter gets the literal secret (variant literal) or files (variant files).
args() {
  local id=$1 variant=$2 side=$3 name type req values
  while IFS=$'\t' read -r rid name type req values; do
    [ "$rid" = "$id" ] || continue
    case $type in
      uri) [ "$name" = to ] || [ "$name" = backup ] && echo "$name=$GREEN" || echo "$name=$BLUE" ;;
      uris) echo "$name=$BLUE,$GREEN" ;;
      pin-source) if [ "$variant" = literal ]; then echo "$name=$SO"; else echo "$name=file:$work/so"; fi ;;
      sources)
        if [ "$name" = components ]; then
          if [ "$variant" = literal ]; then echo "$name=$C1,$C2"; else echo "$name=file:$work/c1,file:$work/c2"; fi
        elif [ "$variant" = literal ]; then echo "$name=$PASS-1,$PASS-2,$PASS-3"
        else echo "$name=file:$work/p1,file:$work/p2,file:$work/p3"; fi ;;
      enum) [ "$name" = side ] && echo "side=$side" || { [ "$req" = 1 ] && echo "$name=${values%%|*}"; } ;;
      integer) [ "$req" = 1 ] && echo "$name=2" ;;
      boolean) ;;
      *) case $name in
           dir|out|certs|shares|store) echo "$name=$work/run/$name" ;;
           file|image|container|smk|files|dest_cert|ca) echo "$name=$work/run/$name.out" ;;
           *) [ "$req" = 1 ] && echo "$name=canary-$name" ;;
         esac ;;
    esac
  done < meta.tsv
  [ "$(awk -F'\t' -v r="$id" '$1 == r && $2 == "n"' meta.tsv)" ] && echo "n=2"
  [ "$(awk -F'\t' -v r="$id" '$1 == r && $2 == "m"' meta.tsv)" ] && echo "m=3"
}

runs=0
for id in $(cut -f1 meta.tsv | sort -u); do
  # One output directory per recipe, kept across its sides: a restore reads what the backup
  # wrote.
  rm -rf "$work/run"; mkdir -p "$work/run"/{dir,out,certs,shares,store}
  sides=$(awk -F'\t' -v r="$id" '$1 == r && $2 == "side" {print $5}' meta.tsv | tr '|' ' ')
  for side in ${sides:-none}; do
    for variant in literal files; do
      for mode in --dry-run ""; do
        mapfile -t a < <(args "$id" "$variant" "$side")
        J=$work/run/journal; rm -f "$J"
        "$HSMSH" run "$id" "${a[@]}" $mode --yes --json --journal "$J" > run.out 2> run.err < /dev/null
        rc=$?
        runs=$((runs + 1))
        found=$(leaks run.out run.err "$J" $(find "$work/run" -type f) )
        what="$id side=$side $variant ${mode:-apply} (exit $rc)"
        check "$what shows no secret (found: $found)" [ -z "$found" ]
        check "$what: stderr has no traceback ($(show run.err))" eval '! grep -q "stack traceback" run.err'
        printf '%s\t%s\t%s\t%s\n' "$id" "$variant" "${mode:-apply}" "$rc" >> summary.tsv
      done
    done
  done
done
check "every recipe ran ($runs runs)" [ "$runs" -ge 60 ]
# The sweep reached the tokens: with the comma PIN as pin-value, the inventory and a real
# migration succeed (so the PIN was parsed whole, not cut at its comma).
for r in "generic/inventory files apply" "generic/migrate files apply"; do
  set -- $r
  got=$(awk -F'\t' -v i="$1" -v v="$2" -v m="$3" '$1 == i && $2 == v && $3 == m {print $4}' summary.tsv)
  check "$r exits 0 with the comma PIN (got ${got:-none})" [ "$got" = 0 ]
done
finish
