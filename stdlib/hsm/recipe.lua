--- hsm.recipe: find, load and run recipes. A recipe runs in a curated environment (no io,
--- os.execute, debug, load or require of arbitrary modules) with typed parameters and
--- phases plan/apply/verify/rollback; --dry-run runs only the plans.
local json = require("hsm.json")
local embedded = require("hsm.embedded")
local core = require("hsm.core")

local M = {}

--- Every recipe: {id=, version=, path=} from the embedded set (and $HSMSH_RECIPES later).
function M.list()
  local out = {}
  for _, path in ipairs(embedded.list()) do
    local id, v = path:match("^recipes/(.+)/(%d+%.%d+%.%d+)%.lua$")
    if id then out[#out + 1] = {id = id, version = v, path = path} end
  end
  table.sort(out, function(a, b) return a.id < b.id or a.id == b.id and a.version < b.version end)
  return out
end

local function vkey(v)
  local a, b, c = v:match("(%d+)%.(%d+)%.(%d+)")
  return tonumber(a) * 1e6 + tonumber(b) * 1e3 + tonumber(c)
end

--- The recipe "id[@version]" (newest version when none is given); raises when unknown.
function M.find(spec)
  local id, want = spec:match("^([^@]+)@?(.*)$")
  local best
  for _, r in ipairs(M.list()) do
    if r.id == id and (want == "" or r.version == want) then
      if not best or vkey(r.version) > vkey(best.version) then best = r end
    end
  end
  if not best then
    error(("unknown recipe '%s' (see 'hsmsh recipes')"):format(spec), 0)
  end
  return best
end

local function sandbox()
  local env = {}
  for _, k in ipairs({"assert", "error", "ipairs", "next", "pairs", "pcall", "select",
                      "tonumber", "tostring", "type", "xpcall", "print", "rawequal", "rawget",
                      "rawlen", "setmetatable", "getmetatable"}) do env[k] = _G[k] end
  for _, lib in ipairs({"string", "table", "math", "utf8"}) do
    env[lib] = setmetatable({}, {__index = _G[lib]})
  end
  env.os = {time = os.time, date = os.date, clock = os.clock}
  local allowed = {hsm = true, ["hsm.keys"] = true, ["hsm.ui"] = true, ["hsm.json"] = true,
                   ["hsm.attrs"] = true, ["hsm.wrap"] = true, ["hsm.migrate"] = true,
                   ["hsm.sealed"] = true, ["hsm.exchange"] = true, ["hsm.archive"] = true,
                   ["hsm.blobstore"] = true, ["hsm.sks"] = true, ["hsm.custody"] = true,
                   ["hsm.trust"] = true, ["hsm.replicate"] = true,
                   ["hsm.transport"] = true, ["hsm.verify"] = true}
  env.require = function(name)
    if not allowed[name] then error("recipes may not require '" .. tostring(name) .. "'", 2) end
    return require(name)
  end
  return env
end

--- Loads a recipe file's table in the sandbox and checks its shape.
function M.load(r)
  local src = embedded.read(r.path)
  local chunk, err = load(src, "@" .. r.path, "t", sandbox())
  if not chunk then error(err, 0) end
  local rec = chunk()
  if type(rec) ~= "table" or rec.id ~= r.id or rec.version ~= r.version then
    error(("%s: recipe id/version do not match its path"):format(r.path), 0)
  end
  rec.sha256 = require("hsm.keys").hex(core.sha256(src))
  return rec
end

local function coerce(p, name, raw)
  local t = p.type or "string"
  if t == "integer" then
    local n = math.tointeger(tonumber(raw))
    if not n then error(("parameter %s must be an integer, got '%s'"):format(name, raw), 0) end
    return n
  elseif t == "boolean" then
    if raw == "true" or raw == "yes" or raw == "1" then return true end
    if raw == "false" or raw == "no" or raw == "0" then return false end
    error(("parameter %s must be true or false, got '%s'"):format(name, raw), 0)
  elseif t == "enum" then
    for _, v in ipairs(p.values) do if v == raw then return raw end end
    error(("parameter %s must be one of %s"):format(name, table.concat(p.values, "|")), 0)
  elseif t == "uri" then
    local ok, err = core.uri_parse(raw)
    if not ok then error(("parameter %s: %s"):format(name, err), 0) end
    return raw
  end
  return raw
end

--- Typed parameters from name=value strings: unknown or missing ones are errors.
function M.params(rec, assigns)
  local out = {}
  for name, raw in pairs(assigns) do
    local p = rec.params and rec.params[name]
    if not p then error(require("hsm.help").unknown_param(rec, name), 0) end
    out[name] = coerce(p, name, raw)
  end
  for name, p in pairs(rec.params or {}) do
    if out[name] == nil then
      if p.default ~= nil then out[name] = p.default
      elseif p.required ~= false then
        error(("missing parameter %s=%s for %s (%s)"):format(name, (p.type or "string"):upper(),
          rec.id, p.doc or ""), 0)
      end
    end
  end
  return out
end

--- Parameters as they may be written down: every URI without its pin-value, also inside
--- string parameters that list several (hsms=URI,URI); a resume asks for the PIN again.
local function shown_params(params)
  local out = {}
  for k, v in pairs(params) do
    if type(v) == "string" and v:find("pkcs11:", 1, true) then
      v = v:gsub("pkcs11:[^,]*", function(uri)
        local u = core.uri_parse(uri)
        return u and u.display or "pkcs11:(a URI that does not parse)"
      end)
    end
    out[k] = v
  end
  return out
end

--- A JSON-lines journal, each entry fsync'd before the step it announces runs. A resumed
--- run appends to the journal it resumes.
local function open_journal(path, rec, params, resumed)
  if not path then return function() end end
  -- lazy: an entry that records what already happened (the next synced entry, or the
  -- check a resume makes anyway, covers its loss); intents are always synced.
  local function write(ev, lazy)
    ev.time = os.time()
    local ok, err = core.append_synced(path, json.encode(ev) .. "\n", not lazy)
    if not ok then error(("cannot write journal %s: %s"):format(path, err), 0) end
  end
  write({event = resumed and "resume" or "start", recipe = rec.id, version = rec.version,
         sha256 = rec.sha256, params = shown_params(params)})
  return write
end

--- The events of a journal file, and its start event. Raises naming a bad line.
function M.read_journal(path)
  local f, err = io.open(path, "r")
  if not f then error(("cannot read journal %s"):format(err), 0) end
  local lines = {}
  for line in f:lines() do lines[#lines + 1] = line end
  f:close()
  local events = {}
  for n, line in ipairs(lines) do
    local ev, jerr = json.decode(line)
    if type(ev) == "table" then
      events[#events + 1] = ev
    elseif n < #lines then   -- only the last line may be cut short by a kill
      error(("journal %s line %d: %s"):format(path, n, jerr or "not an object"), 0)
    end
  end
  local start = events[1]
  if not start or start.event ~= "start" or not start.recipe then
    error(("%s is not an hsmsh journal (no start event)"):format(path), 0)
  end
  return events, start
end

--- Runs a recipe. opts: {params=, dry_run=, json=, yes=, journal=, previous=} (previous: the
--- events of the journal being resumed). Returns the exit status.
--- Phases get ctx: params, dry_run, json, yes, previous, journal(ev), emit(ev), say(fmt, ...),
--- print(text), token(uri), must(v, err), progress(total), state (shared between phases)
--- and may set ctx.status (e.g. 1 when some keys failed without raising).
function M.run(rec, opts)
  local journal = opts.dry_run and function() end or
    open_journal(opts.journal, rec, opts.params, opts.previous ~= nil)
  local out = opts.json and io.stdout or io.stderr
  local opened = {}
  local ctx = {params = opts.params, dry_run = opts.dry_run, json = opts.json, yes = opts.yes,
               previous = opts.previous, journal = journal, state = {}}
  function ctx.progress(total, what)
    return require("hsm.ui").progress(total, what, not opts.json and core.isatty(2))
  end
  function ctx.must(v, err, ...) if not v then error(err, 0) end return v, err, ... end
  function ctx.token(uri, topts)
    local s = require("hsm").token(uri, topts)
    opened[#opened + 1] = s
    return s
  end
  --- An event: a JSON line with --json, else handed to the phase's own human output.
  function ctx.emit(ev) if opts.json then out:write(json.encode(ev), "\n") end end
  function ctx.say(fmt, ...) if not opts.json then io.stderr:write(fmt:format(...), "\n") end end
  function ctx.print(text) if not opts.json then io.stdout:write(text, "\n") end end
  local applied = {}
  local ok, err = pcall(function()
    for _, phase in ipairs(rec.phases or {}) do
      if phase.plan then phase.plan(ctx) end
      if not opts.dry_run then
        applied[#applied + 1] = phase
        journal({event = "phase", phase = phase.name, step = "apply"})
        -- apply returns false when the phase had nothing to do here (e.g. the other side's
        -- step of a split procedure): it then needs no verify and no rollback.
        if phase.apply and phase.apply(ctx) == false then
          applied[#applied] = nil
          journal({event = "phase", phase = phase.name, step = "skipped"})
        else
          if phase.verify then phase.verify(ctx) end
          journal({event = "phase", phase = phase.name, step = "verified"})
        end
      end
    end
  end)
  local status = ok and (ctx.status or 0) or 0
  if not ok then
    ctx.emit({event = "error", message = tostring(err)})
    io.stderr:write(("hsmsh: %s\n"):format(tostring(err)))
    status = 1
    -- Roll back the phases that ran, newest first: 3 = rolled back cleanly, 4 = not; 1 when
    -- none of them had anything to roll back.
    for i = #applied, 1, -1 do
      local phase = applied[i]
      if phase.rollback then
        if status ~= 4 then status = 3 end
        local rok, rerr = pcall(phase.rollback, ctx)
        journal({event = "rollback", phase = phase.name, ok = rok})
        if not rok then
          status = 4
          io.stderr:write(("hsmsh: rollback of phase %s failed: %s\n"):format(
            tostring(phase.name), tostring(rerr)))
        end
      end
    end
  end
  for _, s in ipairs(opened) do s:close() end
  journal({event = "end", status = status})
  return status
end

return M
