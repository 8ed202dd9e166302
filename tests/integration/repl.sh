#!/usr/bin/env bash
# repl.sh - drives hsmsh's interactive REPL in a private tmux server: expressions,
# multi-line input, one-line errors, Tab completion (which must never run code), Ctrl-C
# (running code, a typed line, a continuation), Ctrl-D, help, the hsm.ui hooks, and the history
# file (mode 0600, multi-line entries kept whole, no secrets, at most 1000 entries).
# usage: bash tests/integration/repl.sh /path/to/hsmsh
set -u

# shellcheck source=tmux.bash
source "$(dirname "${BASH_SOURCE[0]}")/tmux.bash" "$@"
run() { keys "$2" "$1" @Enter; } # run TEXT ERE: types a line, waits for output matching ERE
# A prompt line (with whatever was typed on it); every Enter adds exactly one. The first
# prompt may come from the real hsm.ui.prompt ("hsmsh[blue:user]> ").
prompts='^(hsmsh(\[[^]]*\])?> ?|custom\[x\]> ?|>> ?)'
stmt() { # stmt TEXT: types a line that prints nothing, waits for the next prompt
    local before
    before=$(count "$prompts")
    tm send-keys -t "$pane" -l "$1"
    tm send-keys -t "$pane" Enter
    wait_more "$prompts" "$before"
}
last_prompt() { screen | grep -E -- "$prompts" | tail -n 1 | grep -qE -- "$1"; }
exit_status() { # waits for hsmsh to end; prints its exit status
    wait_more '^hsmsh-exit=[0-9]+$' 0 && screen | sed -n 's/^hsmsh-exit=//p' | tail -n 1
}
# start NAME VAR=VALUE...: hsmsh with a clean environment. The shell reports its exit
# status in the pane (tmux may reap it late); its INT trap only keeps it alive on Ctrl-C.
start() {
    local name=$1; shift
    tm new-session -d -s "$name" -x 110 -y 40 -c "$tmp" \
        "trap : INT; env -i HOME=$tmp/home TERM=xterm PATH=/usr/bin:/bin INPUTRC=/dev/null $* $(printf %q "$hsmsh"); echo hsmsh-exit=\$?"
    pane=$name
    sockpath=$(tm display-message -p '#{socket_path}')
}

# ------------------------------------------------------------------ session a
hist=$tmp/hist/sub/history
start a "HSMSH_HISTORY=$hist" "XDG_STATE_HOME=$tmp/state-a"
if ! wait_more "$prompts" 0; then
    bad "the REPL starts and prompts"
    echo "repl: $passed passed, $failed failed"
    exit 1
fi
ok "the REPL starts and prompts"
# This test is about the REPL machinery: no hsm.ui hooks unless the test sets them.
stmt 'package.loaded["hsm.ui"] = {}'

check "1+1 prints 2" run '1+1' '^2$'
stmt 'function f(x)'
check "an incomplete line continues on '>> '" last_prompt '^>>'
stmt 'return x*3'
stmt 'end'
check "the multi-line function works: f(4) prints 12" run 'f(4)' '^12$'

check "an error is reported as hsmsh: ..." run 'error("boom")' '^hsmsh: .*boom'
check "an error is one line" [ "$(screen | grep -v 'error("boom")' | grep -c boom)" = 1 ]
check "an error has no traceback" [ "$(count 'traceback')" = 0 ]
check "the REPL goes on after an error" run '"alive" .. 1' '^alive1$'
check "help alone prints the guide, with the API from the annotations" run 'help' '^  hsm\.token\(uri, opts\) +Opens a'
check "help(hsm.token) explains one function, parameter by parameter" run 'help(hsm.token)' '^  opts \(table\|nil\): '
check "help('generic/migrate') is the recipe's help" run "help('generic/migrate')" '^  from \(uri\)'

check "string.fo<Tab> completes to string.format(" keys 'string\.format\($' 'string.fo' @Tab
check "the completed line runs" run '"<%d>", 6*7)' '^<42>$'
stmt 's = setmetatable({}, {__index = {close = function() return "closed" end, clear = 1}})'
check "s:cl<Tab> completes a method through a table __index" keys 's:close\($' 's:cl' @Tab
check "the completed method runs" run ')' '^closed$'
check "io.stdout:fl<Tab> completes a userdata method" keys 'io\.stdout:flush\($' 'io.stdout:fl' @Tab
tm send-keys -t "$pane" C-u
check "string.<Tab><Tab> lists the fields by their short names" \
    keys '^byte +[a-z]' 'string.' @Tab @Tab
tm send-keys -t "$pane" C-u

