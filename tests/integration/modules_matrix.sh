#!/usr/bin/env bash
# modules_matrix (issue 11, Deliver 8): inventory, generic/migrate (dry run, real run, re-run)
# and protectserver/backup-file (backup, restore) across every ordered pair of the four
# modules (SoftHSM2, NSS softokn, openCryptoki, tpm2-pkcs11), plus SoftHSM2 -> SoftHSM2 with
# both URIs through p11-kit-proxy. Each cell must end with every object migrated or
# blocked-with-reason and 0 failed; every migrated or restored object is confirmed with the
# destination module's own tools (pkcs11-tool, certutil/symkeyutil, tpm2_ptool) and, for
# keys, by using it (AES-CBC decrypt of what the source encrypted, the HMAC the source made,
# an RSA/ECDSA signature verified by openssl with the source's public key).
#
# Source sets are made with the modules' own tools, never with hsmsh:
#   softhsm2      pkcs11-tool (its own token directory, SOFTHSM2_CONF from common.bash)
#   nss           a database of its own ($work/nss, certutil -N), pkcs11-tool through
#                 tests/modules/nss_init_shim.c (pkcs11-tool cannot pass C_Initialize
#                 arguments), the certificate with certutil -A
#   opencryptoki  pkcs11-tool on the shared soft token (slot 3): every object is labelled
#                 with this run's prefix, only those are counted and removed (trap)
#   tpm2          a store of its own ($work/tpm2, transient ECC primary: no persistent
#                 handle is used up), keys and certificate with tpm2_ptool, data with pkcs11-tool
# Every migrate/backup run is filtered to this run's prefix (filter=label=PREFIX-*), so
# objects of others on the shared openCryptoki token are never read into a cell.
#
# The table (one line per cell) goes to stdout, $work/matrix.txt and $HSMSH_MATRIX_OUT.
# HSMSH_DEEPBIND=0 (tests/CMakeLists.txt: sanitizer builds) makes openCryptoki -> tpm2 the
# control that must fail without RTLD_DEEPBIND.
# Usage: HSMSH_MODULES_ENV=build/modules/env bash modules_matrix.sh /abs/path/to/hsmsh
set -u
NAME=modules_matrix
here=$(cd "$(dirname "$0")" && pwd)
. "$here/common.bash"
. "$here/../modules/common.bash"

T0=$SECONDS
P=mx$$                                   # this run's label prefix
TAG=$(printf '%04x' $(( $$ % 65536 )))   # and ID prefix
PIN=123456                               # SoftHSM2 and tpm2 tokens of this run
TO=180                                   # seconds any one command may take
MATRIX=$work/matrix.txt
NSSDB=$work/nss
declare -A MADE ABSENT                  # per set: items made / items the module cannot hold

# ---------------------------------------------------------------- helpers
# msg FILE: the last two meaningful lines of a tool's stderr, on one line
msg() {
  grep -v -e '^\s*$' -e '^Using .* algorithm' -e '^warning: PKCS11 function C_GetAttributeValue' "$1" 2>/dev/null |
    tail -n 2 | tr '\n' ' ' | cut -c1-400 | grep . || echo "(nothing on stderr)"
}

# hx NAME ARGS...: hsmsh with a timeout; NAME.out, NAME.err, $rc
hx() {
  local o=$1; shift
  timeout "$TO" "$HSMSH" "$@" > "$o.out" 2> "$o.err" < /dev/null
  rc=$?
}

# p11 MOD ARGS...: pkcs11-tool logged in to MOD's token (the module's own library)
p11() {
  local m=$1; shift
  local -a a
  case $m in
    shm|pshm) a=(--module "$MODULE" --token-label "$P-shm" --pin "$PIN") ;;
    shm2|pshm2) a=(--module "$MODULE" --token-label "$P-dst" --pin "$PIN") ;;
    nss) a=(--module "$work/nss-shim.so" --token-label "NSS Certificate DB" --pin "$HSMSH_NSS_PIN") ;;
    ock) a=(--module "$HSMSH_OCK_MODULE" --slot "$HSMSH_OCK_SLOT" --pin "$HSMSH_OCK_PIN") ;;
    tpm2) a=(--module "$HSMSH_TPM2_MODULE" --token-label "$P-tpm2" --pin "$PIN") ;;
  esac
  timeout 60 pkcs11-tool "${a[@]}" --login "$@"
}

uri() {  # uri MOD: the hsmsh URI of MOD's token
  case $1 in
    shm) echo "pkcs11:token=$P-shm?module-path=$MODULE&pin-value=$PIN" ;;
    shm2) echo "pkcs11:token=$P-dst?module-path=$MODULE&pin-value=$PIN" ;;
    pshm) echo "pkcs11:token=$P-shm?module-path=$HSMSH_P11KIT_PROXY&pin-value=$PIN" ;;
    pshm2) echo "pkcs11:token=$P-dst?module-path=$HSMSH_P11KIT_PROXY&pin-value=$PIN" ;;
    nss) echo "pkcs11:token=NSS%20Certificate%20DB?module-path=$HSMSH_NSS_MODULE&x-init-reserved=$MY_NSS_Q&pin-value=$HSMSH_NSS_PIN" ;;
    ock) echo "$OCK_URI" ;;
    tpm2) echo "pkcs11:token=$P-tpm2?module-path=$HSMSH_TPM2_MODULE&pin-value=$PIN" ;;
  esac
}
display() {
  case $1 in
    shm|shm2) echo softhsm2 ;; pshm|pshm2) echo "softhsm2(p11-kit)" ;; nss) echo nss ;;
    ock) echo opencryptoki ;; tpm2) echo tpm2 ;;
  esac
}
set_of() { case $1 in pshm) echo shm ;; pshm2) echo shm2 ;; *) echo "$1" ;; esac; }

