#!/usr/bin/env bash
# The PKCS#11 modules other than SoftHSM2 that Debian 12 ships, started for tests:
#   NSS softokn      a certutil database in DIR/nss, registered with p11-kit
#   tpm2-pkcs11      swtpm (socket TPM) + tpm2-abrmd on a private D-Bus session bus,
#                    a token made by tpm2_ptool in DIR/tpm2-store
#   openCryptoki     pkcsslotd with the soft token (slot 3) initialised
#
#   .ci/modules.sh start [DIR]   install what is missing (Debian 12, root), start, write DIR/env
#   .ci/modules.sh stop  [DIR]   stop the daemons started by start, remove the registration
#   .ci/modules.sh env   [DIR]   print DIR/env (shell, one export per line)
#
# DIR defaults to $HSMSH_MODULES_DIR or /tmp/hsmsh-modules. Tests read DIR/env (the file
# named by HSMSH_MODULES_ENV); a module that cannot be set up makes start fail.
# openCryptoki 3.8 keeps its token in /var/lib/opencryptoki/swtok (compiled in): start
# initialises it only when it is uninitialised or was made by this script before.
set -euo pipefail

cmd=${1:-}
dir=${2:-${HSMSH_MODULES_DIR:-/tmp/hsmsh-modules}}
libdir=/usr/lib/x86_64-linux-gnu
nss_lib=$libdir/libsoftokn3.so
tpm2_lib=$libdir/pkcs11/libtpm2_pkcs11.so
ock_lib=$libdir/opencryptoki/libopencryptoki.so.0
ock_slot=3
ock_tokdir=/var/lib/opencryptoki/swtok
ock_marker=$ock_tokdir/.hsmsh-ci
registration=/etc/pkcs11/modules/hsmsh-ci-nss.module
so_pin=12345678
user_pin=123456

say() { echo "modules: $*" >&2; }
die() { echo "modules: $*" >&2; exit 1; }

install_missing() {
  local pkgs="libnss3 libnss3-tools p11-kit p11-kit-modules opensc dbus swtpm swtpm-tools
              tpm2-abrmd libtss2-tcti-tabrmd0 tpm2-tools libtpm2-pkcs11-1 libtpm2-pkcs11-tools
              python3-tpm2-pkcs11-tools opencryptoki libopencryptoki0 python3"
  local missing="" p
  for p in $pkgs; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
  done
  if [ -n "$missing" ]; then
    say "installing:$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # shellcheck disable=SC2086
    apt-get install -y -qq $missing >/dev/null
  fi
}

# Two free consecutive TCP ports on 127.0.0.1 (swtpm's server and control channel).
free_ports() {
  python3 - <<'EOF'
import socket, random
for _ in range(200):
    p = random.randrange(20000, 60000, 2)
    ok = True
    for q in (p, p + 1):
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", q))
        except OSError:
            ok = False
        finally:
            s.close()
    if ok:
        print(p)
        break
EOF
}

# A process that has exited but is not reaped yet (state Z) counts as gone.
alive() { [ -r "/proc/$1/stat" ] && ! awk '{ exit $3 == "Z" ? 0 : 1 }' "/proc/$1/stat"; }

wait_for() {  # wait_for SECONDS COMMAND...: retries COMMAND every 0.1 s
  local n=$(( $1 * 10 )); shift
  while [ "$n" -gt 0 ]; do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.1; n=$((n - 1))
  done
  return 1
}

start_nss() {
  mkdir -p "$dir/nss"
  printf '%s\n' "$so_pin" >"$dir/nss/pin"
  certutil -N -d "sql:$dir/nss" -f "$dir/nss/pin" || die "certutil -N failed"
  nss_init="configdir='sql:$dir/nss' certPrefix='' keyPrefix='' secmod='secmod.db' flags="
  # p11-kit reads no user configuration for root, so the registration is system-wide.
  mkdir -p "$(dirname "$registration")"
  cat >"$registration" <<EOF
# written by hsmsh .ci/modules.sh start $dir; removed by stop
module: $nss_lib
x-init-reserved: $nss_init
critical: no
EOF
}

start_tpm2() {
  mkdir -p "$dir/tpm" "$dir/tpm2-store"
  dbus-daemon --session --fork --address="unix:path=$dir/dbus.sock" --print-pid=1 \
    >"$dir/dbus.pid" || die "dbus-daemon failed"
  export DBUS_SESSION_BUS_ADDRESS="unix:path=$dir/dbus.sock"
  local port
  port=$(free_ports)
  [ -n "$port" ] || die "no free TCP port pair for swtpm"
  swtpm socket --tpm2 --tpmstate "dir=$dir/tpm" \
    --server "type=tcp,port=$port,bindaddr=127.0.0.1" \
    --ctrl "type=tcp,port=$((port + 1)),bindaddr=127.0.0.1" \
    --flags not-need-init,startup-clear --daemon --pid "file=$dir/swtpm.pid" \
    --log "file=$dir/swtpm.log" || die "swtpm failed to start"
  nohup tpm2-abrmd --session --allow-root --tcti="swtpm:host=127.0.0.1,port=$port" \
    >"$dir/tpm2-abrmd.log" 2>&1 &
  echo $! >"$dir/tpm2-abrmd.pid"
  export TPM2TOOLS_TCTI="tabrmd:bus_type=session" TPM2_PKCS11_TCTI="tabrmd:bus_type=session"
  export TPM2_PKCS11_STORE="$dir/tpm2-store"
  wait_for 10 tpm2_getrandom 4 || die "tpm2-abrmd does not answer (see $dir/tpm2-abrmd.log)"
  tpm2_ptool init --path "$dir/tpm2-store" >"$dir/tpm2-ptool.log" 2>&1 \
    || die "tpm2_ptool init failed (see $dir/tpm2-ptool.log)"
  tpm2_ptool addtoken --pid=1 --sopin="$so_pin" --userpin="$user_pin" --label=hsmsh-tpm \
    --path "$dir/tpm2-store" >>"$dir/tpm2-ptool.log" 2>&1 \
    || die "tpm2_ptool addtoken failed (see $dir/tpm2-ptool.log)"
}

