#!/usr/bin/env bash
# help_run: from `hsmsh --help` to a finished run of every recipe, without opening a source
# file. For every recipe `hsmsh recipes` lists, the examples `hsmsh help RECIPE` prints are
# run in the order printed and exactly as printed, but for their placeholders: the upper-case
# words, each given a value below (an example with a placeholder the scenario does not name
# fails). Each --dry-run example is then run again without it, with --journal FILE and --yes,
# as the help's last lines say. Every run must exit 0, every example of every recipe must have
# run, and what the runs did is then checked on the tokens. What the help leaves to the
# operator's own world is made first as the help describes it: the files an application
# sealed, a blob store and its new master key, the custodians' components, an empty token.
# (help.sh checks the help's text against the recipe tables.)
# Usage: bash help_run.sh /abs/path/to/hsmsh
set -u
NAME=help_run
# shellcheck source=common.bash
source "$(dirname "${BASH_SOURCE[0]}")/common.bash" "$@"

"$HSMSH" lab init > /dev/null 2>&1 || fail "hsmsh lab init"
printf '1234' > pin; printf '12345678' > sopin
PIN=$work/pin SOPIN=$work/sopin
ntok=0
new_token() {  # new_token VAR...: each VAR names a new empty token, initialised as the vendor's tools would
  local v
  for v in "$@"; do
    ntok=$((ntok + 1))
    softhsm2-util --init-token --free --label "t$ntok" --pin 1234 --so-pin 12345678 > /dev/null \
      || fail "softhsm2-util --init-token t$ntok"
    printf -v "$v" 't%d' "$ntok"
  done
}
lua_on() {  # lua_on TOKEN CHUNK: CHUNK with s, a session on TOKEN (and hsm, sealed, keys)
  U="pkcs11:token=$1?pin-source=file:$PIN" "$HSMSH" -e "local s = hsm.token(os.getenv('U'))
    local sealed, keys = require('hsm.sealed'), require('hsm.keys'); $2"
}
# covers SRC DST: every secret key of SRC that can leave it (extractable, not
# CKA_WRAP_WITH_TRUSTED, not one of hsmsh's own) is on DST under its label, proven by value:
# the same KCV, or where DST shows none (SoftHSM2 records no check value for an unwrapped
# key) the same HMAC on both, or a probe key wrapped on SRC that unwraps on DST.
covers() {
  local missing
  missing=$(SRC="pkcs11:token=$1?pin-source=file:$PIN" DST="pkcs11:token=$2?pin-source=file:$PIN" "$HSMSH" -e '
    local keys = require("hsm.keys")
    local src, dst = hsm.token(os.getenv("SRC")), hsm.token(os.getenv("DST"))
    local function same(a, b)
      local ka, kb = keys.kcv(a), keys.kcv(b)
      if ka and kb then return ka == kb end
      if a:get("CKA_SIGN") and a:get("CKA_KEY_TYPE") == "CKK_GENERIC_SECRET" then
        local m = src:sign("CKM_SHA256_HMAC", a, "probe")
        return m ~= nil and m == dst:sign("CKM_SHA256_HMAC", b, "probe")
      end
      if a:get("CKA_WRAP") and a:get("CKA_KEY_TYPE") == "CKK_AES" then
        local p = assert(src:generate{type = "AES", bits = 128, token = false, CKA_EXTRACTABLE = true, CKA_ENCRYPT = true})
        local w = src:wrap("CKM_AES_KEY_WRAP_PAD", a, p)
        local back = w and dst:unwrap("CKM_AES_KEY_WRAP_PAD", b, w, {CKA_CLASS = "CKO_SECRET_KEY",
          CKA_KEY_TYPE = "CKK_AES", CKA_TOKEN = false, CKA_ENCRYPT = true})
        return back ~= nil and keys.kcv(back) == keys.kcv(p)
      end
      return false
    end
    local out = {}
    for _, o in ipairs(assert(src:objects())) do
      if o.class == "CKO_SECRET_KEY" and o.extractable and not o.label:match("^hsmsh%-")
         and not o:get("CKA_WRAP_WITH_TRUSTED") then
        local found = false
        for _, d in ipairs(assert(dst:find_all{CKA_CLASS = "CKO_SECRET_KEY", CKA_LABEL = o.label})) do
          if same(o, d) then found = true end
        end
        if not found then out[#out + 1] = o.label end
      end
    end
    table.sort(out)
    print(table.concat(out, ", "))' 2>&1)
  check "$1's keys are on $2, proven by value (missing: ${missing:-none})" [ -z "$missing" ]
}

# run_examples RECIPE FIRST LAST NAME=VALUE...: runs RECIPE's examples FIRST..LAST (counting
# the command lines from 1) with the placeholders given (PINFILE is the user PIN's file);
# each run's output is kept as ex-RECIPE-N.out/.err (the last run of example N).
declare -A ran=()
run_examples() {
  local r=$1 first=$2 last=$3; shift 3
  local lines n=0 c key
  lines=$(python3 - "$HSMSH" "$r" "$first" "$last" "PINFILE=$PIN" "$@" <<'EOF'
import re, subprocess, sys
hs, rid, first, last = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
vals = dict(a.split("=", 1) for a in sys.argv[5:])
text = subprocess.run([hs, "help", rid], capture_output=True, text=True).stdout
tail = text.split("\nExample", 1)[1] if "\nExample" in text else ""
ex = [l.strip() for l in tail.split("\n") if l.startswith("  hsmsh run ")]
if not 1 <= first <= last <= len(ex):
    sys.exit("%s has %d examples; %d..%d asked for" % (rid, len(ex), first, last))
for e in ex[first - 1:last]:
    missing = sorted(set(w for w in re.findall(r"\b[A-Z][A-Z0-9_]*\b", e) if w not in vals))
    if missing:
        sys.exit("a placeholder the help does not explain here: %s in %s" % (", ".join(missing), e))
    print(re.sub(r"\b[A-Z][A-Z0-9_]*\b", lambda m: vals[m.group(0)], e))
EOF
  ) || { fail "$r: examples $first..$last: $lines"; return; }
  while IFS= read -r c; do
    n=$((n + 1)); key="$r#$((first + n - 1))"
    ran[$key]=1
    cmd=$c
    eval "\"\$HSMSH\" ${c#hsmsh }" > out 2> err < /dev/null; rc=$?
    rc_is 0
    if [[ $c == *" --dry-run"* ]]; then
      c=${c/ --dry-run/}
      cmd="$c --journal FILE --yes"
      eval "\"\$HSMSH\" ${c#hsmsh } --journal \"\$work/journal-\$RANDOM\$RANDOM\" --yes" > out 2> err < /dev/null; rc=$?
      rc_is 0
    fi
    cp out "ex-${r//\//_}-$((first + n - 1)).out"; cp err "ex-${r//\//_}-$((first + n - 1)).err"
  done <<< "$lines"
}

# ---- generic/inventory, generic/migrate ----
run_examples generic/inventory 1 1 TOKEN=blue
check "the inventory lists blue's keys" grep -q "aes-256" ex-generic_inventory-1.out
new_token T; run_examples generic/migrate 1 1 FROM=blue TO="$T"; covers blue "$T"

# ---- generic/rotate-reencrypt: files an application sealed under blue's non-extractable key ----
mkdir files; head -c 300000 /dev/urandom > plain-a; echo "a line of data" > plain-b
lua_on blue 'local k = s:find{label = "aes-256-fixed"}
  assert(sealed.seal(s, k, "plain-a", "files/a")); assert(sealed.seal(s, k, "plain-b", "files/b"))' \
  || fail "sealing the application's files"
new_token T
h run generic/rotate-reencrypt files=files key=aes-256-fixed out=reencrypted "from=pkcs11:token=blue?pin-source=file:$PIN" "to=pkcs11:token=$T?pin-source=file:$PIN" --dry-run
rc_is 0; has err "out=reencrypted does not exist yet: it will be made (mode 0700)"
check "a dry run makes no output directory" [ ! -e reencrypted ]
run_examples generic/rotate-reencrypt 1 1 FILES=files KEY=aes-256-fixed OUT=reencrypted FROM=blue TO="$T"
check "reencrypted/ was made, mode 0700" [ "$(stat -c %a reencrypted 2>/dev/null)" = 700 ]
lua_on "$T" 'local k = s:find{label = "aes-256-fixed"}
  for _, f in ipairs({"a", "b"}) do assert(sealed.open(s, k, "reencrypted/" .. f, "back-" .. f)) end' \
  || fail "opening the re-encrypted files with the new key on $T"
check "the re-encrypted files open to the original data" cmp -s plain-a back-a
check "the re-encrypted files open to the original data (b)" cmp -s plain-b back-b

# ---- ep11/master-key-migrate: a blob store an application keeps under MK1 ----
lua_on blue 'local bs = require("hsm.blobstore")
  for _, l in ipairs({"MK1", "MK2"}) do
    assert(s:generate{type = "AES", bits = 256, label = l, CKA_WRAP = true, CKA_UNWRAP = true, CKA_ENCRYPT = true})
  end
  bs.create("store", s, bs.master_key(s, "MK1"))
  for i = 1, 3 do
    local k = assert(s:generate{type = "AES", bits = 128, token = false, CKA_EXTRACTABLE = true, CKA_ENCRYPT = true})
    bs.put("store", s, k, "key" .. i); print(k:kcv())
  end' > store-kcvs || fail "making the blob store"
run_examples ep11/master-key-migrate 1 3 STORE=store TOKEN=blue NEW_MK=MK2
has ex-ep11_master-key-migrate-1.err "3 blobs under MK1"
after=$(lua_on blue 'local bs = require("hsm.blobstore")
  for i = 1, 3 do print(bs.get("store", s, "key" .. i):kcv()) end' 2>&1)
check "every blob opens under MK2 to its key" [ "$after" = "$(cat store-kcvs)" ]
check "the store is on MK2" grep -q '"MK2"' store/store.json
check "MK1 was destroyed" [ "$(lua_on blue 'print(#s:find_all{CKA_LABEL = "MK1"})')" = 0 ]

# ---- luna: the SMK an SKS application made ----
lua_on blue 'local sks = require("hsm.sks"); local smk = sks.smk(s)
  local k = assert(s:generate{type = "AES", bits = 256, token = false, CKA_EXTRACTABLE = true, CKA_ENCRYPT = true})
  local blobs = assert(sks.extract(s, smk, {k})); local f = assert(io.open("sks.blob", "wb"))
  f:write(blobs[1]); f:close()' || fail "the application's SKS blob"
new_token B T
run_examples luna/sks-smk-backup 1 1 BACKUP="$B" TOKEN=blue
container=$(sed -n 's/^Created container \([^ ]*\) on the backup token.*/\1/p' ex-luna_sks-smk-backup-1.err)
check "the backup named its container (got '$container')" [ -n "$container" ]
run_examples luna/sks-smk-restore 1 1 BACKUP="$B" CONTAINER="$container" TOKEN="$T"
lua_on "$T" 'local sks = require("hsm.sks"); local f = assert(io.open("sks.blob", "rb"))
  assert(sks.insert(s, sks.smk(s, nil, false), f:read("a")))' \
  || fail "the restored SMK opens the application's blob on $T"

# ---- protectserver: archives under components, M of M and N of M shares ----
openssl rand -hex 32 > c1; openssl rand -hex 32 > c2
for r in backup-file backup-single-custodian; do
  new_token T
  run_examples protectserver/$r 1 2 COMPONENT_1="$work/c1" COMPONENT_2="$work/c2" FILE="$r.arc" TOKEN=blue NEW_TOKEN="$T"
  covers blue "$T"
done
new_token T
run_examples protectserver/backup-multi-custodian 1 2 FILE=mc.arc DIR="$work/mc-shares" TOKEN=blue NEW_TOKEN="$T"
covers blue "$T"
check "the share directory was made, mode 0700" [ "$(stat -c %a mc-shares 2>/dev/null)" = 700 ]
new_token T
run_examples protectserver/backup-n-of-m 1 2 FILE=nm.arc DIR="$work/nm-shares" TOKEN=blue NEW_TOKEN="$T"
covers blue "$T"

# ---- protectserver: identities, a CA, trust, token replication ----
new_token CA H1 H2
run_examples protectserver/establish-ca 1 1 CA="$CA"
run_examples protectserver/authenticate-online 1 1 CA="$CA" HSMS="$H1"
run_examples protectserver/authenticate-offline 1 4 CA="$CA" HSM="$H2" DIR="$work/carried"
certs=$XDG_DATA_HOME/hsmsh/certs
poc=$(ls "$certs"/Owner_POC.crt carried/Owner_POC.crt 2>/dev/null | head -1)
n=0
for c in "$certs"/HSM_*.crt carried/HSM_*.crt; do
  [ -e "$c" ] && openssl verify -CAfile "$poc" "$c" > /dev/null 2>&1 && n=$((n + 1))
done
check "the HSMs' certificates chain to the CA's POC (got $n verified)" [ "$n" -ge 3 ]
run_examples protectserver/self-signed-identity 1 1 TOKEN=green
run_examples protectserver/self-signed-identity 1 1 TOKEN=blue
run_examples protectserver/trust 1 4 TOKEN=blue PEER=green SO_PINFILE="$SOPIN"
serial_green=$(lua_on green 'print(s:module():token_info(s:slot()).serial)')
has ex-protectserver_trust-3.out "$serial_green"
run_examples protectserver/trust 1 2 TOKEN=blue PEER=green SO_PINFILE="$SOPIN"   # trusted again
run_examples protectserver/token-replication 1 1 FROM=blue TO=green SO_PINFILE="$SOPIN"
covers blue green
dest_cert=$(ls "$certs"/HSM_"$serial_green".crt 2>/dev/null)
check "green's certificate is in the store ($dest_cert)" [ -n "$dest_cert" ]
run_examples protectserver/token-replication 2 3 FROM=blue TO=green SO_PINFILE="$SOPIN" \
  DEST_CERT="$dest_cert" FILE="$work/carried.img"
check "the image was written" [ -s carried.img ]

# ---- cloudhsm/rsa-aes-migrate, one process, then two machines ----
new_token T; run_examples cloudhsm/rsa-aes-migrate 1 1 DIR="$work/x1" FROM=blue TO="$T"; covers blue "$T"
new_token T; run_examples cloudhsm/rsa-aes-migrate 2 4 DIR="$work/x2" FROM=blue TO="$T"; covers blue "$T"

# ---- blue/green; key-replicate between the two sides it leaves ----
new_token BL GR
run_examples generic/migrate 1 1 FROM=blue TO="$BL"
run_examples generic/blue-green 1 10 STATE="$work/bg.state" SECONDS=1 BLUE="$BL" GREEN="$GR"
covers "$BL" "$GR"
check "status --json says decommissioned" grep -q '"decommission' ex-generic_blue-green-10.out
lua_on "$BL" 'assert(s:generate{type = "AES", bits = 256, label = "app-new", CKA_EXTRACTABLE = true, CKA_ENCRYPT = true})' \
  || fail "a new key on $BL"
run_examples cloudhsm/key-replicate 1 1 LABEL=app-new SOURCE="$BL" DESTINATION="$GR"
covers "$BL" "$GR"

# ---- cloudhsm/hsm1-to-hsm2, its three options ----
for g in "1 2" "3 6" "7 15"; do
  new_token H1 H2
  run_examples generic/migrate 1 1 FROM=blue TO="$H1"
  run_examples cloudhsm/hsm1-to-hsm2 $g STATE="$work/h$H2.state" SECONDS=1 HSM1="$H1" HSM2="$H2"
  covers "$H1" "$H2"
done

# ---- every recipe, every example ----
for r in $("$HSMSH" recipes | awk '$1 ~ /\// {print $1}'); do
  total=$("$HSMSH" help "$r" | sed -n '/^Example/,$p' | grep -c '^  hsmsh run ')
  missed=""
  for i in $(seq 1 "$total"); do [ -n "${ran[$r#$i]:-}" ] || missed="$missed $i"; done
  check "$r: every example of its help ran (not run:${missed:- none})" [ -z "$missed" ]
done
finish