# listing MOD FILE: MOD's objects as "class|label|id" lines (status: pkcs11-tool's)
listing() {
  local out st
  out=$(p11 "$1" --list-objects 2> "$work/listing.err"); st=$?
  [ "$st" -eq 0 ] || { echo "pkcs11-tool --list-objects on $1 failed: $(msg "$work/listing.err")" > "$2.why"; return 1; }
  python3 "$work/mx.py" listing <<< "$out" > "$2"
}
# count MOD PREFIX: how many of MOD's objects have a label starting with PREFIX (all when
# empty); a failed listing prints a word no comparison accepts
count() {
  if listing "$1" "$work/count.lst"; then
    awk -F'|' -v p="$2" 'index($2, p) == 1 { n++ } END { print n + 0 }' "$work/count.lst"
  else
    echo "pkcs11-tool-failed-$RANDOM"
  fi
}

# ---------------------------------------------------------------- the JSON events
cat > "$work/mx.py" <<'EOF'
import json, sys
from collections import Counter
SEP = "\x1f"   # the shell reads the fields with IFS=$'\x1f' (empty fields kept)

def events(path):
    out = []
    try:
        for line in open(path, errors="replace"):
            line = line.strip()
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
    except OSError:
        pass
    return out

CLASSES = {"Secret Key Object": "secret-key", "Private Key Object": "private-key",
           "Public Key Object": "public-key", "Certificate Object": "certificate",
           "Data object": "data"}

def listing():
    """pkcs11-tool --list-objects on stdin -> class|label|id"""
    rows, cur = [], None
    for line in sys.stdin:
        line = line.rstrip("\n")
        if line and not line[0].isspace():
            cur = None
            for head, cls in CLASSES.items():
                if line.startswith(head):
                    cur = {"class": cls, "label": "", "id": ""}
                    rows.append(cur)
        elif cur is not None:
            s = line.strip()
            if s.startswith("label:"):
                v = s[len("label:"):].strip()
                if cur["class"] == "data" and len(v) >= 2 and v[0] == v[-1] == "'":
                    v = v[1:-1]
                cur["label"] = v
            elif s.startswith("ID:"):
                cur["id"] = s[3:].strip().lower()
    for r in rows:
        print("%s|%s|%s" % (r["class"], r["label"], r["id"]))

def inventory(path, prefix):
    """the inventory's objects whose label starts with prefix -> class|label|id"""
    for e in events(path):
        if e.get("event") == "object" and str(e.get("label", "")).startswith(prefix):
            print("%s|%s|%s" % (e.get("class"), e.get("label"), e.get("id", "")))

def short(r, n=160):
    r = " ".join(str(r).split())
    return r if len(r) <= n else r[:n - 3] + "..."

def run(path, expected, outdir):
    """the key events and summary of a migrate/restore run. Writes outdir/migrated
    (class|label|id) and prints: summary(0/1) migrated skipped blocked failed, then
    'unreasoned', 'unreported', blocked reasons and failed reasons, tab-separated"""
    evs = events(path)
    keys = [e for e in evs if e.get("event") == "key"]
    sums = [e for e in evs if e.get("event") == "summary"]
    with open(outdir + "/migrated", "w") as f:
        for e in keys:
            if e.get("status") == "migrated":
                f.write("%s|%s|%s\n" % (e.get("class"), e.get("label"), e.get("id", "")))
    reported = set("%s|%s|%s" % (e.get("class"), e.get("label"), e.get("id", "")) for e in keys)
    unreported = []
    if expected:
        for line in open(expected):
            line = line.strip()
            if line and line not in reported:
                unreported.append(line)
    unreasoned = [e.get("label", "?") for e in keys
                  if e.get("status") in ("blocked", "failed") and not e.get("reason")]
    blocked = Counter(short(e.get("reason", "")) for e in keys if e.get("status") == "blocked")
    failed = ["%s/%s: %s" % (e.get("class"), e.get("label"), short(e.get("reason", ""), 240))
              for e in keys if e.get("status") == "failed"]
    s = sums[-1] if sums else {}
    print(SEP.join([
        "1" if sums else "0",
        str(s.get("migrated", "-")), str(s.get("skipped", "-")), str(s.get("blocked", "-")),
        str(s.get("failed", "-")),
        ",".join(unreasoned), ",".join(unreported),
        "; ".join("%dx %s" % (n, r) for r, n in sorted(blocked.items())),
        "; ".join(failed)]))

def plan(path):
    """a dry run's plan rows: prints rows, blocked rows, blocked rows without a reason"""
    rows = [e for e in events(path) if e.get("event") == "plan"]
    blocked = [e for e in rows if e.get("strategy") == "blocked"]
    print("%d %d %d" % (len(rows), len(blocked), len([e for e in blocked if not e.get("reason")])))

