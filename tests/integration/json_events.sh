#!/usr/bin/env bash
# json_events: what --json prints is what docs/json-events.md says. Representative runs
# (inventory, a migrate dry run, a migrate, its resume, a backup and a restore, a failing
# run, the blue/green steps prepare, parity, sync and status, a backup onto custodian cards) print only JSON lines on stdout, each an event the doc lists for that recipe, with
# only listed fields of the listed types and every field marked "always". And the doc and
# the code name the same events: every event name a ctx.emit site of the stdlib or a recipe
# can print is documented (under its recipe's section), and every documented one is emitted
# somewhere.
# Usage: bash json_events.sh /abs/path/to/hsmsh
set -u
NAME=json_events
src=$(realpath "$(dirname "${BASH_SOURCE[0]}")/../..")
# shellcheck source=common.bash
source "$src/tests/integration/common.bash" "$@"
doc=$src/docs/json-events.md

"$HSMSH" lab init > /dev/null 2>&1
softhsm2-util --init-token --free --label ps3 --pin 1234 --so-pin 12345678 > /dev/null
printf '1234' > pin
BLUE="pkcs11:token=blue?pin-source=file:$work/pin"
GREEN="pkcs11:token=green?pin-source=file:$work/pin"
PS3="pkcs11:token=ps3?pin-source=file:$work/pin"
printf '0832240A34365AEB8273A6535EF80FA99CB5FCE8D2A19EE1977CB8D664F86968\n' > c1
printf '263FF91EE9C7A5ECC58AFFA35B4F6A5443F0DA3B5ABE60FB45260AEA8C9458F7\n' > c2
COMPS="components=file:$work/c1,file:$work/c2"

: > runs.txt
# j RECIPE EXPECTED-EXIT ARGS...: runs hsmsh ARGS with --json, keeps its stdout for the checks
n=0
j() {
  local id=$1 want=$2; shift 2
  n=$((n + 1))
  h "$@" --json; rc_is "$want"
  cp out "run$n.json"
  check "$cmd printed events" [ -s out ]
  printf '%s %s %s\n' "$id" "run$n.json" "run $n (hsmsh $1 $2 ...)" >> runs.txt
}
j generic/inventory 0 run generic/inventory token="$BLUE"
j generic/migrate 0 run generic/migrate from="$BLUE" to="$GREEN" --dry-run
j generic/migrate 0 run generic/migrate from="$BLUE" to="$GREEN" --journal "$work/mig.journal"
j generic/migrate 0 resume "$work/mig.journal" from="$BLUE" to="$GREEN"
j protectserver/backup-file 0 run protectserver/backup-file side=backup token="$BLUE" file="$work/b.arc" "$COMPS" --yes
j protectserver/backup-file 0 run protectserver/backup-file side=restore token="$PS3" file="$work/b.arc" "$COMPS" --yes
j generic/migrate 1 run generic/migrate from="$BLUE" to="pkcs11:token=nothere?pin-value=1"
has run7.json '"event":"error"'
BG="state=$work/bg.state"
j generic/blue-green 0 run generic/blue-green step=prepare "$BG" blue="$BLUE" green="$GREEN"
for s in parity sync status; do j generic/blue-green 0 run generic/blue-green step=$s "$BG" pin_source="file:$work/pin"; done
# A backup onto the lab's custodian cards (their card events).
printf '1111' > p1; printf '2222' > p2
j protectserver/backup-single-custodian 0 run protectserver/backup-single-custodian side=backup token="$BLUE" \
  file="card:pkcs11:token=card-1?pin-source=file:$work/p1,card:pkcs11:token=card-2?pin-source=file:$work/p2" "$COMPS" --yes
has "run$n.json" '"event":"card"'

