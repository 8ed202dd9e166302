#!/usr/bin/env bash
# help: the help a new user reaches from `hsmsh --help`. For every embedded recipe,
# `hsmsh help R`, `hsmsh run R --help` and `hsmsh recipes R` print the same text, and it
# carries the description, every parameter of the recipe's table with its type, its
# required/optional/default, its doc and its allowed values, every phase, the side values
# and an example whose parameters are all known to the recipe. Mistyped names get the
# closest one and a pointer to the help.
# Usage: bash help.sh /abs/path/to/hsmsh
set -u
NAME=help
# shellcheck source=common.bash
source "$(dirname "${BASH_SOURCE[0]}")/common.bash" "$@"

# ---- the commands ----
h --help; rc_is 0
for c in run resume recipes help lab; do has out "hsmsh $c"; done
has out "--dry-run"; has out "--journal FILE"; has out "Exit codes"
h help; rc_is 0
check "hsmsh help (no recipe) prints what hsmsh --help prints" \
  bash -c "diff <('$HSMSH' --help) out >/dev/null"

# ---- every recipe's help, checked against its table ----
# The tables as JSON, read by hsmsh itself from the embedded recipes (not from the help).
"$HSMSH" -e '
local recipe, json = require("hsm.recipe"), require("hsm.json")
local out = {}
for _, r in ipairs(recipe.list()) do
  local rec = recipe.load(r)
  local params = {}
  for k, p in pairs(rec.params or {}) do
    params[k] = {type = p.type or "string", doc = p.doc or "", values = p.values,
                 default = p.default, required = p.required}
  end
  local phases = {}
  for i, ph in ipairs(rec.phases or {}) do phases[i] = tostring(ph.name) end
  out[#out + 1] = {id = r.id, version = r.version, description = rec.description,
                   params = params, phases = phases}
end
print(json.encode(out))' > tables.json
rc=$?; cmd="hsmsh -e (dump the recipe tables)"; rc_is 0
nrec=$(python3 -c 'import json; print(len(json.load(open("tables.json"))))' 2>/dev/null || echo 0)
check "the recipe tables were read (got $nrec recipes)" [ "$nrec" -ge 10 ]

for id in $(python3 -c 'import json; print(" ".join(r["id"] for r in json.load(open("tables.json"))))'); do
  h help "$id"; rc_is 0; cp out help.txt
  h run "$id" --help; rc_is 0
  check "hsmsh run $id --help prints what hsmsh help $id prints" cmp -s out help.txt
  h recipes "$id"; rc_is 0
  check "hsmsh recipes $id prints what hsmsh help $id prints" cmp -s out help.txt
  res=$(python3 - "$id" help.txt <<'EOF'
import json, re, sys
rid, path = sys.argv[1], sys.argv[2]
rec = [r for r in json.load(open("tables.json")) if r["id"] == rid][0]
text = open(path).read()
flat = " ".join(text.split())
bad = []
def need(what, s):
    if " ".join(s.split()) not in flat:
        bad.append("%s: %r" % (what, s))
need("title", "%s %s - %s" % (rid, rec["version"], rec["description"]))
section = text.split("\nParameters:\n", 1)[1].split("\n\n", 1)[0] if "\nParameters:\n" in text else ""
sflat = " ".join(section.split())
for name, p in sorted(rec["params"].items()):
    m = re.search(r"^  %s \(%s\)\s+(\S.*)$" % (re.escape(name), re.escape(p["type"])), section, re.M)
    if not m:
        bad.append("parameter %s (%s) has no line" % (name, p["type"])); continue
    need_s = m.group(1).strip()
    if p.get("default") is not None:
        d = p["default"]
        d = "yes" if d is True else "no" if d is False else '""' if d == "" else str(d)
        if need_s != "default " + d: bad.append("%s: %r, expected default %s" % (name, need_s, d))
    elif p.get("required") is False:
        if need_s != "optional": bad.append("%s: %r, expected optional" % (name, need_s))
    elif need_s != "required": bad.append("%s: %r, expected required" % (name, need_s))
    if p["doc"] and " ".join(p["doc"].split()) not in sflat: bad.append("%s: doc missing" % name)
    if p.get("values"):
        if ("values: " + ", ".join(p["values"])) not in sflat: bad.append("%s: values missing" % name)
    if ("[%s=" % name) not in flat and (" %s=" % name) not in flat: bad.append("%s: not in usage" % name)
phs = text.split("\nPhases", 1)[1] if "\nPhases" in text else ""
for i, ph in enumerate(rec["phases"], 1):
    if not re.search(r"^  %d\. %s  \(" % (i, re.escape(ph)), phs, re.M): bad.append("phase %d %s" % (i, ph))
if "side" in rec["params"]:
    for v in rec["params"]["side"]["values"]:
        if not re.search(r"^  side=%s\b" % re.escape(v), text, re.M): bad.append("side=%s" % v)
ex = [l.strip() for l in text.split("\nExample", 1)[1].split("\n")[1:] if l.strip().startswith("hsmsh run ")] if "\nExample" in text else []
if not ex: bad.append("no example")
for e in ex:
    for a in re.findall(r"\s([\w-]+)=", e):
        if a not in rec["params"]: bad.append("example uses unknown parameter %s" % a)
    req = [n for n, p in rec["params"].items() if p.get("default") is None and p.get("required") is not False]
    for n in req:
        if (" %s=" % n) not in e: bad.append("example lacks required %s" % n)
print("; ".join(bad) if bad else "ok")
EOF
)
  check "help of $id matches its table ($res)" [ "$res" = ok ]
done

# ---- mistakes point to the help ----
h run generic/migrate form=x to=pkcs11:token=nothere; rc_is 1; one_line
has err "did you mean from=?"; has err "hsmsh help generic/migrate"
# One parameter style: underscores; the same name with hyphens is the same parameter.
h run generic/migrate keep-transport=yes; rc_is 1; lacks err "unknown parameter"; has err "missing parameter "
h run generic/migrate keep-transport=yes keep_transport=no from=pkcs11:token=a to=pkcs11:token=b
rc_is 1; has err "parameter keep_transport is given twice (as keep_transport and keep-transport)"
h run generic/migrate keep-transprt=yes; rc_is 1; has err "did you mean keep_transport=?"
h run generic/inventory zzzzzzzz=1; rc_is 1; lacks err "did you mean"; has err "parameters: token"
h help migrat; rc_is 2; has err "did you mean generic/migrate?"
h help generic/migrat; rc_is 2; has err "did you mean generic/migrate?"
h help nothing/like/this; rc_is 2; has err "unknown recipe 'nothing/like/this'"
h help a b; rc_is 2
finish