def backup(path):
    """the backup side: summary(0/1) objects keys blocked, blocked objects without a reason,
    the blocked reasons"""
    evs = events(path)
    objs = [e for e in evs if e.get("event") == "object"]
    sums = [e for e in evs if e.get("event") == "summary"]
    s = sums[-1] if sums else {}
    unreasoned = [e.get("ref", "?") for e in objs if e.get("status") == "blocked" and not e.get("reason")]
    blocked = Counter(short(e.get("reason", "")) for e in objs if e.get("status") == "blocked")
    print(SEP.join(["1" if sums else "0", str(s.get("objects", "-")), str(s.get("keys", "-")),
                     str(s.get("blocked", "-")), ",".join(unreasoned),
                     "; ".join("%dx %s" % (n, r) for r, n in sorted(blocked.items()))]))

cmd = sys.argv[1]
if cmd == "listing": listing()
elif cmd == "inventory": inventory(sys.argv[2], sys.argv[3])
elif cmd == "run": run(sys.argv[2], sys.argv[3], sys.argv[4])
elif cmd == "plan": plan(sys.argv[2])
elif cmd == "backup": backup(sys.argv[2])
EOF

# ---------------------------------------------------------------- clean-up
# del_prefix MOD PREFIX: destroys MOD's objects whose label starts with PREFIX (only this
# run's); prints how many are left (a failed listing: a word no comparison accepts)
del_prefix() {
  local m=$1 pre=$2 cls label id type n
  case $pre in "$P-"*) ;; *) echo "refusing-prefix-'$pre'"; return ;; esac
  listing "$m" "$work/del.lst" || { echo "pkcs11-tool-failed-$RANDOM"; return; }
  while IFS='|' read -r cls label id; do
    case $label in "$pre"*) ;; *) continue ;; esac
    case $cls in secret-key) type=secrkey ;; private-key) type=privkey ;; public-key) type=pubkey ;;
                 certificate) type=cert ;; data) type=data ;; *) continue ;; esac
    if [ -n "$id" ]; then
      p11 "$m" --delete-object --type "$type" --label "$label" --id "$id" > /dev/null 2>&1
    else
      p11 "$m" --delete-object --type "$type" --label "$label" > /dev/null 2>&1
    fi
    # NSS: a certificate pkcs11-tool could not destroy goes by its nickname
    if [ "$m" = nss ] && [ "$type" = cert ]; then
      certutil -D -d "sql:$NSSDB" -n "$label" > /dev/null 2>&1
    fi
  done < "$work/del.lst"
  n=$(count "$m" "$pre")
  echo "$n"
}
cleanup() {
  # Only this run's objects on the shared openCryptoki token.
  if [ -n "${OCK_READY:-}" ]; then
    local left; left=$(del_prefix ock "$P-")
    [ "$left" = 0 ] || echo "WARNING: $left object(s) labelled $P-* left on the openCryptoki token"
  fi
  if [ -n "${HSMSH_MATRIX_KEEP:-}" ]; then echo "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- the modules
# SoftHSM2: the source token and the proxy cell's destination. pkcs11-tool --token-label
# matches a prefix of the label (OpenSC 0.23), so neither label starts with the other.
setup_softhsm2() {
  local t ok=0
  for t in shm dst; do
    softhsm2-util --init-token --free --label "$P-$t" --so-pin 12345678 --pin "$PIN" > "$work/shm.log" 2>&1 \
      || { fail "softhsm2-util --init-token $P-$t: $(msg "$work/shm.log")"; ok=1; }
  done
  return $ok
}

setup_nss() {
  mkdir -p "$NSSDB"
  printf '%s\n' "$HSMSH_NSS_PIN" > "$work/nss.pw"
  certutil -N -d "sql:$NSSDB" -f "$work/nss.pw" > "$work/nss.log" 2>&1 \
    || { fail "certutil -N -d sql:$NSSDB: $(msg "$work/nss.log")"; return 1; }
  MY_NSS_INIT="configdir='sql:$NSSDB' certPrefix='' keyPrefix='' secmod='secmod.db' flags="
  MY_NSS_Q=$(MY_NSS_INIT=$MY_NSS_INIT python3 -c 'import os, urllib.parse; print(urllib.parse.quote(os.environ["MY_NSS_INIT"], safe=""))')
  export NSS_SHIM_INIT=$MY_NSS_INIT NSS_SHIM_MODULE=$HSMSH_NSS_MODULE
  cc -shared -fPIC -I/usr/include/p11-kit-1 -o "$work/nss-shim.so" "$here/../modules/nss_init_shim.c" -ldl \
    > "$work/nss.log" 2>&1 || { fail "building tests/modules/nss_init_shim.c: $(msg "$work/nss.log")"; return 1; }
  p11 nss --list-objects > "$work/nss.log" 2>&1 \
    || { fail "pkcs11-tool on the run's NSS database: $(msg "$work/nss.log")"; return 1; }
}

setup_ock() {
  p11 ock --list-objects > "$work/ock.log" 2>&1 \
    || { fail "pkcs11-tool on openCryptoki slot $HSMSH_OCK_SLOT: $(msg "$work/ock.log")"; return 1; }
  OCK_READY=1
}

# p11-kit-proxy: the SoftHSM2 package registers the module (/usr/share/p11-kit/modules/
# softhsm2.module, read also as root); the proxy must show both SoftHSM2 tokens of the run.
setup_proxy() {
  timeout 60 pkcs11-tool --module "$HSMSH_P11KIT_PROXY" --list-token-slots > "$work/proxy.log" 2>&1
  if grep -q "token label *: $P-shm\$" "$work/proxy.log" && grep -q "token label *: $P-dst\$" "$work/proxy.log"; then
    return 0
  fi
  fail "p11-kit-proxy does not show the SoftHSM2 tokens $P-shm and $P-dst (is SoftHSM2 registered with p11-kit?): $(msg "$work/proxy.log")"
  return 1
}

setup_tpm2() {
  mkdir -p "$work/tpm2"
  export TPM2_PKCS11_STORE=$work/tpm2
  { tpm2_ptool init --transient-parent tpm2-tools-ecc-default --path "$work/tpm2" &&
    tpm2_ptool addtoken --pid=1 --label="$P-tpm2" --sopin=12345678 --userpin="$PIN" --path "$work/tpm2"; } \
    > "$work/tpm2.log" 2>&1 || { fail "tpm2_ptool init/addtoken in $work/tpm2: $(msg "$work/tpm2.log")"; return 1; }
}

# ---------------------------------------------------------------- the source sets
# mk SET ITEM COMMAND...: makes one object of SET's source set; what the module cannot make
# (listed in ABSENT[SET] with the module's error) is recorded, anything else failing fails
declare -A CANNOT=([nss]="data" [ock]="ec")   # measured: see the notes printed with the table
mk() {
  local set=$1 item=$2; shift 2
  if "$@" > "$work/mk.log" 2>&1; then
    MADE[$set]="${MADE[$set]:-} $item"
  elif [[ " ${CANNOT[$set]:-} " == *" $item "* ]]; then
    local why; why=$(grep -o 'CKR_[A-Z_]*' "$work/mk.log" | head -n1)
    ABSENT[$set]="${ABSENT[$set]:-}$item (${why:-$(msg "$work/mk.log")}); "
  else
    fail "source set $set: cannot make $item: $* : $(msg "$work/mk.log")"
  fi
}

make_sources() {  # make_sources SET
  local s=$1 m=$1 L
  local mb; case $s in shm) mb=01 ;; nss) mb=02 ;; ock) mb=03 ;; tpm2) mb=04 ;; esac
  mkdir -p "$work/src"
  if ! { openssl req -x509 -newkey rsa:2048 -nodes -keyout "$work/src/$s-cert.key" -out "$work/src/$s-cert.pem" \
           -subj "/CN=$P-$s-cert" -days 30 &&
         openssl x509 -in "$work/src/$s-cert.pem" -outform DER -out "$work/src/$s-cert.der"; } > "$work/mk.log" 2>&1; then
    fail "openssl req -x509 for $s: $(msg "$work/mk.log")"; return 1
  fi
  printf 'data object of %s, run %s\n' "$s" "$P" > "$work/src/$s-data.bin"
  mkid() { printf '%s%s%02x' "$TAG" "$mb" "$1"; }
  L=$P-$s
  case $s in
    shm|nss|ock)
      mk "$s" aes  p11 "$m" --keygen --key-type AES:32 --label "$L-aes" --id "$(mkid 1)" --extractable
      # without --usage-sign NSS refuses C_SignInit (CKR_KEY_TYPE_INCONSISTENT)
      mk "$s" hmac p11 "$m" --keygen --key-type GENERIC:32 --label "$L-hmac" --id "$(mkid 2)" --extractable --usage-sign
      mk "$s" rsa  p11 "$m" --keypairgen --key-type rsa:2048 --label "$L-rsa" --id "$(mkid 3)" --extractable
      mk "$s" ec   p11 "$m" --keypairgen --key-type EC:prime256v1 --label "$L-ec" --id "$(mkid 4)" --extractable
      if [ "$s" = nss ]; then
        mk "$s" cert timeout 60 certutil -A -d "sql:$NSSDB" -f "$work/nss.pw" -n "$L-cert" -t ,, -i "$work/src/$s-cert.pem"
      else
        mk "$s" cert p11 "$m" --write-object "$work/src/$s-cert.der" --type cert --label "$L-cert" --id "$(mkid 5)"
      fi
      mk "$s" data p11 "$m" --write-object "$work/src/$s-data.bin" --type data --label "$L-data" --private
      ;;
    tpm2)
      # tpm2_ptool --id takes the string as the ID's bytes (ASCII), not hex
      local T=(timeout 120 tpm2_ptool addkey --label "$P-tpm2" --userpin "$PIN" --path "$work/tpm2")
      mk "$s" aes  "${T[@]}" --key-label "$L-aes" --id "$(mkid 1)" --algorithm aes256
      mk "$s" hmac "${T[@]}" --key-label "$L-hmac" --id "$(mkid 2)" --algorithm hmac:sha256
      mk "$s" rsa  "${T[@]}" --key-label "$L-rsa" --id "$(mkid 3)" --algorithm rsa2048
      mk "$s" ec   "${T[@]}" --key-label "$L-ec" --id "$(mkid 4)" --algorithm ecc256
      # addcert gives the certificate the label and ID of the key named (it checks no match)
      mk "$s" cert timeout 60 tpm2_ptool addcert --label "$P-tpm2" --key-label "$L-rsa" --path "$work/tpm2" "$work/src/$s-cert.pem"
      # tpm2-pkcs11 refuses a public CKO_DATA (CKR_ATTRIBUTE_VALUE_INVALID): --private
      mk "$s" data p11 "$m" --write-object "$work/src/$s-data.bin" --type data --label "$L-data" --private
      ;;
  esac
  # The set as the module lists it.
  if listing "$m" "$work/src/$s.lst"; then
    grep -F "|$L-" "$work/src/$s.lst" > "$work/src/$s.own" || true
    pass
  else
    fail "$(cat "$work/src/$s.lst.why")"
    return 1
  fi
  # What the cells check migrated keys against, made on the source by the source's tool
  # (pkcs11-tool finds the key of --encrypt and --sign by --id only: without it, any key).
  printf 'attack at dawn!!' > "$work/src/pt"
  printf 'message signed by the matrix\n' > "$work/src/msg"
  openssl dgst -sha256 -binary "$work/src/msg" > "$work/src/msg.sha256"
  { printf '\x30\x31\x30\x0d\x06\x09\x60\x86\x48\x01\x65\x03\x04\x02\x01\x05\x00\x04\x20'
    cat "$work/src/msg.sha256"; } > "$work/src/msg.digestinfo"
  local k id
  for k in ${MADE[$s]:-}; do
    id=$(awk -F'|' -v l="$L-$k" '$2 == l && ($1 == "secret-key" || $1 == "public-key") { print $3; exit }' "$work/src/$s.own")
    case $k in
      rsa|ec)
        p11 "$m" --read-object --type pubkey --id "$id" -o "$work/src/$s-$k.pub.der" > "$work/mk.log" 2>&1 &&
          openssl pkey -pubin -inform DER -in "$work/src/$s-$k.pub.der" -out "$work/src/$s-$k.pub.pem" 2>> "$work/mk.log" ||
          fail "source set $s: reading the $k public key with pkcs11-tool: $(msg "$work/mk.log")" ;;
      aes)
        [ "$s" = tpm2 ] && continue   # not extractable: never migrates, nothing to compare
        p11 "$m" --encrypt -m AES-CBC --iv 000102030405060708090a0b0c0d0e0f --id "$id" \
          --input-file "$work/src/pt" --output-file "$work/src/$s-aes.ct" > "$work/mk.log" 2>&1 ||
          fail "source set $s: pkcs11-tool AES-CBC encrypt: $(msg "$work/mk.log")" ;;
      hmac)
        [ "$s" = tpm2 ] && continue
        p11 "$m" --sign -m SHA256-HMAC --id "$id" --input-file "$work/src/msg" \
          --output-file "$work/src/$s-hmac.mac" > "$work/mk.log" 2>&1 ||
          fail "source set $s: pkcs11-tool SHA256-HMAC sign: $(msg "$work/mk.log")" ;;
    esac
  done
}

