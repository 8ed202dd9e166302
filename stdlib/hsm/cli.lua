--- hsm.cli: the subcommands of the command line (run, resume, recipes, lab, route).
--- Each returns the exit status: 0 ok, 1 error, 2 usage.
local recipe = require("hsm.recipe")

local M = {}

local function usage(msg)
  io.stderr:write("hsmsh: ", msg, "\n(see hsmsh --help)\n")
  return 2
end

--- hsmsh run RECIPE[@VERSION] [name=value ...] [--dry-run] [--yes] [--json] [--wait] [--journal FILE]
function M.run(spec, ...)
  if not spec or spec:sub(1, 1) == "-" then return usage("run needs a recipe name") end
  local opts, assigns = {}, {}
  local args = table.pack(...)
  local i = 1
  while i <= args.n do
    local a = args[i]
    if a == "--help" or a == "-h" then return M.help(spec)
    elseif a == "--dry-run" then opts.dry_run = true
    elseif a == "--yes" then opts.yes = true
    elseif a == "--json" then opts.json = true
    elseif a == "--wait" then opts.wait = true
    elseif a == "--journal" then
      i = i + 1
      if not args[i] then return usage("--journal needs a file") end
      opts.journal = args[i]
    elseif a:sub(1, 2) == "--" then return usage(("unknown option '%s' for run"):format(a))
    else
      local k, v = a:match("^([%w_%-]+)=(.*)$")
      -- (the argument is not shown: a PIN typed on its own would be echoed)
      if not k then return usage(("argument %d after the recipe is not name=value"):format(i)) end
      assigns[k] = v
    end
    i = i + 1
  end
  local rec = recipe.load(recipe.find(spec))
  opts.params = recipe.params(rec, assigns)
  return recipe.run(rec, opts)
end

