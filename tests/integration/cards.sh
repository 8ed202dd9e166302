#!/usr/bin/env bash
# cards: seed 000's three smart-card procedures with custodians' cards as PKCS#11 tokens
# (hsm.cards, docs/cards.md). The lab's blue token is backed up onto cards and restored onto
# fresh tokens, pkcs11-tool confirming the restored keys: single custodian (the archive spread
# over two cards), multiple custodian (a share and half the archive on each of two cards,
# passphrases), N of M (any 2 of the lab's 3 cards restore, 1 does not). An archive larger than
# one card spans three, restored in any order, the missing card named; an altered card is
# refused (by its completion record, then by the archive's MAC). Bad input, each one error line
# naming the card and nothing written on the HSM token: a card of another set, the same card
# twice, a wrong PIN (one C_Login), a card that is not blank, a card pulled mid-write (kill and
# CKR_DEVICE_REMOVED: recognised as half-written at restore), fewer than N cards, a full card,
# too few cards. PINs and passphrases never reach the output or the journal.
# Usage: bash cards.sh /abs/path/to/hsmsh
set -u
NAME=cards
# shellcheck source=common.bash
source "$(dirname "${BASH_SOURCE[0]}")/common.bash" "$@"
FAULT=${HSMSH_FAULT_LIB:?run through ctest}
# The temporary archive files of archives on cards (a killed run leaves its own) stay in $work.
export TMPDIR=$work/tmp; mkdir -p "$TMPDIR"