# ---------------------------------------------------------------- one cell's steps
cell_fail() { CF+=("$*"); echo "  FAIL [$CELL] $*"; }

step_inventory() {  # a. the source's inventory lists its set
  local src=$1 set; set=$(set_of "$1")
  hx "$cdir/inv" run generic/inventory token="$(uri "$src")" --json
  if [ "$rc" -ne 0 ]; then cell_fail "inventory: exit $rc: $(msg "$cdir/inv.err")"; return; fi
  local n; n=$(grep -c '"event":"object"' "$cdir/inv.out")
  python3 "$work/mx.py" inventory "$cdir/inv.out" "$P-$set-" | sort > "$cdir/src.objs"
  local row miss=""
  while IFS= read -r row; do
    grep -qxF "$row" "$cdir/src.objs" || miss="$miss $row"
  done < <(sort "$work/src/$set.own")
  [ -z "$miss" ] || cell_fail "inventory (of $n objects; stderr: $(msg "$cdir/inv.err")) lacks what pkcs11-tool lists:$miss"
  [ -s "$cdir/src.objs" ] || cell_fail "inventory: no object of the source set"
}

dst_count() {  # what a dry run must not change: every object of a token of this run, this
               # run's objects on the shared openCryptoki token
  case $1 in ock) count ock "$P-" ;; *) count "$1" "" ;; esac
}

