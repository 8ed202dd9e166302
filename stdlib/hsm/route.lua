--- hsm.route: the operator's side of libhsmsh-route.so. The state file (docs/route-state.md)
--- is made by init and changed by set, always whole (hsm.output), under STATE.lock, with the
--- generation one higher, so that a module re-reading it sees the old state or the new one,
--- never a mix. status adds the statistics the module's processes write to
--- STATE.stats.d/PID.json.
local core = require("hsm.core")
local json = require("hsm.json")
local output = require("hsm.output")

local M = {}

local KEYS = {"format", "generation", "blue", "green", "weights", "write", "mode"}
-- Optional, together: the weights hold until that time, then weights-after does (a canary
-- sets them, so that the module falls back by itself if its watcher dies).
local TIMED = {"weights-until", "weights-after"}
local SIDES = {"blue", "green"}

--- A side's URI checked as the module will check it: parsed, a token named, no PIN.
local function side_uri(name, uri)
  if type(uri) ~= "string" or uri == "" then error(("%s=URI is required"):format(name), 0) end
  local u, err = core.uri_parse(uri)
  if not u then error(("%s: %s"):format(name, err), 0) end
  if u.pin or u.pin_source then
    error(("%s: the URI carries a PIN; the state holds none (applications log in themselves)"):format(name), 0)
  end
  if not u.token and not u.serial then error(("%s: the URI names no token (give token= or serial=)"):format(name), 0) end
  if u.module_path and not core.stat(u.module_path) then
    error(("%s: module %s does not exist"):format(name, u.module_path), 0)
  end
  return uri
end

local function check_weights(name, w)
  local b, g = tostring(w):match("^(%d+)/(%d+)$")
  b, g = tonumber(b), tonumber(g)
  if not b or b > 100 or g > 100 or b + g ~= 100 then
    error(("%s=%s: give BLUE/GREEN, each 0 to 100, adding up to 100 (e.g. 90/10)"):format(name, tostring(w)), 0)
  end
end

--- Checks a state table; raises naming the first bad field.
local function check(st)
  for _, s in ipairs(SIDES) do side_uri(s, st[s]) end
  if st.blue == st.green then error("blue and green name the same token", 0) end
  check_weights("weights", st.weights)
  if (st["weights-until"] == nil) ~= (st["weights-after"] == nil) then
    error("weights-until and weights-after go together", 0)
  end
  if st["weights-until"] ~= nil then
    local t = math.tointeger(tonumber(st["weights-until"]))
    if not t or t <= 0 or tostring(t) ~= tostring(st["weights-until"]) then
      error(("weights-until=%s: give a time in seconds since 1970"):format(tostring(st["weights-until"])), 0)
    end
    check_weights("weights-after", st["weights-after"])
  end
  if st.write ~= "blue" and st.write ~= "green" then
    error(("write=%s: give blue or green"):format(tostring(st.write)), 0)
  end
  if st.mode ~= "normal" and st.mode ~= "limited-write" then
    error(("mode=%s: give normal or limited-write"):format(tostring(st.mode)), 0)
  end
end

--- Parses a state file's text. Returns the table or raises "STATE: line N: ...".
function M.parse(text, path)
  local st, seen, ended, n = {}, {}, false, 0
  local function bad(msg) error(("route state %s: %s"):format(path, msg), 0) end
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    n = n + 1
    line = line:gsub("\r$", "")
    if line ~= "" and line:sub(1, 1) ~= "#" then
      if ended then bad(("line %d: text after 'end'"):format(n)) end
      if line == "end" then ended = true
      else
        local k, v = line:match("^([%w_-]+)=(.*)$")
        if not k then bad(("line %d: not KEY=VALUE"):format(n)) end
        if seen[k] then bad(("line %d: '%s' given twice"):format(n, k)) end
        seen[k], st[k] = true, v
      end
    end
  end
  if not ended then bad("no 'end' line: the file is truncated") end
  for _, k in ipairs(KEYS) do if not seen[k] then bad(("'%s' is missing"):format(k)) end end
  if st.format ~= "1" then bad(("format %s is not 1"):format(st.format)) end
  st.generation = math.tointeger(tonumber(st.generation))
  if not st.generation or st.generation < 0 then bad("generation is not a number") end
  local ok, err = pcall(check, st)
  if not ok then bad(err) end
  return st
end

--- Reads and parses the state file at path.
function M.read(path)
  local f, err = io.open(path, "rb")
  if not f then error(("cannot read route state %s"):format(err), 0) end
  local text = f:read("a")
  f:close()
  return M.parse(text, path)
end

