#!/usr/bin/env bash
# man: docs/hsmsh.1 covers what hsmsh carries. Its RECIPES section is what `hsmsh help --man`
# makes from the recipe tables now (else: cmake --build build --target man); it names every
# command and option of hsm.help's tables, every route key, every environment variable the
# code reads and every exit code; groff formats it without a warning; and `cmake --install`
# puts it in share/man/man1.
# Usage: bash man.sh /abs/path/to/hsmsh
set -u
NAME=man
src=$(realpath "$(dirname "${BASH_SOURCE[0]}")/../..")
# shellcheck source=common.bash
source "$src/tests/integration/common.bash" "$@"
page=$src/docs/hsmsh.1

cp "$page" page.1
"$HSMSH" "$src/cmake/man.lua" page.1 > out 2> err
rc=$?; cmd="hsmsh cmake/man.lua (a copy of docs/hsmsh.1)"; rc_is 0
check "docs/hsmsh.1's RECIPES section is what the recipe tables make (run: cmake --build build --target man; diff: $(diff "$page" page.1 | head -c 300 | tr '\n' '|'))" \
  cmp -s "$page" page.1

groff -man -ww -z "$page" 2> groff.err
check "groff formats docs/hsmsh.1 without a warning ($(show groff.err))" [ ! -s groff.err ]
# The page as text, unhyphenated, one paragraph a line; and its sections.
groff -man -Tutf8 -rHY=0 -rLL=2000n -P-cbou "$page" 2>/dev/null | sed 's/‐/-/g' > page.txt
section() { awk -v s="$1" '/^[A-Z][A-Z ]+$/ {on = ($0 == s); next} on' page.txt; }
section "SYNOPSIS" > synopsis.txt
section "COMMANDS" > commands.txt
section "ENVIRONMENT" > env.txt
section "EXIT STATUS" > exit.txt
section "RECIPES" > recipes.txt
check "the page has its sections" [ -s synopsis.txt -a -s commands.txt -a -s env.txt -a -s exit.txt -a -s recipes.txt ]

"$HSMSH" -e '
local help, cli = require("hsm.help"), require("hsm.cli")
for _, c in ipairs(help.commands) do if c[1] ~= "" then print("command " .. c[1]) end end
for _, l in ipairs({help.global_options, help.run_options, help.resume_options}) do
  for _, o in ipairs(l) do print("option " .. o[1]) end
end
for sub, keys in pairs(cli.route_keys) do
  print("command route " .. sub)
  for k in pairs(keys) do print("key " .. k) end
end' | sort -u > names.txt
check "hsm.help's tables were read" [ "$(grep -c . names.txt)" -ge 15 ]
while read -r kind name; do
  case $kind in
    command) check "SYNOPSIS has hsmsh $name" grep -q "^ *hsmsh $name\\b" synopsis.txt
             if [ "${name#route }" = "$name" ]; then re="^ {7}$name\\b"; else re="^ {7}route [a-z|]*\\b${name#route }\\b"; fi
             check "COMMANDS explains $name" grep -qE "$re" commands.txt ;;
    option) check "the page explains option $name" grep -qE -- "^ *$name\\b" page.txt ;;
    key) check "the page explains route key $name=" grep -qF -- "$name=" commands.txt ;;
  esac
done < names.txt

# Every environment variable the code reads (but PWD).
grep -rhoE 'getenv\("[A-Z0-9_]+"\)' "$src"/{shell,backends,lua,stdlib,route} | sed 's/getenv("//; s/")//' |
  sort -u | grep -vx PWD > vars.txt
check "the code's environment variables were found" [ "$(grep -c . vars.txt)" -ge 10 ]
while read -r v; do check "ENVIRONMENT names $v" grep -qw -- "$v" env.txt; done < vars.txt
for code in 0 1 2 3 4; do check "EXIT STATUS explains $code" grep -qE "^ *$code( |$)" exit.txt; done

h recipes; rc_is 0
for id in $(awk 'NR > 1 {print $1}' out | sort -u); do
  check "RECIPES has $id" grep -q "^ *$id [0-9]" recipes.txt
done

cmake --install "$(dirname "$HSMSH")" --prefix "$work/prefix" > /dev/null
check "cmake --install puts docs/hsmsh.1 in share/man/man1" cmp -s "$page" "$work/prefix/share/man/man1/hsmsh.1"
finish