step_dry_run() {  # b. the dry run names its blockers and changes nothing on the destination
  local src=$1 dst=$2 before after
  before=$(dst_count "$dst")
  hx "$cdir/dry" run generic/migrate from="$(uri "$src")" to="$(uri "$dst")" filter="label=$P-*" --dry-run --json
  after=$(dst_count "$dst")
  [ "$before" = "$after" ] && [ "$before" -ge 0 ] 2> /dev/null ||
    cell_fail "dry run: the destination's objects went from $before to $after"
  local rows blocked unreasoned
  read -r rows blocked unreasoned < <(python3 "$work/mx.py" plan "$cdir/dry.out")
  rows=${rows:-0} blocked=${blocked:-0} unreasoned=${unreasoned:-0}
  if [ "$unreasoned" -gt 0 ]; then cell_fail "dry run: $unreasoned blocked row(s) without a reason"; fi
  if [ "$rc" -ne 0 ] && [ "$blocked" -eq 0 ]; then
    cell_fail "dry run: exit $rc with no plan (no object named as blocked): $(msg "$cdir/dry.err")"
  fi
}

# judge WHAT FILE: the pass rule of a migrate/restore run; sets R_MIG R_BLK R_FAIL R_REASONS
judge() {
  local what=$1 f=$2 expected=${3:-}
  local have mig skip blk fl unreasoned unreported reasons failures
  IFS=$'\x1f' read -r have mig skip blk fl unreasoned unreported reasons failures \
    < <(python3 "$work/mx.py" run "$f.out" "$expected" "$cdir")
  R_MIG=$mig R_SKIP=$skip R_BLK=$blk R_FAIL=$fl R_REASONS=$reasons
  if [ "$have" != 1 ]; then
    R_FAIL="ERROR"
    cell_fail "$what: exit $rc, no summary: $(msg "$f.err")"
    return 1
  fi
  if [ "$fl" != 0 ]; then cell_fail "$what: $fl failed (exit $rc): $failures"
  elif [ "$rc" -ne 0 ]; then cell_fail "$what: exit $rc: $(msg "$f.err")"; fi
  [ -z "$unreasoned" ] || cell_fail "$what: blocked or failed without a reason: $unreasoned"
  [ -z "$unreported" ] || cell_fail "$what: source objects with no key event: $unreported"
  return 0
}