local function render(st)
  local out = {"# hsmsh route state (docs/route-state.md); change it with `hsmsh route set`"}
  for _, k in ipairs(KEYS) do out[#out + 1] = ("%s=%s"):format(k, tostring(st[k])) end
  for _, k in ipairs(TIMED) do
    if st[k] ~= nil then out[#out + 1] = ("%s=%s"):format(k, tostring(st[k])) end
  end
  out[#out + 1] = "end\n"
  return table.concat(out, "\n")
end

--- Writes st whole (hsm.output: checked, read back, renamed into place), readable by every
--- user: the applications that load the module may run as another user than the operator.
local function save(path, st, replace)
  check(st)
  output.write(path, render(st), {replace = replace, mode = tonumber("644", 8), what = "route state"})
end

local function locked(path, fn)
  local lock <close>, holder = core.lock(path .. ".lock", ("pid %d"):format(core.process().pid), true)
  if not lock then error(("cannot lock %s.lock: %s"):format(path, tostring(holder)), 0) end
  return fn()
end

-- For applications running as other users in group: the birth journal and the log (0660)
-- and the statistics directory (02770), made now, owned by the group. The module never
-- widens a mode; without this, only the user whose application first writes them can.
local function share(path, group)
  for _, f in ipairs({path .. ".births", path .. ".log"}) do
    if not core.stat(f) then
      local h = assert(io.open(f, "a"))
      h:close()
    end
    assert(core.chgrp(f, group))
    assert(core.chmod(f, tonumber("660", 8)))
  end
  local d = path .. ".stats.d"
  if not core.stat(d) then assert(core.mkdir(d, tonumber("2770", 8))) end
  assert(core.chgrp(d, group))
  assert(core.chmod(d, tonumber("2770", 8)))
end

--- Makes a new state file: weights 100/0, write=blue, mode normal, generation 1 (opts may
--- give weights, write, mode, and group: the group of the applications' users, who then
--- may write the birth journal, the log and the statistics). An existing file is never
--- replaced.
function M.init(path, opts)
  if core.stat(path) then
    error(("route state %s already exists; change it with `hsmsh route set`"):format(path), 0)
  end
  if opts.group and not core.gid(opts.group) then
    error(("group=%s: no such group"):format(opts.group), 0)
  end
  local st = {format = "1", generation = 1, blue = opts.blue, green = opts.green,
              weights = opts.weights or "100/0", write = opts.write or "blue", mode = opts.mode or "normal"}
  locked(path, function() save(path, st, false) end)   -- (a racing init loses at the rename)
  if opts.group then share(path, opts.group) end
  return st
end

--- The weights the module uses now, and a sentence for people: "90/10 until 16:40:00 UTC,
--- then 100/0", or, once weights-until has passed, the weights after it.
function M.weights_now(st, now)
  local untl = tonumber(st["weights-until"])
  if not untl then return st.weights, st.weights end
  if (now or os.time()) >= untl then
    return st["weights-after"], ("%s (weights %s held until %s: passed)"):format(st["weights-after"],
      st.weights, os.date("!%Y-%m-%d %H:%M:%S UTC", untl))
  end
  return st.weights, ("%s until %s, then %s"):format(st.weights, os.date("!%Y-%m-%d %H:%M:%S UTC", untl),
    st["weights-after"])
end

--- Changes weights, write and/or mode; the generation goes up by one. Returns the new state.
--- changes.until (seconds since 1970) and changes.after (B/G): the weights hold until then,
--- after that the module uses `after` by itself; weights given without them clear both.
function M.set(path, changes)
  return locked(path, function()
    local st = M.read(path)
    local any = false
    for _, k in ipairs({"weights", "write", "mode"}) do
      if changes[k] ~= nil then st[k], any = changes[k], true end
    end
    if changes.weights ~= nil then
      st["weights-until"] = changes["until"] and math.tointeger(changes["until"]) or nil
      st["weights-after"] = changes.after
    end
    if not any then error("route set: give weights=B/G, write=blue|green or mode=normal|limited-write", 0) end
    st.generation = st.generation + 1
    save(path, st, true)
    return st
  end)
end

--- The state and the module's statistics, summed over its processes' files (latency
--- percentiles: the highest of the processes that ran operations); a process that is gone
--- (its pid no longer alive) still counts, and is listed as such.
function M.status(path)
  local st = M.read(path)
  local sum = {}
  for _, s in ipairs(SIDES) do
    sum[s] = {sessions = 0, ops = 0, errors = 0, misses = 0, split_brain = 0, refusals = 0,
              writes = 0, downs = 0, errors_by_rv = {}, up = nil}
  end
  local procs = {}
  for _, e in ipairs(core.listdir(path .. ".stats.d") or {}) do
    if e.kind == "file" and e.name:match("^%d+%.json$") then
      local f = io.open(path .. ".stats.d/" .. e.name, "rb")
      local v = f and json.decode(f:read("a"))
      if f then f:close() end
      if type(v) == "table" and type(v.sides) == "table" then
        procs[#procs + 1] = {pid = v.pid, generation = v.generation, time = v.time, alive = core.alive(v.pid)}
        for _, s in ipairs(SIDES) do
          local a, t = v.sides[s] or {}, sum[s]
          for k, x in pairs(a) do
            if type(x) == "number" and t[k] then t[k] = t[k] + x end
          end
          for rv, x in pairs(a.errors_by_rv or {}) do t.errors_by_rv[rv] = (t.errors_by_rv[rv] or 0) + x end
          -- Percentiles do not add up: the slowest process's, a bound for all of them.
          for q, x in pairs(type(a.latency_us) == "table" and a.latency_us or {}) do
            if type(x) == "number" and (a.ops or 0) > 0 then
              t.latency_us = t.latency_us or {}
              t.latency_us[q] = math.max(t.latency_us[q] or 0, x)
            end
          end
          if procs[#procs].alive then t.up = (t.up ~= false) and a.up == true end
        end
      end
    end
  end
  table.sort(procs, function(a, b) return (a.pid or 0) < (b.pid or 0) end)
  return {state = st, sides = sum, processes = procs}
end

return M