--- hsmsh recipes [RECIPE]: the list, or with RECIPE its help
function M.recipes(...)
  if select("#", ...) == 1 then return M.help(...) end
  if select("#", ...) > 1 then return usage("recipes takes at most one recipe name") end
  local rows = {}
  for _, r in ipairs(recipe.list()) do
    local rec = recipe.load(r)
    rows[#rows + 1] = {id = r.id, version = r.version, description = rec.description}
  end
  print(require("hsm.ui").table(rows, {{"id", "RECIPE"}, {"version", "VERSION"},
                                       {"description", "DESCRIPTION"}}))
  return 0
end

--- hsmsh resume JOURNAL [NAME=URI | NAME.pin-source=SOURCE ...] [--json] [--yes] [--wait]:
--- runs the journal's recipe again with its parameters; the recipe finds what the
--- interrupted run did and finishes the rest. The journal holds no PIN: in batch, give each
--- token's again, as the same URI with its PIN or as a pin-source for that parameter.
function M.resume(path, ...)
  if not path or path:sub(1, 1) == "-" then return usage("resume needs a journal file") end
  local opts, again = {}, {}
  for _, a in ipairs({...}) do
    local k, v = a:match("^([%w_-]+)=(.*)$")
    local pk, pv = a:match("^([%w_-]+)%.pin%-source=(.*)$")
    if a == "--json" then opts.json = true
    elseif a == "--yes" then opts.yes = true
    elseif a == "--wait" then opts.wait = true
    elseif pk then again[#again + 1] = {name = pk, pin_source = pv}
    elseif k then again[#again + 1] = {name = k, uri = v}
    else return usage(("unknown argument '%s' for resume (NAME=URI, NAME.pin-source=SOURCE, --json, --yes, --wait)"):format(a)) end
  end
  local events, start = recipe.read_journal(path)
  local rec = recipe.load(recipe.find(start.recipe .. "@" .. tostring(start.version)))
  if rec.sha256 ~= start.sha256 then
    io.stderr:write(("hsmsh: %s@%s is not the recipe that wrote %s (sha256 %s, journal %s); "
      .. "not resuming\n"):format(rec.id, rec.version, path, rec.sha256:sub(1, 12),
      tostring(start.sha256):sub(1, 12)))
    return 1
  end
  local last = events[#events]
  if last.event == "end" and last.status == 0 then
    io.stderr:write("hsmsh: that run finished; running it again to confirm (changes nothing)\n")
  end
  local assigns = {}
  for k, v in pairs(start.params or {}) do assigns[k] = tostring(v) end
  for _, g in ipairs(again) do
    local ok, why = recipe.pin_again(rec, assigns, g)
    if not ok then return usage("resume: " .. why) end
  end
  opts.params = recipe.params(rec, assigns)
  opts.journal, opts.previous = path, events
  return recipe.run(rec, opts)
end

--- hsmsh help [RECIPE | --man]: the commands, or one recipe's help (generated from its
--- table), or the man page's RECIPES section.
--- An unknown recipe is a usage error naming the closest one.
function M.help(spec, ...)
  local help = require("hsm.help")
  if select("#", ...) > 0 then return usage("help takes at most one recipe name") end
  if not spec then
    print(help.usage_text())
    return 0
  end
  if spec == "--man" then   -- the RECIPES section of hsmsh(1), in roff
    print(require("hsm.man").recipes())
    return 0
  end
  local ok, text = pcall(help.recipe_text, spec)
  if not ok then return usage(tostring(text)) end
  print(text)
  return 0
end

--- hsmsh complete WORD... CURRENT (for the bash completion, not listed): the candidates for
--- CURRENT after the words before it, one a line.
function M.complete(...)
  for _, w in ipairs(require("hsm.complete").candidates({...})) do print(w) end
  return 0
end

--- hsmsh lab init [--dir DIR]
function M.lab(sub, ...)
  if sub ~= "init" then return usage("lab knows one command: lab init [--dir DIR]") end
  local args, dir = table.pack(...), nil
  local i = 1
  while i <= args.n do
    if args[i] == "--dir" and args[i + 1] then dir = args[i + 1]; i = i + 2
    else return usage(("unknown option '%s' for lab init"):format(args[i])) end
  end
  require("hsm.lab").init(dir)
  return 0
end

--- hsmsh route init|set|status STATE ...: the routing module's state (hsm.route).
local ROUTE_KEYS = {init = {blue = true, green = true, weights = true, write = true, mode = true, group = true},
                    set = {weights = true, write = true, mode = true}, status = {}}
M.route_keys = ROUTE_KEYS
M.route_values = {write = {"blue", "green"}, mode = {"normal", "limited-write"}}   -- (for completion)
function M.route(sub, path, ...)
  local allowed = ROUTE_KEYS[sub or ""]
  if not allowed then
    return usage("route knows: route init STATE blue=URI green=URI [group=GROUP], route set STATE [weights=B/G] " ..
      "[write=blue|green] [mode=normal|limited-write], route status STATE [--json]")
  end
  if not path or path:sub(1, 1) == "-" or path:find("=", 1, true) then
    return usage(("route %s needs the state file first"):format(sub))
  end
  local opts, as_json = {}, false
  for _, a in ipairs(table.pack(...)) do
    local k, v = a:match("^([%w_-]+)=(.*)$")
    if a == "--json" and sub == "status" then as_json = true
    elseif k and allowed[k] then opts[k] = v
    else
      -- (an unknown argument is named, not its value: it may be a URI with a PIN in it)
      return usage(("route %s: unknown argument %s"):format(sub, k and ("'" .. k .. "='") or
        (a:sub(1, 1) == "-" and ("'" .. a .. "'") or "(not KEY=VALUE)")))
    end
  end
  local route = require("hsm.route")
  local function facts(st)
    return ("generation %d, weights %s, write %s, mode %s"):format(st.generation,
      select(2, route.weights_now(st)), st.write, st.mode)
  end
  if sub == "init" then
    print(("route state %s: %s"):format(path, facts(route.init(path, opts))))
    print(("applications: load the module with HSMSH_ROUTE_STATE=%s"):format(path))
    if opts.group then
      print(("users of group %s may write its birth journal, log and statistics"):format(opts.group))
    end
  elseif sub == "set" then
    print(("route state %s: %s"):format(path, facts(route.set(path, opts))))
  else
    local r = route.status(path)
    if as_json then print(require("hsm.json").encode(r)) return 0 end
    local st = r.state
    print(facts(st))
    print(("blue  %s\ngreen %s"):format(st.blue, st.green))
    local rows = {}
    for _, s in ipairs({"blue", "green"}) do
      local t = r.sides[s]
      local errs = {}
      for rv, n in pairs(t.errors_by_rv) do errs[#errs + 1] = ("%s=%d"):format(rv, n) end
      table.sort(errs)
      rows[#rows + 1] = {side = s, up = t.up == nil and "-" or tostring(t.up), ops = t.ops,
        errors = t.errors, misses = t.misses, writes = t.writes, refusals = t.refusals,
        split = t.split_brain, by_rv = table.concat(errs, " "),
        p50 = t.latency_us and t.latency_us.p50 or "-", p99 = t.latency_us and t.latency_us.p99 or "-"}
    end
    print(require("hsm.ui").table(rows, {{"side", "SIDE"}, {"up", "UP"}, {"ops", "OPS"},
      {"errors", "ERRORS"}, {"misses", "MISSES"}, {"writes", "WRITES"}, {"refusals", "REFUSED"},
      {"split", "SPLIT-BRAIN"}, {"p50", "P50 µs"}, {"p99", "P99 µs"}, {"by_rv", "ERRORS BY CKR"}}))
    local live = 0
    for _, p in ipairs(r.processes) do if p.alive then live = live + 1 end end
    print(("%d process(es) reported, %d alive"):format(#r.processes, live))
  end
  return 0
end

return M
