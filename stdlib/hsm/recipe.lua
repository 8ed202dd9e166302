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
                   ["hsm.transport"] = true, ["hsm.verify"] = true, ["hsm.bluegreen"] = true,
                   ["hsm.reencrypt"] = true, ["hsm.cards"] = true, ["hsm.lineage"] = true}
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

-- Parameter types that may carry a secret, whatever the operator typed: their values are
-- never echoed in an error, and only their safe form reaches the journal.
--   uri          an RFC 7512 URI; written down without its pin-value
--   uris         URIs separated by commas ("all" where the recipe allows it)
--   pin-source   file:PATH or prompt (anything else may be a PIN typed in the wrong place)
--   sources      a comma-separated list of file:PATH or prompt (components, passphrases)
local function uri_list(raw) return require("hsm").split_list(raw) end

local function is_source(v) return v == "prompt" or v:match("^file:.+") ~= nil end

local function coerce(p, name, raw)
  local t = p.type or "string"
  if t == "integer" then
    local n = math.tointeger(tonumber(raw))
    if not n then error(("parameter %s must be an integer, got '%s'"):format(name, raw), 0) end
    if (p.min and n < p.min) or (p.max and n > p.max) then
      error(("parameter %s must be %s, got %d"):format(name,
        p.min and p.max and ("between %d and %d"):format(p.min, p.max)
        or p.min and ("at least %d"):format(p.min) or ("at most %d"):format(p.max), n), 0)
    end
    return n
  elseif t == "boolean" then
    if raw == "true" or raw == "yes" or raw == "1" then return true end
    if raw == "false" or raw == "no" or raw == "0" then return false end
    error(("parameter %s must be true or false, got '%s'"):format(name, raw), 0)
  elseif t == "enum" then
    for _, v in ipairs(p.values) do if v == raw then return raw end end
    error(("parameter %s must be one of %s"):format(name, table.concat(p.values, "|")), 0)
  elseif t == "uri" then
    if raw == "" and p.default == "" then return raw end
    local ok, err = core.uri_parse(raw)
    if not ok then error(("parameter %s: %s"):format(name, err), 0) end
    return raw
  elseif t == "uris" then
    if raw == "" or (p.all and raw == "all") then return raw end
    for i, u in ipairs(uri_list(raw)) do
      if u:sub(1, 7) == "pkcs11:" then
        local ok, err = core.uri_parse(u)
        if not ok then error(("parameter %s, item %d: %s"):format(name, i, err), 0) end
      end
    end
    return raw
  elseif t == "pin-source" then
    if raw ~= "" and not is_source(raw) then
      error(("parameter %s must be file:PATH or prompt (what was given is not shown: it may "
        .. "be the PIN itself)"):format(name), 0)
    end
    return raw
  elseif t == "sources" then
    local i = 0
    for v in (raw .. ","):gmatch("([^,]*),") do
      i = i + 1
      if not is_source(v) then
        error(("parameter %s, entry %d must be file:PATH or prompt (what was given is not "
          .. "shown: it may be the secret itself)"):format(name, i), 0)
      end
    end
    return raw
  end
  return raw
end

--- Typed parameters from name=value strings: unknown or missing ones are errors. Names are
--- written with underscores (keep_transport); the same name with hyphens is accepted
--- (keep-transport), and given both ways it is an error.
function M.params(rec, assigns)
  local out = {}
  for given, raw in pairs(assigns) do
    local name = given:gsub("-", "_")
    local p = rec.params and rec.params[name]
    if not p then error(require("hsm.help").unknown_param(rec, given), 0) end
    if out[name] ~= nil then error(("parameter %s is given twice (as %s and %s)"):format(name,
      name, name:gsub("_", "-")), 0) end
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

-- A URI as it may be written down: parsed, then formatted without its PIN.
local function shown_uri(uri)
  local u = core.uri_parse(uri)
  return u and u.display or "pkcs11:(a URI that does not parse)"
end

