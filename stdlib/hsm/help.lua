--- hsm.help: help generated from what the shell carries, so it cannot drift: the commands
--- of the command line, each recipe's table (description, parameters, phases, sides) and the
--- header comment of its file, and closest-name suggestions for mistyped names.
local recipe = require("hsm.recipe")
local embedded = require("hsm.embedded")

local M = {}

--- The commands of the command line: {name, synopsis, what}. `hsmsh --help`, `hsmsh help`,
--- the man page and the bash completion are made from this list.
M.commands = {
  {"", "[--debug] [-e CHUNK]... [FILE.lua [ARGS...] | -]",
   "no arguments: the interactive REPL; -e runs a chunk, FILE.lua a script (arg table), - stdin"},
  {"run", "RECIPE[@VERSION] [name=value ...] [--dry-run] [--yes] [--json] [--wait] [--journal FILE]",
   "run a recipe; --dry-run prints the plan only; --help shows the recipe's help"},
  {"resume", "JOURNAL [NAME=URI | NAME.pin-source=SOURCE ...] [--json] [--yes] [--wait]",
   "finish (or roll back) an interrupted run from its journal; in batch, give each token's PIN again"},
  {"recipes", "[RECIPE]", "list recipes, versions and descriptions; with RECIPE its help"},
  {"help", "[RECIPE]", "this list; with RECIPE the recipe's parameters, phases and an example"},
  {"lab", "init [--dir DIR]", "make the embedded SoftHSM2 lab: tokens blue and green with sample keys"},
  {"route", "init|set|status STATE [blue=URI green=URI] [group=GROUP] [weights=B/G] [write=blue|green] [mode=normal|limited-write] [--json]",
   "make or change the state libhsmsh-route.so follows, or show it with the module's statistics"},
}

--- Options of `hsmsh run`: {flag, argument or nil, what}.
M.run_options = {
  {"--dry-run", nil, "run only the read-only plans and print them; changes nothing"},
  {"--yes", nil, "answer yes to every confirmation (batch runs)"},
  {"--json", nil, "one JSON object per line on stdout (see docs/json-events.md)"},
  {"--journal", "FILE", "record every step (fsync'd, no PINs) so `hsmsh resume FILE` can finish"},
  {"--wait", nil, "when another run holds a token this one writes, wait for it instead of refusing"},
  {"--help", nil, "the recipe's help instead of a run"},
}

--- Options of `hsmsh resume`.
M.resume_options = {
  {"--json", nil, "one JSON object per line on stdout"},
  {"--yes", nil, "answer yes to every confirmation"},
  {"--wait", nil, "queue behind another run that holds a token instead of refusing"},
}

M.global_options = {
  {"--help", nil, "the commands and exit"},
  {"--version", nil, "the version and exit"},
  {"--debug", nil, "Lua tracebacks with errors"},
  {"-e", "CHUNK", "run a Lua chunk (may be repeated)"},
}