step_migrate() {  # c. the real run
  hx "$cdir/mig" run generic/migrate from="$(uri "$1")" to="$(uri "$2")" filter="label=$P-*" --yes --json
  M_MIG=- M_BLK=- M_FAIL=- M_REASONS=""
  rm -f "$cdir/mig.rows"   # only a run with a summary is confirmed
  if judge migrate "$cdir/mig" "$cdir/src.objs"; then cp "$cdir/migrated" "$cdir/mig.rows"; fi
  M_MIG=$R_MIG M_BLK=$R_BLK M_FAIL=$R_FAIL M_REASONS=$R_REASONS
}

step_rerun() {  # d. the same run again migrates nothing new
  hx "$cdir/again" run generic/migrate from="$(uri "$1")" to="$(uri "$2")" filter="label=$P-*" --yes --json
  judge "second run" "$cdir/again" "$cdir/src.objs" || return
  [ "$R_MIG" = 0 ] || cell_fail "second run migrated $R_MIG object(s) again"
}

# confirm WHAT SRC DST ROWS: DST holds exactly the cell's objects the run reported migrated
# (ROWS; none doubled by the second run, nothing half-made), each as DST's own tools list
# it, and the keys work there as they did on the source. No ROWS file: the run had no summary.
confirm() {
  local what=$1 src=$2 dst=$3 rows=$4 sset dset
  sset=$(set_of "$src"); dset=$(set_of "$dst")
  [ -e "$rows" ] || return 0
  if ! listing "$dst" "$cdir/dst.lst"; then cell_fail "$what: $(cat "$cdir/dst.lst.why")"; return; fi
  local have want
  have=$(awk -F'|' -v p="$P-$sset-" 'index($2, p) == 1' "$cdir/dst.lst" | sort)
  want=$(sort "$rows")
  [ "$have" = "$want" ] ||
    cell_fail "$what: $(display "$dst") holds [$(tr '\n' ' ' <<< "$have")] of the cell's objects, the run reported migrated [$(tr '\n' ' ' <<< "$want")]"
  [ -s "$rows" ] || return 0
  case $dset in
    nss)
      certutil -L -d "sql:$NSSDB" > "$cdir/certutil-L" 2>&1 || cell_fail "$what: certutil -L failed"
      certutil -K -d "sql:$NSSDB" -f "$work/nss.pw" > "$cdir/certutil-K" 2>&1 || cell_fail "$what: certutil -K failed"
      symkeyutil -L -d "sql:$NSSDB" -f "$work/nss.pw" > "$cdir/symkeyutil-L" 2>&1 || cell_fail "$what: symkeyutil -L failed" ;;
    tpm2)
      tpm2_ptool listobjects --label "$P-tpm2" --path "$work/tpm2" > "$cdir/tpm2-list" 2>&1 ||
        cell_fail "$what: tpm2_ptool listobjects failed" ;;
  esac
  local cls label id out
  while IFS='|' read -r cls label id; do
    local row="$cls|$label|$id"
    grep -qxF "$row" "$cdir/dst.lst" || { cell_fail "$what: $row is not listed by pkcs11-tool on $(display "$dst")"; continue; }
    case $dset:$cls in
      nss:certificate) grep -q "^$label " "$cdir/certutil-L" || cell_fail "$what: certutil -L lacks $label" ;;
      nss:private-key) grep -qE "> [a-z]+ +$id +$label\$" "$cdir/certutil-K" || cell_fail "$what: certutil -K lacks $label ($id)" ;;
      nss:secret-key) grep -q "^$label " "$cdir/symkeyutil-L" || cell_fail "$what: symkeyutil -L lacks $label" ;;
      tpm2:*) grep -q "CKA_LABEL: $label\$" "$cdir/tpm2-list" || cell_fail "$what: tpm2_ptool listobjects lacks $label" ;;
    esac
    local sel=(--label "$label"); [ -n "$id" ] && sel+=(--id "$id")
    case $cls:$label in
      secret-key:*-aes)
        out=$(p11 "$dst" --decrypt -m AES-CBC --iv 000102030405060708090a0b0c0d0e0f "${sel[@]}" \
                --input-file "$work/src/$sset-aes.ct" 2> "$cdir/use.err")
        [ "$out" = "$(cat "$work/src/pt")" ] ||
          cell_fail "$what: $label on $(display "$dst") does not decrypt what $(display "$src") encrypted: $(msg "$cdir/use.err")" ;;
      secret-key:*-hmac)
        p11 "$dst" --sign -m SHA256-HMAC "${sel[@]}" --input-file "$work/src/msg" --output-file "$cdir/mac" > "$cdir/use.err" 2>&1
        cmp -s "$cdir/mac" "$work/src/$sset-hmac.mac" ||
          cell_fail "$what: $label's HMAC on $(display "$dst") differs from the source's: $(msg "$cdir/use.err")" ;;
      private-key:*-rsa|private-key:*-ec)
        # Signed from the SHA-256 of the message, in the mechanisms every module has:
        # CKM_RSA_PKCS over the DigestInfo (openCryptoki 3.8 has no CKM_SHA256_RSA_PKCS) and
        # CKM_ECDSA (SoftHSM2 2.6.1 has no CKM_ECDSA_SHA256); openssl checks both as SHA-256.
        local k=${label##*-} mech=RSA-PKCS fmt=() in=$work/src/msg.digestinfo
        [ "$k" = ec ] && { mech=ECDSA; fmt=(--signature-format openssl); in=$work/src/msg.sha256; }
        p11 "$dst" --sign -m "$mech" "${fmt[@]}" "${sel[@]}" --input-file "$in" \
          --output-file "$cdir/sig" > "$cdir/use.err" 2>&1
        openssl dgst -sha256 -verify "$work/src/$sset-$k.pub.pem" -signature "$cdir/sig" "$work/src/msg" > /dev/null 2>&1 ||
          cell_fail "$what: $label signed on $(display "$dst") does not verify with $(display "$src")'s public key: $(msg "$cdir/use.err")" ;;
      certificate:*)
        p11 "$dst" --read-object --type cert "${sel[@]}" -o "$cdir/cert.der" > "$cdir/use.err" 2>&1
        cmp -s "$cdir/cert.der" "$work/src/$sset-cert.der" ||
          cell_fail "$what: certificate $label on $(display "$dst") differs from the one made: $(msg "$cdir/use.err")" ;;
      data:*)
        p11 "$dst" --read-object --type data --label "$label" -o "$cdir/data.bin" > "$cdir/use.err" 2>&1
        cmp -s "$cdir/data.bin" "$work/src/$sset-data.bin" ||
          cell_fail "$what: data object $label on $(display "$dst") differs from the one made: $(msg "$cdir/use.err")" ;;
    esac
  done < "$rows"
}

