#!/usr/bin/env bash
# completion.sh - the bash completion (shell/hsmsh-completion.bash) in a real interactive
# bash in a private tmux server: commands, recipe names, parameter names (NAME= with no
# space after it), enum and boolean values, options, route keys, the file-name fallback;
# and, without a terminal, that `hsmsh complete` offers exactly the recipes `hsmsh recipes`
# lists and exactly the parameters of each recipe's table.
# usage: bash tests/integration/completion.sh /path/to/hsmsh
set -u
# shellcheck source=tmux.bash
source "$(dirname "${BASH_SOURCE[0]}")/tmux.bash" "$@"
# The script as `cmake --install` puts it (hsmsh is in the top of its build directory).
cmake --install "$(dirname "$hsmsh")" --prefix "$tmp/prefix" >/dev/null
script=$tmp/prefix/share/bash-completion/completions/hsmsh
check "cmake --install puts the completion in share/bash-completion/completions/hsmsh" [ -f "$script" ]

# ---- hsmsh complete, checked against what hsmsh reports elsewhere ----
listed=$("$hsmsh" recipes | awk 'NR > 1 {print $1}' | sort -u)
offered=$("$hsmsh" complete run "" | sort)
check "complete run '' offers the recipes 'hsmsh recipes' lists" [ -n "$listed" -a "$listed" = "$offered" ]
for id in $listed; do
    want=$("$hsmsh" -e "for _, n in ipairs(require('hsm.help').param_names(require('hsm.recipe').load(require('hsm.recipe').find('$id')))) do print(n .. '=') end")
    got=$("$hsmsh" complete run "$id" "" | grep '=$')
    check "complete run $id '' offers its parameters" [ "$want" = "$got" ]
done
check "an unknown command completes to nothing" [ -z "$("$hsmsh" complete nosuch "")" ]

# ---- interactive: a bash with the completion sourced ----
mkdir -p "$tmp/bin" "$tmp/cwd"
ln -s "$hsmsh" "$tmp/bin/hsmsh"
: >"$tmp/cwd/journal-one.jsonl"
printf 'source %q\nPS1="$ "\n' "$script" >"$tmp/bashrc"
tm new-session -d -s c -x 150 -y 50 -c "$tmp/cwd" \
    "env -i HOME=$tmp/home TERM=xterm PATH=$tmp/bin:/usr/bin:/bin INPUTRC=/dev/null bash --rcfile $tmp/bashrc -i"
pane=c
sockpath=$(tm display-message -p '#{socket_path}')
if ! wait_more '^\$ ?$' 0; then
    bad "bash starts with the completion"
    echo "completion: $passed passed, $failed failed"
    exit 1
fi
last() { screen | grep -v '^$' | tail -n 1 | grep -qE -- "$1"; }
# tab TEXT ERE: types TEXT and Tab, waits until the last line matches ERE (5 s at most)
tab() {
    local i
    tm send-keys -t "$pane" -l -- "$1"
    tm send-keys -t "$pane" Tab
    for ((i = 0; i < 100; i++)); do last "$2" && return 0; sleep 0.05; done
    return 1
}
clear_line() { tm send-keys -t "$pane" C-u; tm send-keys -t "$pane" -l "clear"; tm send-keys -t "$pane" Enter; wait_more '^\$ ?$' 0; }

check "hsmsh ru<Tab> completes the command, then a space" tab 'hsmsh ru' '^\$ hsmsh run $'
check "run generic/mi<Tab> completes the recipe" tab 'generic/mi' '^\$ hsmsh run generic/migrate $'
check "fr<Tab> completes a parameter name, with no space after =" tab 'fr' 'generic/migrate from=$'
check "(the value then follows the =)" tab 'x ' 'from=x $'
check "transport=rsa-a<Tab> completes an enum value" tab 'transport=rsa-a' 'from=x transport=rsa-aes $'
check "keep_transport=y<Tab> completes a boolean value" tab 'keep_transport=y' 'transport=rsa-aes keep_transport=yes $'
check "--dr<Tab> completes an option" tab '--dr' 'keep_transport=yes --dry-run $'
check "--journal jou<Tab> falls back to file names" tab '--journal jou' '--journal journal-one\.jsonl $'
clear_line
tm send-keys -t "$pane" -l 'hsmsh run generic/migrate transport='
tm send-keys -t "$pane" Tab Tab
check "transport=<Tab><Tab> lists the enum values" wait_more '^aes-kwp +auto +rsa-aes +rsa-oaep *$' 0
clear_line
check "help protectserver/tru<Tab> completes after help" tab 'hsmsh help protectserver/tru' 'help protectserver/trust $'
clear_line
check "run generic/migrate@<Tab> completes a version" tab 'hsmsh run generic/migrate@' 'run generic/migrate@1\.0\.0 $'
clear_line
check "route set STATE write=g<Tab> completes a route value" tab 'hsmsh route set st.json write=g' 'write=green $'
clear_line
check "route set STATE write=<Tab> keeps the line (two values)" tab 'hsmsh route set st.json write=' 'write=$'
tm send-keys -t "$pane" -l g
tm send-keys -t "$pane" Tab
check "(and then the value)" wait_more 'write=green $' 0
clear_line
check "route set STATE mode=li<Tab> completes a route value" tab 'hsmsh route set st.json mode=li' 'mode=limited-write $'
clear_line
check "--debug r<Tab> completes after a global option" tab 'hsmsh --debug r' 'hsmsh --debug r$'
tm send-keys -t "$pane" Tab
check "(r<Tab><Tab> lists route, run, recipes, resume)" wait_more '^recipes +resume +route +run *$' 0

echo "completion: $passed passed, $failed failed"
((failed == 0))