res=$(python3 - "$doc" "$src" runs.txt <<'PYEOF'
import glob, json, os, re, sys
doc, src, runs = sys.argv[1:4]
# The doc: "## ... (recipes: `a`, `b` | all)" sections, "### `event`" tables of
# "| `field` | type | always/optional | meaning |".
sections, sec, ev = [], None, None
for line in open(doc):
    if line.startswith("## "):
        m = re.search(r"\(recipes: (.*)\)\s*$", line)
        sec = None
        if m:
            ids = "all" if m.group(1).strip() == "all" else set(re.findall(r"`([^`]+)`", m.group(1)))
            sec = {"title": line[3:].strip(), "recipes": ids, "events": {}}
            sections.append(sec)
    elif line.startswith("### ") and sec is not None:
        ev = {}
        sec["events"].setdefault(re.match(r"### `([\w-]+)`", line).group(1), []).append(ev)
    elif line.startswith("| `") and ev is not None:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        ev[cells[0].strip("`")] = (cells[1], cells[2] == "always")
bad = []
if len(sections) < 5: bad.append("the doc has %d sections with (recipes: ...)" % len(sections))
def applies(sec, rid): return sec["recipes"] == "all" or rid in sec["recipes"]
TYPES = {"string": lambda v: isinstance(v, str), "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
         "boolean": lambda v: isinstance(v, bool), "array": lambda v: isinstance(v, list) or v == {},
         "object": lambda v: isinstance(v, dict)}
def mismatch(d, fields):
    for k, v in d.items():
        if k not in fields: return "field %s is not documented" % k
        t = fields[k][0]
        if t not in TYPES: return "the doc gives %s an unknown type %s" % (k, t)
        if not TYPES[t](v): return "field %s is %r, documented as %s" % (k, v, t)
    for k, (t, always) in fields.items():
        if always and k not in d: return "field %s (always) is missing" % k
    return None
seen = 0
for line in open(runs):
    rid, path, cmd = line.rstrip("\n").split(" ", 2)
    for i, l in enumerate(open(path), 1):
        try: d = json.loads(l)
        except ValueError: bad.append("%s: line %d is not JSON: %r" % (cmd, i, l[:80])); continue
        if not isinstance(d, dict) or not isinstance(d.get("event"), str):
            bad.append("%s: line %d has no event: %r" % (cmd, i, l[:80])); continue
        seen += 1
        variants = [f for s in sections if applies(s, rid) for f in s["events"].get(d["event"], [])]
        if not variants:
            bad.append("%s: event %s is not documented for %s" % (cmd, d["event"], rid)); continue
        why = [mismatch(d, f) for f in variants]
        if all(why): bad.append("%s: line %d, event %s: %s" % (cmd, i, d["event"], "; ".join(why)))
if seen < 50: bad.append("only %d events were checked" % seen)
# The code's emit sites: the event name on the ctx.emit line, or given to X.event just before.
code = {}
for path in sorted(glob.glob(src + "/stdlib/hsm/*.lua") + glob.glob(src + "/recipes/*/*/*.lua")):
    text = open(path).read()
    rel = os.path.relpath(path, src)
    rid = rel.split("/", 1)[1].rsplit("/", 1)[0] if rel.startswith("recipes/") else None
    names = set(re.findall(r'ctx\.emit\(\{event = "([\w-]+)"', text))
    if "ctx.emit(" in text:
        names |= set(re.findall(r'\b\w+\.event(?:, [\w.]+)* = "([\w-]+)"', text))
    for name in names:
        code.setdefault(name, set()).add(rel)
        if rid and not any(name in s["events"] and applies(s, rid) for s in sections):
            bad.append("%s emits %s: not documented for %s" % (rel, name, rid))
        if not rid and not any(name in s["events"] for s in sections):
            bad.append("%s emits %s: not documented" % (rel, name))
for s in sections:
    for name in s["events"]:
        if name not in code: bad.append("the doc's %s (%s) is emitted nowhere" % (name, s["title"][:30]))
    if s["recipes"] != "all":
        for rid in s["recipes"]:
            if not glob.glob("%s/recipes/%s/*.lua" % (src, rid)): bad.append("the doc names no recipe %s" % rid)
if len(code) < 15: bad.append("only %d event names found in the code" % len(code))
print("; ".join(bad[:8]) if bad else "ok %d" % seen)
PYEOF
)
check "every emitted event is documented, with its fields and types, and the doc names the code's events ($res)" \
  [ "${res%% *}" = ok ]; echo "($res)"
finish
