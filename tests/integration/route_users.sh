#!/usr/bin/env bash
# The routing module used by applications running as another user than the operator (issue
# 12, Deliver 7): the operator (root) makes the state; pkcs11-tool runs through the module as
# user nobody. The state must be readable, and the birth journal and statistics writable, by
# the application: with `route init ... group=nogroup` they are (0660/02770, the group's),
# and a key nobody generates is on the write side, in the journal and in `route status`.
# Without it, or for a user outside the group, a token write that cannot be journalled
# fails and leaves nothing on the token.
NAME=route_users
here=$(cd "$(dirname "$0")" && pwd)
. "$here/common.bash"
ROUTE=${HSMSH_ROUTE_LIB:?HSMSH_ROUTE_LIB is not set (run through ctest)}
[ "$(id -u)" -eq 0 ] || { echo "FAIL: route_users runs as root (it switches to nobody and daemon)"; exit 1; }
for u in nobody daemon; do
  id "$u" > /dev/null 2>&1 || { echo "FAIL: no user $u"; exit 1; }
done
getent group nogroup > /dev/null || { echo "FAIL: no group nogroup"; exit 1; }

# What the other users may reach: a directory of their own (mktemp's are root's, 0700).
shared=$(mktemp -d /tmp/hsmsh-route-users.XXXXXX)
trap 'rm -rf "$work" "$shared"' EXIT
chmod 0755 "$shared"
mkdir "$shared/tokens" "$shared/route"
chown nobody:nogroup "$shared/tokens"
printf 'directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n' "$shared" > "$shared/softhsm2.conf"
chmod 0644 "$shared/softhsm2.conf"
STATE=$shared/route/state

as() {  # as USER CMD...: CMD as USER, with the run's SoftHSM2 and route state; sets $rc, out, err
  local u=$1; shift
  cmd="($u) $*"
  runuser -u "$u" -- env -i PATH="$PATH" SOFTHSM2_CONF="$shared/softhsm2.conf" \
    HSMSH_ROUTE_STATE="$STATE" HOME=/tmp "$@" > out 2> err < /dev/null
  rc=$?
}
p11() {  # p11 USER MODULE ARGS...: pkcs11-tool logged in
  local u=$1 m=$2; shift 2
  as "$u" pkcs11-tool --module "$m" --login --pin 1234 "$@"
}
for t in blue green; do
  as nobody softhsm2-util --init-token --free --label "$t" --pin 1234 --so-pin 12345678; rc_is 0
done
blue_has() {  # blue_has LABEL: is an object labelled LABEL on blue (pkcs11-tool straight)?
  p11 nobody "$MODULE" --token-label blue --list-objects
  [ "$rc" -eq 0 ] || { echo "pkcs11-tool-failed"; return; }
  grep -c "label: *$1\$" out
}
BLUE="pkcs11:token=blue?module-path=$MODULE" GREEN="pkcs11:token=green?module-path=$MODULE"

# ---- without group=: the state is readable, the journal is not writable by nobody ----
h route init "$STATE" blue="$BLUE" green="$GREEN"; rc_is 0
check "the state is 0644: $(stat -c %a "$STATE")" [ "$(stat -c %a "$STATE")" = 644 ]
p11 nobody "$ROUTE" --list-objects; rc_is 0           # reads work: the state is readable
p11 nobody "$ROUTE" --keygen --key-type AES:16 --label unjournalled --id 01
check "a write nobody cannot journal fails (exit $rc)" [ "$rc" -ne 0 ]
has err "CKR_FUNCTION_FAILED"
n=$(blue_has unjournalled)
check "and leaves nothing on blue ($n)" [ "$n" = 0 ]

# ---- group=nogroup: nobody's application journals, and reports statistics ----
rm -f "$STATE" "$STATE".*
h route init "$STATE" blue="$BLUE" green="$GREEN" group=nogroup; rc_is 0
has out "users of group nogroup may write its birth journal, log and statistics"
for f in "$STATE.births" "$STATE.log"; do
  m=$(stat -c '%a %G' "$f")
  check "$f is 660 nogroup ($m)" [ "$m" = "660 nogroup" ]
done
m=$(stat -c '%a %G' "$STATE.stats.d")
check "the statistics directory is 2770 nogroup ($m)" [ "$m" = "2770 nogroup" ]
p11 nobody "$ROUTE" --keygen --key-type AES:16 --label journalled --id 02; rc_is 0
n=$(blue_has journalled)
check "the key is on blue, the write side ($n)" [ "$n" = 1 ]
check "the birth journal has it" grep -q '"label":"journalled"' "$STATE.births"
lines=$(grep -c . "$STATE.births")
check "and only it ($lines line)" [ "$lines" = 1 ]
h route status "$STATE" --json; rc_is 0
w=$(python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); print(d["sides"]["blue"]["writes"])' out 2>/dev/null)
check "route status counts nobody's write (writes=$w)" [ "$w" = 1 ]
stat_owner=$(stat -c %U "$STATE.stats.d"/*.json 2>/dev/null | sort -u | tr '\n' ' ')
check "the statistics file is nobody's ($stat_owner)" [ "$stat_owner" = "nobody " ]

# ---- a user outside the group may not write the journal, so not the token ----
chmod 0755 "$shared/tokens"; chmod -R a+rwX "$shared/tokens"   # daemon may reach SoftHSM2's files
p11 daemon "$ROUTE" --keygen --key-type AES:16 --label outsider --id 03
check "daemon (not in nogroup) cannot write through the module (exit $rc)" [ "$rc" -ne 0 ]
has err "CKR_FUNCTION_FAILED"
n=$(blue_has outsider)
check "nothing of daemon's on blue ($n)" [ "$n" = 0 ]
lacks "$STATE.births" '"label":"outsider"'
finish