# A metatable whose __index function records any call: completion must never call it.
stmt 't = setmetatable({}, {__index = setmetatable({}, {__index = function(_, k) trap = k end})})'
for word in 't.' 't.x' 't.x.y' 't:' 't:x'; do
    tm send-keys -t "$pane" -l "$word"
    tm send-keys -t "$pane" Tab Tab C-u
done
check "completion never runs an __index function" run '"trap=" .. tostring(trap)' '^trap=nil$'
stmt '_ = t.probe'
check "(the trap itself works)" run '"trap2=" .. tostring(trap)' '^trap2=probe$'

stmt 'package.loaded["hsm.ui"] = {prompt = function() return "custom[x]> " end, show = function(...) print("SHOW:" .. select("#", ...)) end}'
check "hsm.ui.prompt gives the prompt" last_prompt '^custom\[x\]> ?$'
check "hsm.ui.show gets all results" run '1, "a", nil' '^SHOW:3$'
stmt 'package.loaded["hsm.ui"].show = function() error("showfail") end'
check "a failing show is reported, then results are printed plainly" run '"plain" .. 1' '^plain1$'
check "(the show error was reported)" [ "$(count '^hsmsh: .*showfail')" = 1 ]
check "a failing prompt is reported" run 'package.loaded["hsm.ui"].prompt = function() error("promptfail") end' '^hsmsh: .*promptfail'
check "a failing prompt falls back to 'hsmsh> '" last_prompt '^hsmsh> ?$'
stmt 'package.loaded["hsm.ui"] = nil; package.preload["hsm.ui"] = nil'
check "no hsm.ui module: plain results" run '3*3' '^9$'
check "(and no 'not found' message)" [ "$(count 'not found')" = 0 ]
stmt 'package.loaded["hsm.ui"] = {}'

keys '^looping$' 'print("looping") while true do end' @Enter
check "Ctrl-C stops running Lua code with 'interrupted'" keys 'hsmsh: .*interrupted' @C-c
check "the prompt comes back after an interrupt" run '"after" .. 1' '^after1$'
keys '\^C$' 'garbage_zz' @C-c
check "Ctrl-C at the prompt clears the line and does not exit" run '"still" .. "here"' '^stillhere$'
check "(the cleared line was not run)" [ "$(count '^hsmsh: .*garbage_zz')" = 0 ]
stmt 'if true then'
keys '\^C$' @C-c
check "Ctrl-C in a continuation drops the whole entry" run '"x" .. "y"' '^xy$'

stmt 'shared = 7'
stmt 'x = "pin-value=1234"'
stmt 'pin = "4321"'
stmt 'n_shares = 3'
stmt 'do'
stmt 'local passphrase = "correct horse"'
stmt 'end'
# Lua quotes source constants in some messages; for a secret line they are withheld.
check "a PIN-looking constant is withheld from the error" run 'y = "pin-value=99" | 1' "^hsmsh: .*constant '<withheld>'"
check "a PIN-looking token is withheld from a syntax error" run 'y = 1 "pin-value=98"' "^hsmsh: .*near '<withheld>'"
check "errors on secret lines do not echo the secret" \
    [ "$(count 'pin-value=9[89]')" = 2 ] # the two typed lines only
check "Up skips secret entries (not in memory)" keys '^hsmsh> shared = 7$' @Up
tm send-keys -t "$pane" C-u

tm send-keys -t "$pane" C-d
status=$(exit_status)
check "Ctrl-D exits with status 0 (got '$status')" [ "$status" = 0 ]

check "the history file exists" [ -f "$hist" ]
check "the history file has mode 600" [ "$(stat -c %a "$hist" 2>/dev/null)" = 600 ]
check "its directory was made with mode 700" [ "$(stat -c %a "$tmp/hist/sub" 2>/dev/null)" = 700 ]
check "history holds 1+1" grep -qFx '1+1' "$hist"
check "history holds a multi-line entry as one" grep -qFx 'function f(x)\nreturn x*3\nend' "$hist"
check "history holds an innocent 'shared' line" grep -qFx 'shared = 7' "$hist"
check "history holds no secret line" lacks 'pin-value|4321|n_shares|passphrase' "$hist"