--- Parameters as they may be written down (journal, JSON): by their declared type, every URI
--- without its pin-value; a resume asks for the PIN again.
function M.shown_params(rec, params)
  local out = {}
  for k, v in pairs(params) do
    local t = (rec.params and rec.params[k] or {}).type
    if type(v) == "string" and t == "uri" and v ~= "" then
      v = shown_uri(v)
    elseif type(v) == "string" and t == "uris" and v:find("pkcs11:", 1, true) then
      local list = {}
      for _, u in ipairs(uri_list(v)) do
        list[#list + 1] = u:sub(1, 7) == "pkcs11:" and shown_uri(u) or u
      end
      v = table.concat(list, ",")
    elseif type(v) == "string" and v:find("card:pkcs11:", 1, true) then
      v = require("hsm.cards").shown(v)   -- custodians' cards: their URIs without PINs
    end
    out[k] = v
  end
  return out
end

--- For a resume: a token's PIN given again (g = {name=, uri=} the same URI with its PIN, or
--- {name=, pin_source=}), into assigns (the journal's parameters). Only a URI parameter's
--- PIN may be given; the URI must name what the journal has. Returns true or nil, why.
function M.pin_again(rec, assigns, g)
  local t = (rec.params and rec.params[g.name] or {}).type
  if t ~= "uri" then
    return nil, ("%s is not a token URI parameter of %s; a resume takes the journal's parameters "
      .. "and only a token's PIN again"):format(g.name, rec.id)
  end
  local had = assigns[g.name]
  if not had or had == "" then return nil, ("the journal has no %s"):format(g.name) end
  local uri = g.uri
  if g.pin_source then
    if g.pin_source == "" then return nil, g.name .. ".pin-source is empty" end
    -- (the journal may hold the run's own pin-source: the one given now takes its place)
    local base = had:gsub("([?&])pin%-source=[^&]*&?", "%1"):gsub("[?&]$", "")
    uri = base .. (base:find("?", 1, true) and "&" or "?") .. "pin-source=" .. g.pin_source
  end
  local u = core.uri_parse(uri)
  if not u then return nil, ("%s: not a PKCS#11 URI"):format(g.name) end
  if not g.pin_source and u.display ~= had then
    return nil, ("%s names %s, the journal's run %s"):format(g.name, u.display, had)
  end
  assigns[g.name] = uri
  return true
end

-- ------------------------------------------------------------------ journals

local function read_lines(path)
  local f, err = io.open(path, "rb")
  if not f then error(("cannot read journal %s"):format(err), 0) end
  local data = f:read("a")
  f:close()
  return data
end

-- Who is running a journal, from its last start or resume event.
local function runner(events)
  for i = #events, 1, -1 do
    local ev = events[i]
    if ev.event == "start" or ev.event == "resume" then
      return require("hsm.claim").describe({pid = ev.pid, host = ev.host, recipe = ev.recipe, taken = ev.time})
    end
  end
  return "another process"
end

--- The events of a journal file, and its start event. Raises naming a bad line. A last line
--- cut short (by a kill or a full disk) is left out; M.repair sets it aside.
function M.read_journal(path)
  local st = core.stat(path)
  if st and st.kind == "dir" then error(("%s is a directory, not a journal file"):format(path), 0) end
  local data = read_lines(path)
  local events, n = {}, 0
  for line, nl in data:gmatch("([^\n]*)(\n?)") do
    if line == "" and nl == "" then break end
    n = n + 1
    local ev, jerr = json.decode(line)
    if type(ev) == "table" and nl == "\n" then
      events[#events + 1] = ev
    elseif nl == "\n" then   -- only the last line may be cut short
      error(("journal %s line %d: %s"):format(path, n, jerr or "not an object"), 0)
    end
  end
  local start = events[1]
  if not start or start.event ~= "start" or not start.recipe then
    error(("%s is not an hsmsh journal (no start event)"):format(path), 0)
  end
  return events, start
end

-- A cut last line (no newline: a kill or a full disk in the middle of a write) is moved to
-- PATH.cut and the journal truncated after its last whole line, so appending goes on cleanly.
local function repair(path, say)
  local data = read_lines(path)
  if data == "" or data:sub(-1) == "\n" then return end
  local keep = #data - #(data:match("[^\n]*$"))
  local ok, err = core.append_synced(path .. ".cut", data:sub(keep + 1) .. "\n")
  if ok then ok, err = core.truncate(path, keep) end
  if not ok then error(("cannot repair journal %s: %s"):format(path, err), 0) end
  say(("journal %s: its last line was cut short (kept in %s.cut); continuing after it"):format(path, path))
end

--- A JSON-lines journal, each entry fsync'd before the step it announces runs. One run per
--- journal: a new run refuses a journal that holds another, and the file is locked while the
--- run lives, so a resume beside the live run refuses. A resumed run appends to it. Returns
--- the writer and the lock (closed when the run ends).
local function open_journal(path, rec, params, resumed, say, on_write)
  if not path then return function() end end
  local st = core.stat(path)
  if st and st.kind == "dir" then error(("--journal %s is a directory; give a file"):format(path), 0) end
  local lk, lerr, busy = core.lock(path)
  if not lk then
    if busy then
      local ok, events = pcall(M.read_journal, path)
      error(("journal %s is in use by %s; not starting"):format(path, ok and runner(events) or "another process"), 0)
    end
    error(("cannot open journal %s"):format(tostring(lerr)), 0)
  end
  if resumed then
    repair(path, say)
  elseif (core.stat(path) or {}).size ~= 0 then
    local ok, events, start = pcall(M.read_journal, path)
    lk:close()
    error(("journal %s already holds %s; give a new file for a new run (or resume that one)")
      :format(path, ok and ("a run of %s (started %s)"):format(start.recipe,
        os.date("!%Y-%m-%d %H:%M:%S UTC", start.time or 0)) or "something else"), 0)
  end
  -- lazy: an entry that records what already happened (the next synced entry, or the
  -- check a resume makes anyway, covers its loss); intents are always synced.
  local function write(ev, lazy)
    ev.time = os.time()
    local ok, err = core.append_synced(path, json.encode(ev) .. "\n", not lazy)
    if not ok then error(("cannot write journal %s: %s"):format(path, err), 0) end
    on_write()
  end
  local me = core.process()
  write({event = resumed and "resume" or "start", recipe = rec.id, version = rec.version,
         sha256 = rec.sha256, params = M.shown_params(rec, params), pid = me.pid,
         host = os.getenv("HSMSH_HOST") or me.host})
  return write, lk
end

-- An error as an operator reads it: one line, without the internal "stdlib/hsm/x.lua:12:"
-- position a Lua runtime error carries (the journal keeps the full text).
local function plain(err)
  local text = tostring(err)
  return (text:gsub("^[%w_/%.%-]+%.lua:%d+: ", ""):gsub("\nstack traceback:.*", ""))
end
M.plain = plain

--- Runs a recipe. opts: {params=, dry_run=, json=, yes=, wait=, journal=, previous=}
--- (previous: the events of the journal being resumed). Returns the exit status.
--- Phases get ctx: params, dry_run, json, yes, previous, journal(ev), emit(ev), say(fmt, ...),
--- print(text), token(uri, {write=true, ...}), must(v, err), progress(total), defer(fn), state (shared
--- between phases) and may set ctx.status (e.g. 1 when some keys failed without raising).
--- ctx.token(uri, {write = true}) claims the token for the run (hsm.claim): a second run
--- that writes it refuses at once (or queues, with --wait) until this one ends.
function M.run(rec, opts)
  local claims, opened = {}, {}
  local function renew() for _, c in ipairs(claims) do c:renew() end end
  local say_line = function(line) if not opts.json then io.stderr:write(line, "\n") end end
  local journal, journal_lock = function() end, nil
  if not opts.dry_run then
    journal, journal_lock = open_journal(opts.journal, rec, opts.params, opts.previous ~= nil,
                                         say_line, renew)
  end
  local out = opts.json and io.stdout or io.stderr
  local ctx = {params = opts.params, dry_run = opts.dry_run, json = opts.json, yes = opts.yes,
               previous = opts.previous, journal = journal, state = {}}
  function ctx.progress(total, what)
    local bar = require("hsm.ui").progress(total, what, not opts.json and core.isatty(2))
    local tick = bar.tick
    bar.tick = function(...) renew(); return tick(...) end
    return bar
  end
  local deferred = {}
  --- fn runs when the run ends, whatever happened, dry runs included (e.g. removing the
  --- objects a transport made), before the sessions close.
  function ctx.defer(fn) deferred[#deferred + 1] = fn end
  function ctx.must(v, err, ...) if not v then error(err, 0) end return v, err, ... end
  function ctx.token(uri, topts)
    local s, info = require("hsm").token(uri, topts)
    opened[#opened + 1] = s
    if topts and topts.write and not opts.dry_run then
      claims[#claims + 1] = require("hsm.claim").take(s, info, {wait = opts.wait, recipe = rec.id,
        journal_path = opts.journal, journal = journal, say = say_line})
    end
    return s, info
  end
  --- An event: a JSON line with --json, else handed to the phase's own human output.
  function ctx.emit(ev) if opts.json then out:write(json.encode(ev), "\n") end end
  function ctx.say(fmt, ...) say_line(fmt:format(...)) end
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
    ctx.emit({event = "error", message = plain(err)})
    io.stderr:write(("hsmsh: %s\n"):format(plain(err)))
    pcall(journal, {event = "error", message = tostring(err)})
    status = 1
    -- Roll back the phases that ran, newest first: 3 = rolled back cleanly, 4 = not; 1 when
    -- none of them had anything to roll back.
    for i = #applied, 1, -1 do
      local phase = applied[i]
      if phase.rollback then
        if status ~= 4 then status = 3 end
        local rok, rerr = pcall(phase.rollback, ctx)
        pcall(journal, {event = "rollback", phase = phase.name, ok = rok})
        if not rok then
          status = 4
          io.stderr:write(("hsmsh: rollback of phase %s failed: %s\n"):format(
            tostring(phase.name), plain(rerr)))
        end
      end
    end
  end
  for i = #deferred, 1, -1 do
    local dok, derr = pcall(deferred[i])
    if not dok then io.stderr:write(("hsmsh: cleaning up: %s\n"):format(plain(derr))) end
  end
  for _, c in ipairs(claims) do pcall(c.release, c) end
  for _, s in ipairs(opened) do s:close() end
  pcall(journal, {event = "end", status = status})
  if journal_lock then journal_lock:close() end
  return status
end

return M