start_ock() {
  # A pkcsslotd already running (not ours) is used and left running by stop.
  if ! { [ -s /var/run/pkcsslotd.pid ] && alive "$(head -n1 /var/run/pkcsslotd.pid)"; }; then
    rm -f /var/run/pkcsslotd.pid
    pkcsslotd || die "pkcsslotd failed to start"
    wait_for 5 test -s /var/run/pkcsslotd.pid || die "pkcsslotd wrote no pid file"
    cp /var/run/pkcsslotd.pid "$dir/pkcsslotd.pid"
  fi
  if [ -e "$ock_tokdir/NVTOK.DAT" ] && [ ! -e "$ock_marker" ]; then
    die "the openCryptoki soft token in $ock_tokdir was not made by this script; not touching it"
  fi
  if [ -e "$ock_marker" ]; then
    # Ours from an earlier run: start from an empty token again.
    find "$ock_tokdir" -mindepth 1 -maxdepth 1 ! -name TOK_OBJ -exec rm -rf {} +
    find "$ock_tokdir/TOK_OBJ" -mindepth 1 -delete 2>/dev/null || true
  fi
  # openCryptoki's default SO PIN is 87654321.
  printf 'hsmsh-ock\n' | pkcsconf -c "$ock_slot" -I -S 87654321 >/dev/null \
    || die "pkcsconf -I (initialise the token) failed"
  touch "$ock_marker"
  pkcsconf -c "$ock_slot" -P -S 87654321 -n "$so_pin" >/dev/null || die "pkcsconf -P failed"
  pkcsconf -c "$ock_slot" -u -S "$so_pin" -n 87654321 >/dev/null || die "pkcsconf -u failed"
  pkcsconf -c "$ock_slot" -p -U 87654321 -n "$user_pin" >/dev/null || die "pkcsconf -p failed"
}

write_env() {
  cat >"$dir/env" <<EOF
# written by .ci/modules.sh start; source it
export HSMSH_MODULES_DIR='$dir'
export HSMSH_NSS_MODULE='$nss_lib'
export HSMSH_NSS_DB='$dir/nss'
export HSMSH_NSS_INIT="$nss_init"
export HSMSH_NSS_REGISTERED='hsmsh-ci-nss'
export HSMSH_NSS_PIN='$so_pin'
export HSMSH_TPM2_MODULE='$tpm2_lib'
export HSMSH_TPM2_TOKEN='hsmsh-tpm'
export HSMSH_TPM2_PIN='$user_pin'
export HSMSH_TPM2_SO_PIN='$so_pin'
export DBUS_SESSION_BUS_ADDRESS='unix:path=$dir/dbus.sock'
export TPM2_PKCS11_TCTI='tabrmd:bus_type=session'
export TPM2TOOLS_TCTI='tabrmd:bus_type=session'
export TPM2_PKCS11_STORE='$dir/tpm2-store'
export HSMSH_OCK_MODULE='$ock_lib'
export HSMSH_OCK_SLOT='$ock_slot'
export HSMSH_OCK_TOKEN='hsmsh-ock'
export HSMSH_OCK_PIN='$user_pin'
export HSMSH_OCK_SO_PIN='$so_pin'
export HSMSH_P11KIT_PROXY='$libdir/p11-kit-proxy.so'
EOF
}

do_stop() {
  local f pid
  for f in tpm2-abrmd swtpm dbus pkcsslotd; do
    [ -s "$dir/$f.pid" ] || continue
    pid=$(head -n1 "$dir/$f.pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do alive "$pid" || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$dir/$f.pid"
  done
  if [ -e "$registration" ] && grep -qF "modules.sh start $dir;" "$registration"; then
    rm -f "$registration"
  fi
}

case "$cmd" in
  start)
    [ "$(id -u)" = 0 ] || die "start needs root (apt-get, pkcsslotd, /etc/pkcs11/modules)"
    t0=$(date +%s.%N)
    install_missing
    [ -d "$dir" ] && do_stop
    rm -rf "$dir"
    mkdir -p "$dir"
    start_nss
    start_tpm2
    start_ock
    write_env
    t1=$(date +%s.%N)
    cat >&2 <<EOF
modules: started in $(python3 -c "print(round($t1 - $t0, 1))") s; environment in $dir/env
  NSS softokn   $nss_lib
                database sql:$dir/nss, token "NSS Certificate DB", PIN $so_pin
                init args (pReserved): $nss_init
                p11-kit name hsmsh-ci-nss ($registration)
  tpm2-pkcs11   $tpm2_lib
                token "hsmsh-tpm", user PIN $user_pin, SO PIN $so_pin, store $dir/tpm2-store
                TPM2_PKCS11_TCTI=tabrmd:bus_type=session DBUS_SESSION_BUS_ADDRESS=unix:path=$dir/dbus.sock
  openCryptoki  $ock_lib
                slot $ock_slot token "hsmsh-ock", user PIN $user_pin, SO PIN $so_pin ($ock_tokdir)
EOF
    ;;
  stop)
    t0=$(date +%s.%N)
    do_stop
    say "stopped in $(python3 -c "print(round($(date +%s.%N) - $t0, 1))") s"
    ;;
  env)
    cat "$dir/env"
    ;;
  *)
    echo "usage: $0 start|stop|env [DIR]" >&2
    exit 2
    ;;
esac