--- Levenshtein distance between two strings (bytes).
---@param a string
---@param b string
function M.distance(a, b)
  local prev, cur = {}, {}
  for j = 0, #b do prev[j] = j end
  for i = 1, #a do
    cur[0] = i
    local ca = a:byte(i)
    for j = 1, #b do
      local cost = ca == b:byte(j) and 0 or 1
      cur[j] = math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
    end
    prev, cur = cur, prev
  end
  return prev[#b]
end

--- The candidate closest to name (case, '-' and '_' ignored first), or nil when none is
--- close enough to be a plausible typo (distance at most a third of the name, at least 2).
---@param name string
---@param candidates string[]
function M.closest(name, candidates)
  local function norm(s) return (s:lower():gsub("[-_]", "")) end
  local best, bestd
  for _, c in ipairs(candidates) do
    local d = norm(c) == norm(name) and 0 or M.distance(name:lower(), c:lower())
    if not bestd or d < bestd or (d == bestd and c < best) then best, bestd = c, d end
  end
  if best and bestd <= math.max(2, #name // 3) then return best end
  return nil
end

--- Sorted parameter names of a recipe.
function M.param_names(rec)
  local names = {}
  for k in pairs(rec.params or {}) do names[#names + 1] = k end
  table.sort(names)
  return names
end

--- The message for an unknown parameter: the closest name, the known ones, and the help.
---@param rec table a loaded recipe
---@param name string the parameter given
function M.unknown_param(rec, name)
  local known = M.param_names(rec)
  local near = M.closest(name, known)
  return ("unknown parameter '%s' for %s (%sparameters: %s; see 'hsmsh help %s')"):format(
    name, rec.id, near and ("did you mean %s=? "):format(near) or "",
    #known > 0 and table.concat(known, ", ") or "none", rec.id)
end

--- The recipe "id[@version]", or raises naming the closest recipe.
function M.find(spec)
  local ok, r = pcall(recipe.find, spec)
  if ok then return r end
  local ids, seen = {}, {}
  for _, x in ipairs(recipe.list()) do
    if not seen[x.id] then seen[x.id] = true; ids[#ids + 1] = x.id end
  end
  local id = spec:match("^([^@]+)") or spec
  local near = M.closest(id, ids)
  if not near and not id:find("/", 1, true) then   -- "migrat" for "generic/migrate"
    local base, by = {}, {}
    for _, x in ipairs(ids) do
      local b = x:match("[^/]+$")
      if not by[b] then base[#base + 1] = b; by[b] = x end
    end
    near = by[M.closest(id, base) or ""]
  end
  error(("unknown recipe '%s'%s (see 'hsmsh recipes')"):format(spec,
    near and (" - did you mean %s?"):format(near) or ""), 0)
end

--- What a value of a parameter type looks like on the command line.
local placeholder = {uri = "URI", integer = "N", boolean = "yes|no", string = "VALUE"}

local function shown_type(p)
  local t = p.type or "string"
  if t == "enum" then return table.concat(p.values or {}, "|") end
  return placeholder[t] or t:upper()
end

local function shown_default(v)
  if v == true then return "yes" elseif v == false then return "no" end
  if v == "" then return '""' end
  return tostring(v)
end

--- One parameter as {name, type, need, doc, values}: need is "required", "optional" or
--- "default X".
function M.param_row(name, p)
  local need
  if p.default ~= nil then need = "default " .. shown_default(p.default)
  elseif p.required == false then need = "optional"
  else need = "required" end
  return {name = name, type = p.type or "string", need = need, doc = p.doc or "",
          values = p.type == "enum" and p.values or nil}
end

--- The comment block at the top of a recipe file (its prose: the steps and sides it
--- carries out), without the "-- " marks.
function M.header_comment(r)
  local src = embedded.read(r.path) or ""
  local out = {}
  for line in (src .. "\n"):gmatch("([^\n]*)\n") do
    local text = line:match("^%-%-+ ?(.*)$")
    if not text then break end
    out[#out + 1] = text
  end
  return out
end

local function wrap(text, width, indent)
  local lines, line = {}, ""
  for word in text:gmatch("%S+") do
    if #line > 0 and #line + 1 + #word > width then
      lines[#lines + 1] = line
      line = word
    else
      line = #line > 0 and (line .. " " .. word) or word
    end
  end
  if #line > 0 then lines[#lines + 1] = line end
  return table.concat(lines, "\n" .. indent)
end

--- The values of the recipe's side parameter and, for each, the parameters whose doc names
--- it ("side=source: ...", "(side=both|source)"). nil for a recipe with no side= parameter.
function M.sides(rec)
  local side = rec.params and rec.params.side
  if not side or side.type ~= "enum" then return nil end
  local out = {}
  for _, v in ipairs(side.values or {}) do
    local uses = {}
    for _, name in ipairs(M.param_names(rec)) do
      local doc = rec.params[name].doc or ""
      for list in doc:gmatch("side=([%w|%-]+)") do
        for s in list:gmatch("[^|]+") do
          if s == v and uses[#uses] ~= name then uses[#uses + 1] = name end
        end
      end
    end
    out[#out + 1] = {value = v, params = uses}
  end
  return out
end

--- A command line that runs the recipe: every required parameter with a placeholder of its
--- type (an enum gets its first value), and --dry-run to see the plan first. With side, the
--- run of that side: side=VALUE and the parameters whose doc names it as well.
function M.example(rec, side)
  local parts = {"hsmsh run " .. rec.id}
  local also = {}
  if side then
    parts[#parts + 1] = "side=" .. side.value
    for _, name in ipairs(side.params) do also[name] = true end
  end
  for _, name in ipairs(M.param_names(rec)) do
    local p = rec.params[name]
    if name ~= "side" and (also[name] or p.default == nil and p.required ~= false) then
      local t = p.type or "string"
      local v
      if t == "uri" or t == "uris" then v = ("'pkcs11:token=%s?pin-source=file:PINFILE'"):format(name:upper())
      elseif t == "sources" or t == "pin-source" then v = "file:" .. name:upper()
      elseif t == "enum" then v = p.values[1]
      elseif t == "integer" then v = "N"
      elseif t == "boolean" then v = "yes"
      else v = name:upper() end
      parts[#parts + 1] = name .. "=" .. v
    end
  end
  parts[#parts + 1] = "--dry-run"
  return table.concat(parts, " ")
end

--- The example lines of a recipe, in the order they are run: its own (rec.examples: the
--- arguments after "hsmsh run ID"; an entry starting with "#" is a comment between them),
--- for a recipe whose steps need other parameters, else one made per side or one in all.
--- help.sh checks that they name only the recipe's parameters, and help_run.sh runs them,
--- placeholders (the upper-case words) replaced, to a finished run.
function M.examples(rec)
  local out = {}
  if rec.examples then
    for _, e in ipairs(rec.examples) do
      out[#out + 1] = e:sub(1, 1) == "#" and e or ("hsmsh run %s %s"):format(rec.id, e)
    end
  else
    for _, sd in ipairs(M.sides(rec) or {false}) do out[#out + 1] = M.example(rec, sd or nil) end
  end
  return out
end

--- The help of one recipe as text.
---@param spec string "id" or "id@version"
function M.recipe_text(spec)
  local r = M.find(spec)
  local rec = recipe.load(r)
  local versions = {}
  for _, x in ipairs(recipe.list()) do if x.id == r.id then versions[#versions + 1] = x.version end end
  local o = {}
  local function add(s) o[#o + 1] = s or "" end
  add(("%s %s - %s"):format(rec.id, rec.version, rec.description or ""))
  if #versions > 1 then add("versions: " .. table.concat(versions, ", ")) end
  local about = M.header_comment(r)
  if #about > 0 then
    add()
    for _, l in ipairs(about) do add("  " .. l) end
  end
  add()
  local names = M.param_names(rec)
  local usage = {"hsmsh run " .. rec.id}
  for _, name in ipairs(names) do
    local p = rec.params[name]
    local s = name .. "=" .. shown_type(p)
    if p.default ~= nil or p.required == false then s = "[" .. s .. "]" end
    usage[#usage + 1] = s
  end
  usage[#usage + 1] = "[--dry-run] [--yes] [--json] [--journal FILE]"
  add("Usage:")
  add("  " .. wrap(table.concat(usage, " "), 92, "      "))
  add()
  add("Parameters:")
  if #names == 0 then add("  (none)") end
  local w = 0
  for _, name in ipairs(names) do w = math.max(w, #name + #(rec.params[name].type or "string") + 3) end
  for _, name in ipairs(names) do
    local row = M.param_row(name, rec.params[name])
    local head = ("%s (%s)"):format(name, row.type)
    add(("  %s%s  %s"):format(head, (" "):rep(w - #head), row.need))
    local indent = "  " .. (" "):rep(w + 2)
    if row.doc ~= "" then add(indent .. wrap(row.doc, 96 - #indent, indent)) end
    if row.values then add(indent .. "values: " .. table.concat(row.values, ", ")) end
  end
  local sides = M.sides(rec)
  if sides then
    add()
    add("Sides (side=, for runs split across two machines):")
    for _, s in ipairs(sides) do
      add(("  side=%s%s"):format(s.value, #s.params > 0 and ("  uses " .. table.concat(s.params, ", ")) or ""))
    end
  end
  add()
  add("Phases (each: a read-only plan, then apply and verify; on failure the applied phases roll back):")
  for i, ph in ipairs(rec.phases or {}) do
    local has = {}
    for _, k in ipairs({"plan", "apply", "verify", "rollback"}) do if ph[k] then has[#has + 1] = k end end
    add(("  %d. %s  (%s)"):format(i, tostring(ph.name), table.concat(has, ", ")))
  end
  if rec.requires and rec.requires.mechanisms and #rec.requires.mechanisms > 0 then
    add()
    add("Requires: " .. table.concat(rec.requires.mechanisms, ", "))
  end
  add()
  local examples = M.examples(rec)
  add(#examples > 1 and "Examples:" or "Example:")
  for _, e in ipairs(examples) do add("  " .. e) end
  add("  (each --dry-run above then again without it, with --journal FILE to make the run resumable;")
  add("  in batch, --yes answers the confirmations the procedure asks for)")
  return table.concat(o, "\n")
end

--- The commands, as `hsmsh --help` and `hsmsh help` print them.
function M.usage_text()
  local o = {"usage:"}
  for _, c in ipairs(M.commands) do
    o[#o + 1] = ("  hsmsh %s%s"):format(c[1] ~= "" and (c[1] .. " ") or "", c[2])
  end
  o[#o + 1] = ""
  o[#o + 1] = "commands:"
  for _, c in ipairs(M.commands) do
    o[#o + 1] = ("  %-9s %s"):format(c[1] ~= "" and c[1] or "(none)", c[3])
  end
  o[#o + 1] = ""
  o[#o + 1] = "options of run:"
  for _, op in ipairs(M.run_options) do
    o[#o + 1] = ("  %-16s %s"):format(op[1] .. (op[2] and (" " .. op[2]) or ""), op[3])
  end
  local ro = {}
  for _, op in ipairs(M.resume_options) do ro[#ro + 1] = op[1] end
  o[#o + 1] = ("options of resume: %s, as for run"):format(table.concat(ro, ", "))
  o[#o + 1] = "global options:"
  for _, op in ipairs(M.global_options) do
    o[#o + 1] = ("  %-16s %s"):format(op[1] .. (op[2] and (" " .. op[2]) or ""), op[3])
  end
  o[#o + 1] = ""
  o[#o + 1] = "Tokens are named by RFC 7512 PKCS#11 URIs, e.g. 'pkcs11:token=blue?pin-source=file:/path/to/pin'."
  o[#o + 1] = "'hsmsh recipes' lists the recipes; 'hsmsh help RECIPE' explains one. See also hsmsh(1)."
  o[#o + 1] = "Exit codes: 0 ok, 1 error, 2 usage, 3 failed and rolled back, 4 rollback incomplete."
  return table.concat(o, "\n")
end

return M