step_clean() {  # g. the destination without what the cell put there
  local left; left=$(del_prefix "$2" "$P-$(set_of "$1")-")
  [ "$left" = 0 ] || cell_fail "clean-up ($3): $left of the cell's objects left on $(display "$2")"
}

# A module that cannot hold the archive key (tpm2-pkcs11 imports no AES key) or has no AES-KWP
# (openCryptoki 3.8) refuses the whole archive before writing anything, naming what it lacks:
# every object of the step is blocked with that reason.
CANNOT_ARCHIVE='cannot (make|restore) an archive: .*lacks|does not take it as an AES key'

archive_blocked() {  # archive_blocked FILE.err N: the step refused as above; B_* say so
  grep -Eq "$CANNOT_ARCHIVE" "$1" || return 1
  B_MIG=0 B_BLK=$2 B_FAIL=0 B_REASONS="whole archive: $(grep -Eo "(the source|this token|component 1)[^|]*" "$1" | head -n 1 | cut -c1-160)"
}

step_backup() {  # f. backup-file: backup on the source, restore on the destination
  local src=$1 dst=$2 comps="components=file:$work/c1,file:$work/c2"
  local n; n=$(wc -l < "$cdir/src.objs")
  B_MIG=- B_BLK=- B_FAIL=- B_REASONS=""
  rm -f "$cdir/rst.rows" "$cdir/arc"
  hx "$cdir/bak" run protectserver/backup-file side=backup token="$(uri "$src")" file="$cdir/arc" "$comps" \
    filter="label=$P-*" --yes --json
  local have objs keys blk unreasoned reasons
  IFS=$'\x1f' read -r have objs keys blk unreasoned reasons < <(python3 "$work/mx.py" backup "$cdir/bak.out")
  if [ "$rc" -eq 1 ] && [ ! -e "$cdir/arc" ] && archive_blocked "$cdir/bak.err" "$n"; then return; fi
  if [ "$have" != 1 ] || [ "$rc" -ne 0 ]; then
    B_FAIL=ERROR
    if [ "$have" != 1 ]; then have=", no summary"; else have=""; fi
    cell_fail "backup: exit $rc$have: $(msg "$cdir/bak.err")"
    return
  fi
  [ -z "$unreasoned" ] || cell_fail "backup: blocked without a reason: $unreasoned"
  local before; before=$(dst_count "$dst")
  hx "$cdir/rst" run protectserver/backup-file side=restore token="$(uri "$dst")" file="$cdir/arc" "$comps" --yes --json
  if [ "$rc" -eq 1 ] && archive_blocked "$cdir/rst.err" "$n"; then
    local after; after=$(dst_count "$dst")
    [ "$after" = "$before" ] || cell_fail "restore refused, yet the destination changed ($before -> $after objects)"
    return
  fi
  if judge restore "$cdir/rst" "$cdir/src.objs"; then cp "$cdir/migrated" "$cdir/rst.rows"; fi
  B_MIG=$R_MIG B_BLK=$R_BLK B_FAIL=$R_FAIL
  B_REASONS=$R_REASONS
  [ -z "$reasons" ] || [ -n "$B_REASONS" ] || B_REASONS="not exported: $reasons"
}