# ------------------------------------------------------------------ session b
# The default path under XDG_STATE_HOME; an old file with mode 644, more than 1000
# entries and a secret line is loaded, fixed to 600, trimmed and cleaned.
old=$tmp/state-b/hsmsh/history
mkdir -p "$tmp/state-b/hsmsh"
{
    for ((i = 1; i <= 1100; i++)); do echo "old_$i = $i"; done
    echo 'pin = "5555"'
    echo '"recalled" .. "!"'
} >"$old"
chmod 644 "$old"
start b "XDG_STATE_HOME=$tmp/state-b"
wait_more "$prompts" 0
stmt 'package.loaded["hsm.ui"] = {}'
check "history is loaded: Up Up recalls the last old entry" keys '^recalled!$' @Up @Up @Enter
tm send-keys -t "$pane" C-d
check "Ctrl-D exits with status 0 again" [ "$(exit_status)" = 0 ]
check "the old file's mode is fixed to 600" [ "$(stat -c %a "$old")" = 600 ]
check "the old file is cut to 1000 entries" [ "$(wc -l <"$old")" = 1000 ]
check "the old file lost its secret line" lacks 5555 "$old"
check "the old file keeps the newest entries" grep -qFx 'old_1100 = 1100' "$old"

# ------------------------------------------------------------------ session c
# The real hsm.ui printer on a real token: slots, token facts, mechanisms (flags, key
# sizes), sessions and objects print as aligned tables; objects sorted by class, ID, label.
mkdir -p "$tmp/tokens"
printf 'directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n' "$tmp" >"$tmp/softhsm2.conf"
SOFTHSM2_CONF=$tmp/softhsm2.conf softhsm2-util --init-token --free --label tables --pin 1234 --so-pin 12345678 >/dev/null
# The rows of the newest table whose header matches ERE, up to the next prompt.
table_rows() { screen | awk -v h="$1" '$0 ~ h {t = ""; on = 1; next} on && /^hsmsh/ {on = 0} on {t = t $0 "\n"} END {printf "%s", t}'; }
start c "SOFTHSM2_CONF=$tmp/softhsm2.conf" "HSMSH_HISTORY="
wait_more "$prompts" 0
stmt 'm = hsm.open()'
check "m:slots() prints a table of slots and their tokens" run 'm:slots()' '^SLOT +LABEL +MANUFACTURER +MODEL +SERIAL +FLAGS$'
check "(a row per slot, with the token's label and flags)" [ "$(table_rows '^SLOT ' | grep -cE '^[0-9]+ +tables +SoftHSM project +SoftHSM v2 +[0-9a-f]+ +.*token-initialized')" = 1 ]
check "m:token_info(slot) prints a one-row table" run 'm:token_info(m:slots()[1])' '^LABEL +MANUFACTURER +MODEL +SERIAL +FLAGS$'
check "m:mechanisms(slot) prints mechanisms with key sizes and flags" run 'm:mechanisms(m:slots()[1])' '^MECHANISM +MIN +MAX +FLAGS$'
mechs=$(table_rows '^MECHANISM ' | awk '{print $1}')
check "(CKM_AES_KEY_GEN: key sizes 16 to 32, flag generate)" [ "$(table_rows '^MECHANISM ' | grep -cE '^CKM_AES_KEY_GEN +16 +32 +generate$')" = 1 ]
check "(mechanisms sorted by name)" bash -c '[ "$(wc -l <<<"$1")" -gt 20 ] && sort -c <<<"$1"' _ "$mechs"
stmt 's = hsm.token("pkcs11:token=tables?pin-value=1234")'
check "a session prints as a table" run 's' '^SLOT +TOKEN +STATE +RW$'
check "(its row: the token, logged in, read-write)" [ "$(table_rows '^SLOT +TOKEN' | grep -cE '^[0-9]+ +tables +rw-user +yes$')" = 1 ]
stmt 'for _, k in ipairs({{"zeta", "\2"}, {"alpha", "\2"}, {"mid", "\1"}}) do s:generate{type = "AES", bits = 128, label = k[1], id = k[2]} end'
stmt 's:create{CKA_CLASS = "CKO_DATA", CKA_TOKEN = true, CKA_LABEL = "note"}'
check "s:objects() prints an object table" run 's:objects()' '^CLASS +TYPE +BITS +LABEL +ID'
order=$(table_rows '^CLASS ' | awk '{print $1}' | paste -sd' ')
labels=$(table_rows '^CLASS ' | grep -oE '\b(note|mid|alpha|zeta)\b' | paste -sd' ')
check "objects sorted by class, ID, label (got: $order / $labels)" \
    [ "$order" = "data secret-key secret-key secret-key" -a "$labels" = "note mid alpha zeta" ]
check "help(s) lists a session's methods, documented ones with their signature" run 'help(s)' '^  :generate\(spec\) +Generates a key'
check "help(m) lists a module's methods" run 'help(m)' '^Module methods'
tm send-keys -t "$pane" C-d
check "Ctrl-D exits session c with status 0" [ "$(exit_status)" = 0 ]

echo "repl: $passed passed, $failed failed"
((failed == 0))
