# tmux.bash - sourced by the scripts that drive an interactive program in a private tmux
# server (not a test itself): $hsmsh (the binary, from $1), $tmp (removed on exit), the
# pane helpers (tm, screen, count, wait_more, keys) and the check counters (check, ok, bad).
# The script names its pane by setting $pane and $sockpath (for the clean-up) after
# starting its session.
hsmsh=$(realpath "${1:?usage: $0 /path/to/hsmsh}")
command -v tmux >/dev/null || { echo "$0: tmux is not installed"; exit 1; }
unset TMUX
tmp=$(mktemp -d)
sock=hsmsh-tmux-$$
sockpath=
cleanup() {
    tmux -L "$sock" kill-server 2>/dev/null
    [ -n "$sockpath" ] && rm -f "$sockpath" # tmux leaves it behind
    rm -rf "$tmp"
}
trap cleanup EXIT
mkdir -p "$tmp/home"
printf 'set -g remain-on-exit on\nset -g history-limit 10000\nset -g default-shell /bin/sh\n' >"$tmp/tmux.conf"

passed=0 failed=0
pane=a
tm() { tmux -L "$sock" -f "$tmp/tmux.conf" "$@"; }
screen() { tm capture-pane -p -J -S - -t "$pane"; }
count() { screen | grep -cE -- "$1"; }
ok() { passed=$((passed + 1)); echo "ok   $1"; }
bad() {
    failed=$((failed + 1))
    echo "FAIL $1"
    screen | grep -v '^$' | tail -n 12 | sed 's/^/     | /'
}
lacks() { ! grep -qEi -- "$1" "$2"; } # lacks ERE FILE
check() { # check DESCRIPTION COMMAND...
    local what=$1; shift
    if "$@"; then ok "$what"; else bad "$what"; fi
}

# Waits (5 s at most) until more lines match ERE than the baseline.
wait_more() { # ERE BASELINE
    local i
    for ((i = 0; i < 100; i++)); do
        (($(count "$1") > $2)) && return 0
        sleep 0.05
    done
    echo "TIMEOUT waiting for $1" >&2
    return 1
}
# Sends keys (words starting with @ are key names, others literal text), then waits
# for one more line matching ERE.
keys() { # ERE KEY...
    local re=$1 before k; shift
    before=$(count "$re")
    for k in "$@"; do
        case $k in
            @*) tm send-keys -t "$pane" "${k#@}" ;;
            *) tm send-keys -t "$pane" -l "$k" ;;
        esac
    done
    wait_more "$re" "$before"
}