ROWS=()
cell() {  # cell SRC DST
  local src=$1 dst=$2
  # HSMSH_MATRIX_CELLS="shm-nss pshm-pshm2": only those cells (for debugging the harness)
  if [ -n "${HSMSH_MATRIX_CELLS:-}" ] && [[ " $HSMSH_MATRIX_CELLS " != *" $src-$dst "* ]]; then return; fi
  CELL="$(display "$src") -> $(display "$dst")"
  CF=()
  cdir=$work/cells/$src-$dst; mkdir -p "$cdir"
  local t=$SECONDS
  local broken="${BROKEN[$(set_of "$src")]:-}${BROKEN[$(set_of "$dst")]:-}${BROKEN[$src]:-}"
  if [ -n "$broken" ]; then
    cell_fail "module not set up: $broken"
    M_MIG=- M_BLK=- M_FAIL=ERROR M_REASONS="" B_MIG=- B_BLK=- B_FAIL=ERROR B_REASONS=""
  else
    step_inventory "$src"
    step_dry_run "$src" "$dst"
    step_migrate "$src" "$dst"
    step_rerun "$src" "$dst"
    confirm migrate "$src" "$dst" "$cdir/mig.rows"
    step_clean "$src" "$dst" migrate
    step_backup "$src" "$dst"
    confirm restore "$src" "$dst" "$cdir/rst.rows"
    step_clean "$src" "$dst" restore
  fi
  # the row names the first problem, the real run's when it had one
  local verdict=PASS first="" f
  if [ ${#CF[@]} -gt 0 ]; then
    verdict=FAIL first=${CF[0]}
    for f in "${CF[@]}"; do case $f in migrate:*) first=$f; break ;; esac; done
    first="  => ${first:0:200}"
  fi
  local reasons="${M_REASONS:-none}"
  [ -z "$B_REASONS" ] || [ "$B_REASONS" = "$M_REASONS" ] || reasons="$reasons | backup: $B_REASONS"
  ROWS+=("$(printf '%-4s %-40s migrated=%s blocked=%s failed=%s  backup: migrated=%s blocked=%s failed=%s  reasons: %s%s' \
    "$verdict" "$CELL" "$M_MIG" "$M_BLK" "$M_FAIL" "$B_MIG" "$B_BLK" "$B_FAIL" "$reasons" "$first")")
  if [ "${HSMSH_DEEPBIND:-1}" = 0 ] && [ "$src-$dst" = ock-tpm2 ]; then
    # The control: without RTLD_DEEPBIND (sanitizer builds, backends/pkcs11/module.c),
    # tpm2-pkcs11 loaded after openCryptoki calls openCryptoki's object_create, and what it
    # "made" is unknown to it. This cell must fail so; with RTLD_DEEPBIND it must pass.
    echo "cell $CELL: control without RTLD_DEEPBIND: $verdict ($((SECONDS - t)) s)"
    ROWS[${#ROWS[@]}-1]="CTRL ${ROWS[${#ROWS[@]}-1]#* }  (no RTLD_DEEPBIND: expected to fail)"
    check "control: without RTLD_DEEPBIND, $CELL fails with CKR_KEY_HANDLE_INVALID" \
      grep -q "CKR_KEY_HANDLE_INVALID" "$cdir/mig.out"
    return
  fi
  for f in "${CF[@]}"; do FAILS+=("$CELL: $f"); done
  echo "cell $CELL: $verdict ($((SECONDS - t)) s)"
  check "cell $CELL ends with every object migrated or blocked with a reason, 0 failed, confirmed on the destination (${#CF[@]} problem(s))" \
    [ ${#CF[@]} -eq 0 ]
}

# ---------------------------------------------------------------- the run
printf '0832240A34365AEB8273A6535EF80FA99CB5FCE8D2A19EE1977CB8D664F86968\n' > "$work/c1"
printf '263FF91EE9C7A5ECC58AFFA35B4F6A5443F0DA3B5ABE60FB45260AEA8C9458F7\n' > "$work/c2"
declare -A BROKEN
FAILS=()
setup_softhsm2 || BROKEN[shm]="softhsm2 "
setup_nss || BROKEN[nss]="nss "
setup_ock || BROKEN[ock]="opencryptoki "
setup_tpm2 || BROKEN[tpm2]="tpm2 "
[ -n "${BROKEN[shm]:-}" ] || setup_proxy || BROKEN[pshm]="p11-kit-proxy "
for s in shm nss ock tpm2; do
  [ -n "${BROKEN[$s]:-}" ] && continue
  make_sources "$s" || BROKEN[$s]="$(display "$s") "
done
echo "source sets made ($((SECONDS - T0)) s)"

MODS=(shm nss ock tpm2)
for s in "${MODS[@]}"; do
  for d in "${MODS[@]}"; do
    [ "$s" = "$d" ] || cell "$s" "$d"
  done
done
cell pshm pshm2

{
  echo "modules matrix, run $P ($(date -u +%Y-%m-%dT%H:%M:%SZ), $HSMSH)"
  printf '%s\n' "${ROWS[@]}"
  echo "source sets (made with the modules' own tools):"
  for s in "${MODS[@]}"; do
    echo "  $(display "$s"):${MADE[$s]:- nothing}${ABSENT[$s]:+; cannot hold: ${ABSENT[$s]}}"
  done
  if [ ${#FAILS[@]} -gt 0 ]; then
    echo "failures:"
    printf '  %s\n' "${FAILS[@]}"
  fi
  echo "run time: $((SECONDS - T0)) s"
} > "$MATRIX"
cat "$MATRIX"
if [ -n "${HSMSH_MATRIX_OUT:-}" ]; then cp "$MATRIX" "$HSMSH_MATRIX_OUT" || fail "cannot write $HSMSH_MATRIX_OUT"; fi
finish