"$HSMSH" lab init > /dev/null 2>&1
printf '1234' > pin; printf '1111' > p1; printf '2222' > p2; printf '3333' > p3; printf '4444' > p4
BLUE="pkcs11:token=blue?pin-source=file:$work/pin"
card() { printf 'card:pkcs11:token=%s?pin-source=file:%s' "$1" "$work/${2:-p4}"; }   # card LABEL [PINFILE]
C1=$(card card-1 p1); C2=$(card card-2 p2); C3=$(card card-3 p3)
newcard() { softhsm2-util --init-token --free --label "$1" --pin "${2:-4444}" --so-pin 12345678 > /dev/null; }
n_tok=0
fresh() {  # a new empty token to restore onto; sets $T and $TL
  n_tok=$((n_tok + 1)); TL="dst-$n_tok"
  softhsm2-util --init-token --free --label "$TL" --pin 1234 --so-pin 12345678 > /dev/null
  T="pkcs11:token=$TL?pin-source=file:$work/pin"
}
p11() {  # p11 TOKEN PIN ARGS... (a failure prints pkcs11-tool-failed)
  local tok=$1 p=$2; shift 2
  pkcs11-tool --module "$MODULE" --token-label "$tok" --login --pin "$p" "$@" 2> /dev/null || echo "pkcs11-tool-failed ($tok, $RANDOM)"
}
objects() {  # objects TOKEN [PIN]: how many objects pkcs11-tool lists
  local out; out=$(p11 "$1" "${2:-1234}" --list-objects)
  case $out in *pkcs11-tool-failed*) echo pkcs11-tool-failed; return ;; esac
  grep -cE '^(Secret Key|Private Key|Public Key|Certificate) Object|^Data object' <<< "$out"
}
summary() { python3 -c 'import json
s=[json.loads(l) for l in open("out") if l.startswith("{")][-1]
print("%s/%s/%s/%s" % (s.get("migrated"), s.get("skipped"), s.get("blocked"), s.get("failed")))'; }
# What blue encrypts and HMACs, to be checked on each restored token by pkcs11-tool.
printf 'attack at dawn!!' > pt
p11 blue 1234 --encrypt --mechanism AES-CBC --iv 000102030405060708090a0b0c0d0e0f --id 0102 --input-file pt --output-file ct
p11 blue 1234 --sign --mechanism SHA256-HMAC --id 0301 --input-file pt --output-file mac
check "pkcs11-tool encrypted and HMAC'd on blue" [ -s ct ] && [ -s mac ]
blue_kcvs=$(secret_kcvs blue)
restored() {  # restored WHAT: the fresh token $TL holds blue's objects, proven by pkcs11-tool
  check "$1: summary $(summary)" [ "$(summary)" = "22/0/3/0" ]
  check "$1: pkcs11-tool lists 22 objects on $TL" [ "$(objects "$TL")" = 22 ]
  local got; got=$(p11 "$TL" 1234 --decrypt --mechanism AES-CBC --iv 000102030405060708090a0b0c0d0e0f --id 0102 --input-file ct)
  check "$1: pkcs11-tool decrypts on $TL what blue encrypted (got '$got')" [ "$got" = "attack at dawn!!" ]
  p11 "$TL" 1234 --sign --mechanism SHA256-HMAC --id 0301 --input-file pt --output-file mac2 > /dev/null
  check "$1: pkcs11-tool's HMAC on $TL equals blue's" cmp -s mac mac2
  local kcvs; kcvs=$(secret_kcvs "$TL")
  check "$1: the 7 restored secret keys have their KCVs on blue" \
    [ "$(grep -c . <<< "$kcvs")" = 7 ] && [ "$(grep -cvxF -f <(printf '%s\n' "$blue_kcvs") <<< "$kcvs")" = 0 ]
}
one_error() {  # the run's error is one line (after what the run said before it), no traceback
  local n; n=$(grep -c '^hsmsh: ' err)
  if [ "$n" -eq 1 ]; then pass; else fail "$cmd: $n error lines, expected 1 ($(show err))"; fi
  lacks err "stack traceback"
}
blue_same() { check "$cmd: blue still holds its 25 objects" [ "$(objects blue)" = 25 ]; }

# ---- the lab's cards ----
for i in 1 2 3; do
  check "lab card-$i opens with its own PIN $i$i$i$i" [ "$(objects "card-$i" "$i$i$i$i")" = 0 ]
done
check "card-1 refuses card-2's PIN" [ "$(objects card-1 2222)" = pkcs11-tool-failed ]

# ---- single custodian: components typed, the archive onto two cards ----
printf '0832240A34365AEB8273A6535EF80FA99CB5FCE8D2A19EE1977CB8D664F86968\n' > c1
printf '263FF91EE9C7A5ECC58AFFA35B4F6A5443F0DA3B5ABE60FB45260AEA8C9458F7\n' > c2
COMPS="components=file:$work/c1,file:$work/c2"
newcard card-a; newcard card-b
CA=$(card card-a); CB=$(card card-b)
h run protectserver/backup-single-custodian side=backup token="$BLUE" file="$CA,$CA" "$COMPS" --yes; rc_is 1
has err "card card-a is given twice (items 1 and 2)"; one_error
h run protectserver/backup-single-custodian side=backup token="$BLUE" file="$CA" "$COMPS" --yes; rc_is 1
has err "it needs 2 cards of 32768 bytes (card_capacity=), 1 given"; one_error
check "a refused backup leaves card-a blank" [ "$(objects card-a 4444)" = 0 ]
h run protectserver/backup-single-custodian side=backup token="$BLUE" file="$CA,$CB" "$COMPS" kcvs=9c1884,62a639 \
  --journal "$work/js"; rc_is 0
has err "card card-a: archive card 1 of 2 of set "; has err "card card-b: archive card 2 of 2 of set "
has err "wrote 2 card(s): 25 objects (11 keys wrapped, 3 not exportable)"
check "card-a's part is private: no object without a login" \
  [ "$(pkcs11-tool --module "$MODULE" --token-label card-a --list-objects 2> /dev/null | grep -c '^Data object')" = 0 ]
check "card-a holds its chunks and completion record (pkcs11-tool, logged in)" [ "$(objects card-a 4444)" -ge 2 ]
check "the journal names the cards without their PINs" grep -q 'card:pkcs11:token=card-a' "$work/js"
fresh
h run protectserver/backup-single-custodian side=restore token="$T" file="$CB" "$COMPS" --yes; rc_is 1
has err "spans 2 cards: card 1 of 2 missing"; one_error
check "one card of two writes nothing" [ "$(objects "$TL")" = 0 ]
h run protectserver/backup-single-custodian side=restore token="$T" file="$CB,$CA" "$COMPS" --yes --json; rc_is 0
restored "single custodian, cards given in reverse order"

# ---- at a terminal, a short list of cards is made up by asking for the next card ----
command -v tmux > /dev/null || fail "tmux is not installed: the terminal's next-card prompt is not tested"
newcard card-v; newcard card-w 9q8w7e
tmx() { tmux -L "cards-$$" "$@"; }
pane() { tmx capture-pane -p -J -S - -t tty; }
until_shown() {  # until_shown ERE: waits (10 s at most) for the pane to show it
  local i; for ((i = 0; i < 200; i++)); do pane | grep -qE -- "$1" && return 0; sleep 0.05; done; return 1
}
tmx new-session -d -s tty -x 220 -y 50 -c "$work" "'$HSMSH' run protectserver/backup-single-custodian side=backup \
  token='$BLUE' file='$(card card-v)' '$COMPS' --yes; echo tty-exit=\$?; sleep 60"
check "at a terminal the run asks for the next card" until_shown "Insert a blank card for custodian 2 and type its URI"
tmx send-keys -t tty -l "pkcs11:token=card-w"; tmx send-keys -t tty Enter
check "and then for that card's PIN" until_shown "PIN for token card-w"
tmx send-keys -t tty -l "9q8w7e"; tmx send-keys -t tty Enter
check "the backup ends well ($(pane | grep -E 'tty-exit|hsmsh:' | tr '\n' '|'))" until_shown "^tty-exit=0"
check "card-w, asked for, holds card 2 of 2" until_shown "card card-w: archive card 2 of 2 of set "
check "the PIN typed is not shown" bash -c "! tmux -L cards-$$ capture-pane -p -J -S - -t tty | grep -q 9q8w7e"
tmx kill-server 2> /dev/null
fresh
h run protectserver/backup-single-custodian side=restore token="$T" "$COMPS" --yes --json \
  file="card:pkcs11:token=card-w?pin-value=9q8w7e,$(card card-v)"
rc_is 0; restored "single custodian, the second card asked for at the terminal"

# ---- an archive larger than one card spans three; any order; the missing one named ----
newcard card-c; newcard card-d; newcard card-e
CC=$(card card-c); CD=$(card card-d); CE=$(card card-e)
h run protectserver/backup-file side=backup token="$BLUE" file="$CC,$CD" "$COMPS" card_capacity=12000 --yes; rc_is 1
has err "it needs 3 cards of 12000 bytes (card_capacity=), 2 given"; one_error; blue_same
h run protectserver/backup-file side=backup token="$BLUE" file="$CC,$CD,$CE" "$COMPS" card_capacity=12000 --yes --json; rc_is 0
check "three card events, each card 1..3 of 3 holding at most 12000 bytes" python3 -c '
import json
c=[json.loads(l) for l in open("out") if "\"card\"" in l]
c=[e for e in c if e["event"]=="card"]
assert [(e["card"], e["index"], e["of"]) for e in c]==[("card-c",1,3),("card-d",2,3),("card-e",3,3)], c
assert all(0 < e["bytes"] <= 12000 and e["objects"] >= 2 for e in c), c'
# cards that report little free memory (the fault module's HSMSH_FAULT_TOKEN_FREE on real
# tokens): that figure, not the default card_capacity, decides how much goes on each
newcard card-f1; newcard card-f2; newcard card-f3
CF() { printf 'card:pkcs11:token=card-f%s?module-path=%s&pin-source=file:%s' "$1" "$FAULT" "$work/p4"; }
HSMSH_FAULT_TOKEN_FREE=12000 h run protectserver/backup-file side=backup token="$BLUE" file="$(CF 1),$(CF 2)" "$COMPS" --yes
rc_is 1; has err "it needs 3 cards of 12000 bytes (the card reports 12000 bytes free), 2 given"; one_error; blue_same
HSMSH_FAULT_TOKEN_FREE=12000 h run protectserver/backup-file side=backup token="$BLUE" file="$(CF 1),$(CF 2),$(CF 3)" "$COMPS" --yes --json
rc_is 0
check "the cards' own free-memory figure spread the archive over three, at most 12000 bytes each" python3 -c '
import json
c=[json.loads(l) for l in open("out") if "\"card\"" in l]
c=[e for e in c if e["event"]=="card"]
assert [(e["index"], e["of"]) for e in c]==[(1,3),(2,3),(3,3)], c
assert all(0 < e["bytes"] <= 12000 for e in c), c'
fresh
h run protectserver/backup-file side=restore token="$T" file="$CE,$CC" "$COMPS" --yes; rc_is 1
has err "spans 3 cards: card 2 of 3 missing"; one_error
h run protectserver/backup-file side=restore token="$T" file="$CE,$CC,$CA" "$COMPS" --yes; rc_is 1
has err "card card-a holds card 1 of 2 of archive set"; one_error
h run protectserver/backup-file side=restore token="$T" file="$CE,$CC,$CE" "$COMPS" --yes; rc_is 1
has err "card card-e is given twice (items 1 and 3)"; one_error
check "the refused restores wrote nothing" [ "$(objects "$TL")" = 0 ]
h run protectserver/backup-file side=restore token="$T" file="$CD,$CE,$CC" "$COMPS" --yes --json; rc_is 0
restored "an archive over three cards, in the order 2, 3, 1"
# Cards are checked as files are: one bit of card-c's 2nd chunk flipped is refused by the
# card's completion record; the last byte of card-e (the archive's MAC) flipped and the record
# rewritten to match, by the archive's MAC.
alter() {  # alter LABEL chunk|mac
  U="pkcs11:token=$1?pin-source=file:$work/p4" MODE=$2 "$HSMSH" -e '
    local s, json, keys, core = require("hsm").token(os.getenv("U")), require("hsm.json"), require("hsm.keys"), require("hsm.core")
    local chunks, rec = {}, nil
    for _, o in ipairs(assert(s:find_all({CKA_CLASS = "CKO_DATA"}))) do
      local l = o:get("CKA_LABEL")
      local j = l:match("chunk (%d+) of")
      if j then chunks[tonumber(j)] = o elseif l:match("complete$") then rec = o end
    end
    local function replace(o, v)
      local l = o:get("CKA_LABEL"); assert(o:destroy())
      return assert(s:create({CKA_CLASS = "CKO_DATA", CKA_TOKEN = true, CKA_PRIVATE = true,
                              CKA_APPLICATION = "hsmsh", CKA_LABEL = l, CKA_VALUE = v}))
    end
    if os.getenv("MODE") == "chunk" then
      local v = chunks[2]:get("CKA_VALUE")
      replace(chunks[2], v:sub(1, 99) .. string.char(v:byte(100) ~ 1) .. v:sub(101))
    else
      local last = chunks[#chunks]
      local v = last:get("CKA_VALUE")
      chunks[#chunks] = replace(last, v:sub(1, -2) .. string.char(v:byte(-1) ~ 1))
      local all = {}
      for j = 1, #chunks do all[j] = chunks[j]:get("CKA_VALUE") end
      local r = json.decode(rec:get("CKA_VALUE"))
      r.sha256 = keys.hex(core.sha256(table.concat(all)))
      replace(rec, json.encode(r))
    end'
}
alter card-c chunk
fresh
h run protectserver/backup-file side=restore token="$T" file="$CC,$CD,$CE" "$COMPS" --yes; rc_is 1
has err "card card-c: archive card 1 of 3 of set "; has err "is altered"; one_error
alter card-c chunk   # flipped back
alter card-e mac
h run protectserver/backup-file side=restore token="$T" file="$CC,$CD,$CE" "$COMPS" --yes; rc_is 1
has err "archive on cards card-c, card-d, card-e fails its MAC check"; one_error
check "the altered cards wrote nothing" [ "$(objects "$TL")" = 0 ]

# ---- multiple custodian: one share per card, passphrase-protected, the archive over the same cards ----
newcard card-f; newcard card-g 7gH4xQz9
CF=$(card card-f); CG="card:pkcs11:token=card-g?pin-value=7gH4xQz9"
printf 'alpha-pass' > ph1; printf 'bravo-pass' > ph2
h run protectserver/backup-multi-custodian side=backup token="$BLUE" file="$CF,$CG" shares="$CF,$CG" \
  passphrases="file:$work/ph1,file:$work/ph2" --json --journal "$work/jm"; rc_is 0
check "share cards: share 1 and 2 of 2, one data object and a completion record each" python3 -c '
import json
c=[json.loads(l) for l in open("out")]
c=[(e["card"], e["kind"], e["index"], e["of"], e["objects"]) for e in c if e["event"]=="card"]
assert c[:2]==[("card-f","share",1,2,2),("card-g","share",2,2,2)], c
assert [x[:4] for x in c[2:]]==[("card-f","archive",1,2),("card-g","archive",2,2)], c'
for f in out err "$work/jm"; do
  cmd="multi-custodian backup ($f)"; lacks "$f" 7gH4xQz9; lacks "$f" alpha-pass; lacks "$f" bravo-pass
done
fresh
h run protectserver/backup-multi-custodian side=restore token="$T" file="$CG,$CF" shares="$CF" passphrases="file:$work/ph1"; rc_is 1
has err "1 share given, the set needs 2 (given: card card-f, share 1 of 2)"; one_error
h run protectserver/backup-multi-custodian side=restore token="$T" file="$CG,$CF" shares="$CF,$CG" \
  passphrases="file:$work/ph1,file:$work/ph1"; rc_is 1
has err "card card-g: share 2: wrong passphrase"; one_error
check "refused: nothing written" [ "$(objects "$TL")" = 0 ]
h run protectserver/backup-multi-custodian side=restore token="$T" file="$CG,$CF" shares="$CG,$CF" \
  passphrases="file:$work/ph2,file:$work/ph1" --json --journal "$work/jr"; rc_is 0
restored "multiple custodian, shares from two cards"
for f in out err "$work/jr"; do cmd="multi-custodian restore ($f)"; lacks "$f" 7gH4xQz9; lacks "$f" alpha-pass; done

# ---- N of M: the lab's three cards, any 2 restore, 1 does not ----
h run protectserver/backup-n-of-m side=backup token="$BLUE" file="$work/n.arc" shares="$C1,$C2,$C3" n=2 m=4; rc_is 1
has err "m=4 custodians, but 3 cards are listed in shares="; one_error
h run protectserver/backup-n-of-m side=backup token="$BLUE" file="$work/n.arc" shares="$C1,$C2,$C3" n=2; rc_is 0
has err "card card-3: share 3 of 3 of set "
for pair in "$C1,$C2" "$C3,$C1" "$C2,$C3"; do
  fresh
  h run protectserver/backup-n-of-m side=restore token="$T" file="$work/n.arc" shares="$pair" --json; rc_is 0
  restored "N of M with cards ${pair//$work\//}"
done
fresh
h run protectserver/backup-n-of-m side=restore token="$T" file="$work/n.arc" shares="$C2"; rc_is 1
has err "1 share given, the set needs 2 (given: card card-2, share 2 of 3)"; one_error
h run protectserver/backup-n-of-m side=restore token="$T" file="$work/n.arc" shares="$C1,$C1"; rc_is 1
has err "card card-1 is given twice (items 1 and 2)"; one_error
h run protectserver/backup-n-of-m side=restore token="$T" file="$work/n.arc" shares="$C1,$CF" \
  passphrases="file:$work/ph1,file:$work/ph1"; rc_is 1
has err "card card-f is share 1 of another share set, not this archive's"; one_error
printf '9999' > bad
h run protectserver/backup-n-of-m side=restore token="$T" file="$work/n.arc" \
  shares="$C1,card:pkcs11:token=card-2?module-path=$FAULT&pin-source=file:$work/bad"
rc_is 1; has err "card card-2: cannot log in to token card-2: C_Login: CKR_PIN_INCORRECT"; one_error
HSMSH_FAULT_LOG=$work/login.log h run protectserver/backup-n-of-m side=restore token="$T" file="$work/n.arc" \
  shares="$C1,card:pkcs11:token=card-2?module-path=$FAULT&pin-source=file:$work/bad"
check "a wrong PIN is tried once: one C_Login on card-2 ($(grep -c C_Login "$work/login.log"))" \
  [ "$(grep -c ' C_Login ' "$work/login.log")" = 1 ]
h run protectserver/backup-n-of-m side=restore token="$T" file="$work/n.arc" shares="$C1,$CA"; rc_is 1
has err "card card-a holds no hsmsh share"; one_error
check "the refused N of M restores wrote nothing" [ "$(objects "$TL")" = 0 ]

# ---- blank means blank ----
h run protectserver/backup-n-of-m side=backup token="$BLUE" file="$work/n2.arc" shares="$C1,$C2,$C3" n=2 --yes; rc_is 1
has err "card card-1 holds share card 1 of 3 of set "; has err "erase the card deliberately first"; one_error
check "a refused backup writes no archive" [ ! -e "$work/n2.arc" ]
newcard card-j
p11 card-j 4444 --write-object pt --type data --label foreign-data > /dev/null
h run protectserver/backup-single-custodian side=backup token="$BLUE" file="$(card card-j),$CE" "$COMPS" --yes; rc_is 1
has err "card card-j is not blank: it holds 1 object(s) not written by hsmsh (data 'foreign-data')"; one_error
blue_same
check "card-j keeps its object" [ "$(objects card-j 4444)" = 1 ]

# ---- a card pulled mid-write ----
# Killed at card-l's 2nd C_CreateObject (its first chunk made): card-l is half-written.
newcard card-k; newcard card-l; newcard card-m
CK=$(card card-k); CL=$(card card-l); CM=$(card card-m)
CLF="card:pkcs11:token=card-l?module-path=$FAULT&pin-source=file:$work/p4"
HSMSH_FAULT="kill:C_CreateObject:2" bash -c '"$0" "$@" > /dev/null 2>&1' "$HSMSH" run protectserver/backup-single-custodian \
  side=backup token="$BLUE" file="$CK,$CLF" "$COMPS" --yes
rc=$?; cmd="backup killed at card-l's 2nd C_CreateObject"; rc_is 137; blue_same
fresh
h run protectserver/backup-single-custodian side=restore token="$T" file="$CK,$CL" "$COMPS" --yes; rc_is 1
has err "card card-l is half-written: archive card 2 of 2 of set "; has err "no completion record"; one_error
check "a half-written card writes nothing" [ "$(objects "$TL")" = 0 ]
h run protectserver/backup-single-custodian side=backup token="$BLUE" file="$CM,$CL" "$COMPS"; rc_is 1
has err "card card-l holds a half-written archive card 2 of 2 of set "; has err "only with --yes"; one_error
h run protectserver/backup-single-custodian side=backup token="$BLUE" file="$CM,$CL" "$COMPS" --yes; rc_is 0
has err "card card-l: archive card 2 of 2 of set "
h run protectserver/backup-single-custodian side=restore token="$T" file="$CL,$CM" "$COMPS" --yes --json; rc_is 0
restored "single custodian onto the half-written card, replaced with --yes"
# The card gone for good (its 3rd C_CreateObject and every C_DestroyObject fail): the error
# names it as half-written, a restore recognises it; the card written before goes back to blank.
newcard card-n; newcard card-o; newcard card-p; newcard card-q
CN=$(card card-n); CO=$(card card-o); COF="card:pkcs11:token=card-o?module-path=$FAULT&pin-source=file:$work/p4"
HSMSH_FAULT="C_CreateObject:3:CKR_DEVICE_REMOVED;C_DestroyObject:*:CKR_DEVICE_REMOVED" \
  h run protectserver/backup-single-custodian side=backup token="$BLUE" file="$CN,$COF" "$COMPS" --yes
rc_is 1; has err "card card-o: C_CreateObject: CKR_DEVICE_REMOVED; the card is half-written"
has err "card card-n: what this run wrote on it was removed"; one_error; blue_same
check "card-n is blank again" [ "$(objects card-n 4444)" = 0 ]
fresh
h run protectserver/backup-single-custodian side=restore token="$T" file="$CN,$CO" "$COMPS" --yes; rc_is 1
has err "card card-n holds no hsmsh archive"; one_error
h run protectserver/backup-single-custodian side=restore token="$T" file="$CO" "$COMPS" --yes; rc_is 1
has err "card card-o is half-written: archive card 2 of 2"; one_error
# A full card: its 4th C_CreateObject says CKR_DEVICE_MEMORY; nothing stays on either card.
CQF="card:pkcs11:token=card-q?module-path=$FAULT&pin-source=file:$work/p4"
HSMSH_FAULT="C_CreateObject:4:CKR_DEVICE_MEMORY" \
  h run protectserver/backup-single-custodian side=backup token="$BLUE" file="$(card card-p),$CQF" "$COMPS" --yes
rc_is 1; has err "card card-q: C_CreateObject: CKR_DEVICE_MEMORY; the card is full"; has err "nothing was kept on it"
one_error; blue_same
check "after the full card: card-q blank" [ "$(objects card-q 4444)" = 0 ]
check "after the full card: card-p blank" [ "$(objects card-p 4444)" = 0 ]
check "no restore token was written by a refused restore" [ "$(objects "$TL")" = 0 ]
check "the one temporary archive left is the killed run's" [ "$(ls "$TMPDIR" | grep -c '^hsmsh-cards-')" = 1 ]
# The half-written card-o replaced (--yes) by a share and half an archive of a new backup.
h run protectserver/backup-multi-custodian side=backup token="$BLUE" file="$CN,$CO" shares="$CN,$CO" --yes; rc_is 0
has err "card card-o: share 2 of 2 of set "; has err "card card-o: archive card 2 of 2 of set "
h run protectserver/backup-multi-custodian side=restore token="$T" file="$CO,$CN" shares="$CO,$CN" --yes --json; rc_is 0
restored "multiple custodian onto the half-written card, replaced with --yes"

finish
