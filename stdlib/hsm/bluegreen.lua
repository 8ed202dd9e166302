--- hsm.bluegreen: a blue/green cutover (seed 002) carried out over libhsmsh-route.so while the
--- applications keep running. Its facts live beside the route state STATE: the state itself
--- (weights, write side; hsm.route) and the controller file STATE.bluegreen (this module:
--- the cutover's id, the sides, the replication key, the last backup, which steps ran and
--- how far the birth journal has been synced), each written whole, so any step can be run
--- again, after kill -9 too, or from another machine that has the files.
---
---   local bg = require("hsm.bluegreen")
---   bg.prepare(ctx, {state=, blue=, green=, source="backup"|"migrate", backup=})
---   bg.parity(ctx, c)   bg.canary(ctx, c, {weight=, watch=, max_error_rate=})
---   bg.sync(ctx, c, direction)   bg.write_switch(ctx, c)   bg.cutover(ctx, c)
---   bg.rollback(ctx, c, {blue_capacity=})   bg.decommission(ctx, c)   bg.status(ctx, c)
---
--- c is the cutover as M.open returns it: the controller, both sessions and the transport
--- over the shared replication key (AES-KWP under one AES-256 key on both sides, carried once
--- from blue to green by RSA-AES at prepare), so that syncs need no RSA per key and no prompt.
local core = require("hsm.core")
local json = require("hsm.json")
local output = require("hsm.output")
local route = require("hsm.route")
local migrate = require("hsm.migrate")
local transport = require("hsm.transport")
local archive = require("hsm.archive")
local keys = require("hsm.keys")
local ui = require("hsm.ui")

local M = {}

local SIDES = {"blue", "green"}
local ROW_COLUMNS = {{"class", "CLASS"}, {"label", "LABEL"}, {"id", "ID"}, {"reason", "WHY"}}
local OTHER = {blue = "green", green = "blue"}

-- ------------------------------------------------------------------ the controller file

local function ctl_path(state) return state .. ".bluegreen" end

--- The controller of the cutover at state, or nil when there is none yet.
function M.load(state)
  local f = io.open(ctl_path(state), "rb")
  if not f then return nil end
  local text = f:read("a")
  f:close()
  local c = json.decode(text)
  if type(c) ~= "table" or c.format ~= 1 or type(c.id) ~= "string" then
    error(("%s is not a blue/green controller file (altered or of another tool)"):format(ctl_path(state)), 0)
  end
  return c
end

local function save(state, c)
  c.updated = os.time()
  output.write(ctl_path(state), json.encode(c) .. "\n",
               {replace = true, mode = tonumber("600", 8), what = "blue/green controller"})
end

local function step_done(c, name, facts)
  c.steps = c.steps or {}
  c.steps[name] = facts or {}
  c.steps[name].time = os.time()
  c.last = name
end

-- ------------------------------------------------------------------ the sides

--- A side's URI as the route state holds it: no PIN (the applications log in).
local function pinless(uri)
  local u = assert(core.uri_parse(uri))
  local shown = u.display:gsub("([?&])pin%-source=[^&]*&?", "%1"):gsub("[?&]$", "")
  return shown
end

--- The URI hsmsh opens a side with: the one given, which must name the state's token, or
--- the state's with pin-source= added.
local function login_uri(name, state_uri, given, pin_source)
  if given and given ~= "" then
    if pinless(given) ~= state_uri then
      error(("%s=%s names another token than the route state's %s (%s)"):format(name,
        pinless(given), name, state_uri), 0)
    end
    return given
  end
  if pin_source and pin_source ~= "" then
    return state_uri .. (state_uri:find("?", 1, true) and "&" or "?") .. "pin-source=" .. pin_source
  end
  return state_uri
end

local function kek_label(c) return "hsmsh-bluegreen-" .. c.id end

--- The transport between two sides over the replication key; names the side that lacks it.
local function kek_transport(cut, from, to)
  local c, sessions = cut.ctl, cut.s
  for _, side in ipairs({from, to}) do
    local l = assert(sessions[side]:find_all({CKA_LABEL = kek_label(c), CKA_CLASS = "CKO_SECRET_KEY"}))
    if #l ~= 1 then
      error(("the replication key %s is %s on %s; it cannot travel again (non-extractable since prepare): "
        .. "start a new cutover (step=prepare with a new state file)")
        :format(kek_label(c), #l == 0 and "missing" or ("there " .. #l .. " times"), side), 0)
    end
  end
  return transport.new(sessions[from], sessions[to], {kind = "aes-kwp", kek = kek_label(c)})
end

--- Everything but the replication key.
local function not_kek(c)
  local label = kek_label(c)
  return function(a) return a.CKA_LABEL ~= label end
end

--- Opens the cutover at opts.state (made by prepare): the controller, the route state, a
--- session on each side, claimed for the run unless opts.read_only (status, parity).
--- opts: {state=, blue=, green=, pin_source=, read_only=}.
function M.open(ctx, opts)
  local c = M.load(opts.state)
  if not c then
    error(("no blue/green cutover at %s: run step=prepare first"):format(opts.state), 0)
  end
  local st = route.read(opts.state)
  if st.blue ~= c.blue or st.green ~= c.green then
    error(("route state %s names blue %s and green %s, but its controller was made for %s and %s: the state of another migration")
      :format(opts.state, st.blue, st.green, c.blue, c.green), 0)
  end
  local cut = {ctl = c, route = st, state = opts.state, s = {}}
  for _, side in ipairs(SIDES) do
    cut.s[side] = ctx.token(login_uri(side, c[side], opts[side], opts.pin_source), {write = not opts.read_only})
  end
  return cut
end

-- ------------------------------------------------------------------ planning helpers

--- The birth journal's complete lines from byte offset on, and the offset after them.
local function births_since(state, offset)
  local f = io.open(state .. ".births", "rb")
  if not f then return {}, offset end
  if f:seek("end") < offset then offset = 0 end   -- replaced by the operator: read it all
  f:seek("set", offset)
  local text = f:read("a") or ""
  f:close()
  local lines, used = {}, 0
  for line, stop in text:gmatch("([^\n]*)\n()") do
    used = stop - 1
    local ok, ev = pcall(json.decode, line)
    if ok and type(ev) == "table" then lines[#lines + 1] = ev end
  end
  return lines, offset + used
end

local CREATES = {C_GenerateKey = true, C_GenerateKeyPair = true, C_CreateObject = true,
                 C_UnwrapKey = true, C_DeriveKey = true, C_CopyObject = true}

--- The objects made through the route since the last sync, by ref (class, ID, label).
local function born_since_sync(cut)
  local set = {}
  for _, ev in ipairs((births_since(cut.state, cut.ctl.births_offset or 0))) do
    if CREATES[ev.op] then
      set[migrate.ref({CKA_CLASS = ev.class, CKA_LABEL = ev.label,
                       CKA_ID = ev.id ~= "" and require("hsm").unhex(ev.id) or nil})] = true
    end
  end
  return set
end

--- The read-only diff from one side to the other, as a migration plans it; what prepare
--- recorded of green (capacity=, fips=) holds for every copy made onto it.
local function diff(cut, from, to, opts)
  opts = opts or {}
  local c = cut.ctl
  return migrate.plan(cut.s[from], cut.s[to], {filter = not_kek(c),
    transport = opts.transport or kek_transport(cut, from, to),
    capacity = opts.capacity or (to == "green" and c.green_capacity or nil),
    fips = to == "green" and c.fips or nil})
end

local function missing(plan)
  local l = {}
  for _, it in ipairs(plan.items) do
    if it.strategy == "wrap" or it.strategy == "copy" then l[#l + 1] = it end
  end
  return l
end

local function listed(plan, strategy)
  local l = {}
  for _, it in ipairs(plan.items) do
    if it.strategy == strategy then l[#l + 1] = migrate.row(it) end
  end
  return l
end

-- ------------------------------------------------------------------ prepare

local function same_token(a, ai, b, bi)
  return ai.serial == bi.serial and ai.label == bi.label and a:module():path() == b:module():path()
end

--- Makes the replication key on blue (once) and carries it to green by RSA-AES; then both
--- copies are made non-extractable.
local function replication_key(ctx, cut)
  local c, label = cut.ctl, kek_label(cut.ctl)
  local blue, green = cut.s.blue, cut.s.green
  local on_blue = assert(blue:find_all({CKA_LABEL = label, CKA_CLASS = "CKO_SECRET_KEY"}))
  local on_green = assert(green:find_all({CKA_LABEL = label, CKA_CLASS = "CKO_SECRET_KEY"}))
  if #on_blue == 0 and #on_green > 0 then
    error(("green holds the replication key %s and blue does not: restore blue first"):format(label), 0)
  end
  if #on_blue == 0 then
    assert(blue:generate{type = "AES", bits = 256, label = label, token = true, CKA_ID = c.id,
      CKA_SENSITIVE = true, CKA_EXTRACTABLE = true, CKA_WRAP = true, CKA_UNWRAP = true,
      CKA_ENCRYPT = false, CKA_DECRYPT = false, CKA_SIGN = false, CKA_VERIFY = false})
    ctx.say("made the replication key %s on blue", label)
  end
  if #on_green == 0 then
    local t = transport.new(blue, green, {kind = "rsa-aes"})
    ctx.defer(t.close)
    local plan = migrate.plan(blue, green, {transport = t,
      filter = function(a) return a.CKA_LABEL == label end})
    local sum = migrate.apply_reported(ctx, plan, "carrying the replication key", {})
    t.close()
    if sum.migrated ~= 1 then error("the replication key could not be carried to green", 0) end
    ctx.say("carried the replication key to green (RSA-AES)")
  end
  -- The same key on both (the transport proves it), then neither may leave its HSM again.
  kek_transport(cut, "blue", "green")
  for _, side in ipairs(SIDES) do
    local k = assert(cut.s[side]:find_all({CKA_LABEL = label, CKA_CLASS = "CKO_SECRET_KEY"}))[1]
    if k.extractable then assert(k:set{CKA_EXTRACTABLE = false}) end
  end
end

--- Backs blue up into the last-backup file (never replaced: an existing one is verified and
--- kept), under the replication key.
local function last_backup(ctx, cut)
  local c, path = cut.ctl, cut.ctl.backup
  local kek = assert(cut.s.blue:find_all({CKA_LABEL = kek_label(c), CKA_CLASS = "CKO_SECRET_KEY"}))[1]
  if core.stat(path) then
    archive.open(cut.s.blue, kek, path)
    ctx.say("the last backup %s is there and verifies (kept)", path)
    return
  end
  local sum = archive.backup(cut.s.blue, kek, path, {filter = not_kek(c)})
  ctx.say("backed up blue: %d objects (%d keys) into %s%s", sum.objects, sum.keys, path,
    (sum.blocked or 0) > 0 and (", %d not exportable"):format(sum.blocked) or "")
end

--- blue's 3DES keys: a backup of them cannot be restored onto a FIPS green (seed 002).
local function des3_keys(s)
  local n = 0
  for _, kt in ipairs({"CKK_DES3", "CKK_DES2"}) do
    n = n + #assert(s:find_all({CKA_CLASS = "CKO_SECRET_KEY", CKA_KEY_TYPE = kt}))
  end
  return n
end

--- Step prepare: green built from blue, the replication key on both, the last backup, the
--- route state (100/0, write=blue); returns the cutover as M.open does. opts: {state=,
--- blue=, green=, source=, backup=, green_capacity=, fips= (green is FIPS: no 3DES), mode=
--- (the route's mode for the whole preparation, e.g. limited-write)}.
function M.prepare(ctx, opts)
  local c = M.load(opts.state)
  if c and c.last and c.last ~= "prepare" and c.last ~= "parity" then
    error(("step=prepare: this cutover is past preparation (last step %s)"):format(c.last), 0)
  end
  for _, side in ipairs(SIDES) do
    if not opts[side] or opts[side] == "" then error(("step=prepare needs %s=URI"):format(side), 0) end
  end
  local want = {blue = pinless(opts.blue), green = pinless(opts.green)}
  if c and (c.blue ~= want.blue or c.green ~= want.green) then
    error(("%s belongs to the cutover of %s to %s, not %s to %s"):format(ctl_path(opts.state),
      c.blue, c.green, want.blue, want.green), 0)
  end
  local cut = {state = opts.state, s = {}, info = {}}
  for _, side in ipairs(SIDES) do
    cut.s[side], cut.info[side] = ctx.token(opts[side], {write = true})
  end
  if same_token(cut.s.blue, cut.info.blue, cut.s.green, cut.info.green) then
    error(("blue and green are the same token (%s, serial %s)"):format(cut.info.blue.label, cut.info.blue.serial), 0)
  end
  if opts.fips and opts.source == "backup" and des3_keys(cut.s.blue) > 0 then
    error(("blue holds %d 3DES key(s): a backup of them cannot be restored onto a FIPS green; "
      .. "give source=migrate (they stay on blue, listed) or a non-FIPS green (fips=false)"):format(des3_keys(cut.s.blue)), 0)
  end
  local backup = c and c.backup or (opts.backup and opts.backup ~= "" and opts.backup) or (opts.state .. ".backup")
  if ctx.dry_run then
    ctx.say("would prepare green %s from blue %s (source=%s), keep the last backup in %s, and make the route state %s (100/0, write=blue)",
      want.green, want.blue, opts.source, backup, opts.state)
    return
  end
  c = c or {format = 1, id = keys.hex(cut.s.blue:random(8)):lower(), blue = want.blue, green = want.green,
            created = os.time(), backup = backup, births_offset = 0, fips = opts.fips or nil,
            green_capacity = opts.green_capacity}
  cut.ctl = c
  if core.stat(opts.state) then
    local st = route.read(opts.state)
    if st.blue ~= c.blue or st.green ~= c.green then
      error(("route state %s names blue %s and green %s, not this cutover's %s and %s")
        :format(opts.state, st.blue, st.green, c.blue, c.green), 0)
    end
  end
  save(opts.state, c)   -- first, so that a killed prepare is re-run as this same cutover
  if opts.mode then   -- e.g. limited-write for the whole migration (cloudhsm/hsm1-to-hsm2)
    if core.stat(opts.state) then route.set(opts.state, {mode = opts.mode})
    else route.init(opts.state, {blue = c.blue, green = c.green, mode = opts.mode}) end
    ctx.say("route: mode %s", opts.mode)
  end
  replication_key(ctx, cut)
  last_backup(ctx, cut)
  local sum
  if opts.source == "backup" then
    local kek = assert(cut.s.green:find_all({CKA_LABEL = kek_label(c), CKA_CLASS = "CKO_SECRET_KEY"}))[1]
    local a = archive.open(cut.s.green, kek, c.backup)
    sum = migrate.apply_reported(ctx, archive.plan(cut.s.green, kek, a, {capacity = c.green_capacity}),
                                 "restoring onto green", {})
  else
    sum = migrate.apply_reported(ctx, diff(cut, "blue", "green"), "migrating to green", {})
  end
  ctx.say("green: %d made, %d already there, %d blocked, %d failed", sum.migrated, sum.skipped,
    sum.blocked, sum.failed)
  if sum.failed > 0 then error(("%d object(s) failed to reach green; re-run step=prepare"):format(sum.failed), 0) end
  if not core.stat(opts.state) then route.init(opts.state, {blue = c.blue, green = c.green, mode = opts.mode}) end
  step_done(c, "prepare", {source = opts.source, made = sum.migrated, blocked = sum.blocked})
  save(opts.state, c)
  ctx.emit({event = "bluegreen", step = "prepare", id = c.id, made = sum.migrated,
            blocked = sum.blocked, backup = c.backup})
  cut.route = route.read(opts.state)
  return cut
end

-- ------------------------------------------------------------------ parity

--- Both sides enumerated once: what is on blue and not on green, what cannot be, conflicts.
--- Objects the applications made since the last sync are pending, not missing: the next
--- sync carries them.
local function parity_facts(cut)
  local plan = diff(cut, "blue", "green")
  local back = diff(cut, "green", "blue")
  local born, f = born_since_sync(cut), {missing = {}, pending = {}, only_green = {}}
  for _, it in ipairs(missing(plan)) do table.insert(born[it.ref] and f.pending or f.missing, it) end
  for _, it in ipairs(missing(back)) do table.insert(born[it.ref] and f.pending or f.only_green, it) end
  f.plan, f.blocked, f.conflicts = plan, listed(plan, "blocked"), listed(plan, "conflict")
  f.differ = {}   -- on both sides, with attributes that differ (no quirk explains them)
  for _, it in ipairs(plan.items) do
    if it.strategy == "skip" then
      local bad = migrate.differences(plan, it)
      if #bad > 0 then
        local r = migrate.row(it)
        r.reason = table.concat(bad, "; ")
        f.differ[#f.differ + 1] = r
      end
    end
  end
  return f
end

local function require_step(c, name, why)
  if not (c.steps and c.steps[name]) then error(why, 0) end
end

function M.parity(ctx, cut)
  local f = parity_facts(cut)
  local c = cut.ctl
  for _, r in ipairs(f.blocked) do
    ctx.emit({event = "parity", kind = "blue-only", label = r.label, id = r.id, class = r.class, reason = r.reason})
  end
  if #f.blocked > 0 then
    ctx.say("%d object(s) cannot be on green; the route keeps serving them from blue:\n%s",
      #f.blocked, ui.table(f.blocked, ROW_COLUMNS))
  end
  if #f.conflicts > 0 then
    error(("parity fails: %d split-brain conflict(s), the same class, ID and label holding different keys:\n%s")
      :format(#f.conflicts, ui.table(f.conflicts, ROW_COLUMNS)), 0)
  end
  if #f.differ > 0 then
    ctx.say("%d object(s) on both sides differ in their attributes; a sync does not carry attribute " ..
      "changes (this version): set them on the other side too:\n%s", #f.differ, ui.table(f.differ, ROW_COLUMNS))
  end
  local ok = #f.missing == 0 and #f.differ == 0
  ctx.say("parity %s: %d on both sides, %d on blue only, %d blocked, %d on green only, %d made since the last sync (pending)",
    ok and "holds" or "does not hold", f.plan.counts.skip or 0, #f.missing, #f.blocked, #f.only_green, #f.pending)
  ctx.emit({event = "bluegreen", step = "parity", ok = ok, both = f.plan.counts.skip or 0,
            missing = #f.missing, blocked = #f.blocked, only_green = #f.only_green, pending = #f.pending,
            differ = #f.differ})
  if not ctx.dry_run then
    step_done(c, "parity", {ok = ok, blocked = #f.blocked})
    save(cut.state, c)
  end
  if not ok then
    error(("parity does not hold: %d object(s) on blue are not on green (run step=sync), %d differ in their attributes")
      :format(#f.missing, #f.differ), 0)
  end
end

-- ------------------------------------------------------------------ canary

local function side_counts(path)
  local s = route.status(path)
  local out = {}
  for _, side in ipairs(SIDES) do
    local t = s.sides[side]
    out[side] = {ops = t.ops, errors = t.errors, misses = t.misses, up = t.up,
                 errors_by_rv = t.errors_by_rv, latency_us = t.latency_us}
  end
  return out
end

local function rate(d) return d.ops > 0 and d.errors / d.ops or 0 end

--- A max_error_rate= parameter (a fraction) as a number; raises naming it.
function M.error_rate(text)
  local r = tonumber(text)
  if not r or r < 0 or r > 1 then
    error(("max_error_rate=%s: give a fraction between 0 and 1 (0.01 = one point)"):format(tostring(text)), 0)
  end
  return r
end

--- The window's figures per side (now minus start), as table rows.
local function window(start, now)
  local rows, d = {}, {}
  for _, side in ipairs(SIDES) do
    local a, b = start[side], now[side]
    d[side] = {ops = b.ops - a.ops, errors = b.errors - a.errors, misses = b.misses - a.misses, up = b.up}
    local rvs = {}
    for rv, n in pairs(b.errors_by_rv or {}) do
      local k = n - ((a.errors_by_rv or {})[rv] or 0)
      if k > 0 then rvs[#rvs + 1] = ("%s %d"):format(rv, k) end
    end
    table.sort(rvs)
    local lat = b.latency_us or {}
    rows[#rows + 1] = {side = side, ops = d[side].ops, errors = d[side].errors,
      rate = ("%.2f%%"):format(100 * rate(d[side])), misses = d[side].misses,
      by_ckr = #rvs > 0 and table.concat(rvs, ", ") or "-",
      p50_us = lat.p50, p99_us = lat.p99, up = b.up == false and "down" or "up"}
  end
  return rows, d
end

--- Watches the route's statistics for seconds from start (side_counts), every second, and
--- prints the per-side table. Returns the window's figures and why green failed (down, or
--- its error rate above blue's by more than max_error_rate), or nil.
function M.watch(ctx, cut, start, seconds, max_error_rate)
  local rows, d, why
  start = start or side_counts(cut.state)
  for _ = 1, math.max(1, seconds) do
    core.sleep(1)
    rows, d = window(start, side_counts(cut.state))
    if d.green.up == false then why = "green is down" end
    if not why and d.green.ops > 0 and rate(d.green) - rate(d.blue) > max_error_rate then
      why = ("green's error rate %.2f%% exceeds blue's %.2f%% by more than %.2f points")
        :format(100 * rate(d.green), 100 * rate(d.blue), 100 * max_error_rate)
    end
    if why then break end
  end
  ctx.print(ui.table(rows, {{"side", "SIDE"}, {"ops", "OPS"}, {"errors", "ERRORS"}, {"rate", "RATE"},
    {"by_ckr", "BY CKR"}, {"misses", "MISSES"}, {"p50_us", "P50 µs"}, {"p99_us", "P99 µs"}, {"up", "UP"}}))
  for _, r in ipairs(rows) do r.event = "watch_side"; ctx.emit(r) end
  return d, why
end

local CANARY_GRACE = 10   -- seconds after a canary's watch before the module falls back alone

--- Step canary: green takes weight N for the watch window; green worse than blue by more
--- than max_error_rate, or down, puts its weight back to 0 and fails, saying why.
function M.canary(ctx, cut, opts)
  local c = cut.ctl
  if not (c.steps and c.steps.parity and c.steps.parity.ok) then
    error("step=canary: parity has not been shown; run step=parity first", 0)
  end
  if cut.route.write == "green" then
    error("step=canary: the write side is already green; the canary is over (use step=cutover or step=rollback)", 0)
  end
  local w = opts.weight
  if ctx.dry_run then
    ctx.say("would set weights %d/%d and watch for %d s (fall back to 100/0 if green's error rate exceeds blue's by more than %.4f)",
      100 - w, w, opts.watch, opts.max_error_rate)
    return
  end
  local start = side_counts(cut.state)
  -- The weights hold until the watch should have ended (and a little more): if this process
  -- dies while watching, the module itself puts green back to 0 then.
  local weights = ("%d/%d"):format(100 - w, w)
  route.set(cut.state, {weights = weights, ["until"] = os.time() + opts.watch + CANARY_GRACE, after = "100/0"})
  ctx.say("weights %s; watching for %d s (should this watch die, the module falls back to 100/0 "
    .. "by itself %d s after its end)", weights, opts.watch, CANARY_GRACE)
  local d, why = M.watch(ctx, cut, start, opts.watch, opts.max_error_rate)
  if why then
    route.set(cut.state, {weights = "100/0"})
    step_done(c, "canary", {weight = 0, fell_back = why})
    save(cut.state, c)
    ctx.emit({event = "bluegreen", step = "canary", weight = 0, fell_back = why})
    error(("canary at weight %d: %s; green's weight is back to 0"):format(w, why), 0)
  end
  route.set(cut.state, {weights = weights})   -- it held: the weights stay, with no deadline
  step_done(c, "canary", {weight = w})
  save(cut.state, c)
  ctx.emit({event = "bluegreen", step = "canary", weight = w, ops_green = d.green.ops, ops_blue = d.blue.ops})
  ctx.say("canary at weight %d held: green %d operations, %d errors", w, d.green.ops, d.green.errors)
end

-- ------------------------------------------------------------------ sync

--- Whether obj is the object a birth-journal line recorded: the same check value (a secret
--- key), or the same route fingerprint (route/handles.c: the first 8 bytes of SHA-256 of its
--- public value).
local function proof(obj, rec)
  if rec.kcv then
    -- keys.kcv: CKA_CHECK_VALUE, or computed (an unwrapped copy may have none recorded)
    local v = keys.kcv(obj)
    return v ~= nil and v:lower() == rec.kcv:lower()
  end
  if rec.fingerprint then
    for _, a in ipairs({"CKA_EC_POINT", "CKA_MODULUS", "CKA_VALUE"}) do
      local v = obj:get(a)
      if v and #v > 0 then return keys.hex(core.sha256(v):sub(1, 8)):lower() == rec.fingerprint:lower() end
    end
  end
  return false
end

--- Deletions made through the route on one side, replicated to the other when the object
--- there is provably the same one (CKA_CHECK_VALUE or public value); never by absence.
local function replicate_deletions(ctx, cut, lines, allowed)
  local done, unproven = 0, {}
  for _, ev in ipairs(lines) do
    local to = OTHER[ev.side]
    if ev.op == "C_DestroyObject" and to and allowed[ev.side .. ">" .. to] then
      local tmpl = {CKA_CLASS = ev.class, CKA_LABEL = ev.label}
      if ev.id and ev.id ~= "" then tmpl.CKA_ID = require("hsm").unhex(ev.id) end
      local found = assert(cut.s[to]:find_all(tmpl))
      for _, obj in ipairs(found) do
        if proof(obj, ev) then
          assert(obj:destroy())
          done = done + 1
          ctx.emit({event = "sync_delete", side = to, class = ev.class, label = ev.label, id = ev.id})
        else
          unproven[#unproven + 1] = ("%s %s id %s on %s"):format(ev.class, ev.label, ev.id, to)
        end
      end
    end
  end
  return done, unproven
end

local function identity(class, id_hex, label)
  local t = {CKA_CLASS = class, CKA_LABEL = label}
  if id_hex and id_hex ~= "" then t.CKA_ID = require("hsm").unhex(id_hex) end
  return t
end

--- The one object on session s with this identity that proof() ties to the journal line.
local function proven(s, tmpl, ev)
  local found = {}
  for _, obj in ipairs(assert(s:find_all(tmpl))) do
    if proof(obj, ev) then found[#found + 1] = obj end
  end
  return #found == 1 and found[1] or nil
end

--- Attribute changes made through the route on one side (C_SetAttributeValue), renames
--- included (the journal records the identity before), carried in journal order to the twin
--- on the other side when it is provably the same object. An object changed on both sides
--- since the last sync is left as it is on both and listed. Returns the count and the list.
local function replicate_changes(ctx, cut, lines, allowed)
  local sides_of = {}
  for _, ev in ipairs(lines) do
    if ev.op == "C_SetAttributeValue" then
      local k = migrate.ref(identity(ev.class, ev.id, ev.label))
      sides_of[k] = sides_of[k] or {}
      sides_of[k][ev.side] = true
    end
  end
  local done, left = 0, {}
  for _, ev in ipairs(lines) do
    local to = OTHER[ev.side]
    local k = ev.op == "C_SetAttributeValue" and migrate.ref(identity(ev.class, ev.id, ev.label))
    if k and sides_of[k].blue and sides_of[k].green then
      if ev.side == "blue" then left[#left + 1] = ("%s (changed on both sides)"):format(k) end
    elseif k and allowed[ev.side .. ">" .. to] then
      local twin = proven(cut.s[to], identity(ev.class, ev.was_id or ev.id, ev.was_label or ev.label), ev)
      local src = proven(cut.s[ev.side], identity(ev.class, ev.id, ev.label), ev)
      if twin and src then
        local set, refused = migrate.reconcile(cut.s[ev.side], src, cut.s[to], twin)
        if #set > 0 then
          done = done + 1
          ctx.emit({event = "sync_change", side = to, class = ev.class, label = ev.label, id = ev.id,
                    set = set})
        end
        for _, r in ipairs(refused) do left[#left + 1] = ("%s on %s: %s refused"):format(k, to, r) end
      elseif twin and ev.was_label then   -- renamed again since: carry this rename only
        assert(twin:set{CKA_LABEL = ev.label, CKA_ID = identity(ev.class, ev.id).CKA_ID or ""})
        done = done + 1
      elseif not twin and #assert(cut.s[to]:find_all(identity(ev.class, ev.was_id or ev.id,
                                                               ev.was_label or ev.label))) > 0 then
        left[#left + 1] = ("%s: the object on %s cannot be proven the same one"):format(k, to)
      end
    end
  end
  return done, left
end

local DIRECTIONS = {["both"] = {{"blue", "green"}, {"green", "blue"}},
                    ["blue-to-green"] = {{"blue", "green"}}, ["green-to-blue"] = {{"green", "blue"}}}

--- Step sync: what was written on one side reaches the other. Deletions the birth journal
--- recorded first, then a full diff each way (every copy verified as in a migration). A
--- split-brain twin stops it, listing both. opts: {capacity = {blue=, green=}} limits.
--- Returns {copied=, deleted=, blocked={rows}, failed=}.
function M.sync(ctx, cut, direction, opts)
  opts = opts or {}
  local c = cut.ctl
  require_step(c, "prepare", "step=sync: the cutover is not prepared; run step=prepare first")
  local pairs_ = DIRECTIONS[direction]
  local allowed = {}
  for _, p in ipairs(pairs_) do allowed[p[1] .. ">" .. p[2]] = true end
  local lines, upto = births_since(cut.state, c.births_offset or 0)
  local plans = {}
  for _, p in ipairs(pairs_) do
    local plan = diff(cut, p[1], p[2], {capacity = (opts.capacity or {})[p[2]]})
    local conflicts = listed(plan, "conflict")
    if #conflicts > 0 then
      error(("sync stops: split-brain, %d object(s) with the same class, ID and label hold different keys on %s and %s:\n%s")
        :format(#conflicts, p[1], p[2], ui.table(conflicts, ROW_COLUMNS)), 0)
    end
    plans[#plans + 1] = {from = p[1], to = p[2], plan = plan}
  end
  local pending = 0
  for _, p in ipairs(plans) do pending = pending + #missing(p.plan) end
  if ctx.dry_run then
    ctx.say("would replicate %d birth-journal line(s) and copy %d object(s) (%s)", #lines, pending, direction)
    return {copied = 0, deleted = 0, blocked = {}, failed = 0}
  end
  local deleted, unproven = replicate_deletions(ctx, cut, lines, allowed)
  local changed, unchanged = replicate_changes(ctx, cut, lines, allowed)
  if deleted + changed > 0 then
    -- The diffs were made before the deletions and changes: make them again.
    for _, p in ipairs(plans) do p.plan = diff(cut, p.from, p.to, {capacity = (opts.capacity or {})[p.to]}) end
  end
  local res = {copied = 0, deleted = deleted, changed = changed, blocked = {}, failed = 0, unproven = unproven}
  for _, u in ipairs(unchanged) do ctx.say("change not carried: %s", u) end
  for _, p in ipairs(plans) do
    local sum = migrate.apply_reported(ctx, p.plan, ("syncing %s to %s"):format(p.from, p.to), {})
    res.copied, res.failed = res.copied + sum.migrated, res.failed + sum.failed
    for _, it in ipairs(p.plan.items) do
      if it.strategy == "blocked" then
        local r = migrate.row(it)
        r.to, r.held_as = p.to, it.held_as
        res.blocked[#res.blocked + 1] = r
      end
    end
  end
  for _, u in ipairs(unproven) do ctx.say("not deleted (cannot prove it is the same object): %s", u) end
  if res.failed > 0 then
    error(("sync: %d object(s) failed to copy; the birth journal stays where it was, re-run step=sync"):format(res.failed), 0)
  end
  -- Only a sync both ways has handled every line (a one-way sync leaves the other side's
  -- deletions for the next one; handling a line twice is harmless).
  if direction == "both" then c.births_offset = upto end
  step_done(c, "sync", {direction = direction, copied = res.copied, deleted = deleted, changed = changed,
                        blocked = #res.blocked, generation = route.read(cut.state).generation})
  local saved, serr = pcall(save, cut.state, c)
  if not saved then
    error(("sync: %d copied, %d deleted, %d changed, but the step cannot be recorded: %s; run "
      .. "step=sync again once there is room (nothing is copied twice)"):format(res.copied, deleted,
      changed, tostring(serr)), 0)
  end
  ctx.say("sync (%s): %d copied, %d deleted, %d changed, %d cannot be copied", direction, res.copied,
    deleted, changed, #res.blocked)
  for _, r in ipairs(res.blocked) do ctx.say("not copied to %s: %s %s: %s", r.to, r.class, r.label, r.reason or "") end
  ctx.emit({event = "bluegreen", step = "sync", direction = direction, copied = res.copied,
            deleted = deleted, changed = changed, blocked = #res.blocked})
  return res
end

-- ------------------------------------------------------------------ write switch, cutover

function M.write_switch(ctx, cut)
  local c = cut.ctl
  if cut.route.write == "green" then ctx.say("the write side is already green"); return end
  require_step(c, "parity", "step=write-switch: parity has not been shown; run step=parity and step=sync first")
  require_step(c, "sync", "step=write-switch: no sync has run yet; run step=sync first")
  if ctx.dry_run then ctx.say("would sync blue to green, then make green the write side"); return end
  -- Green gets everything blue has first; what blue takes between this sync and the switch
  -- is in the birth journal, for the next sync.
  M.sync(ctx, cut, "blue-to-green")
  route.set(cut.state, {write = "green"})
  step_done(c, "write-switch", {})
  save(cut.state, c)
  ctx.say("the write side is green; later syncs carry green's writes to blue")
  ctx.emit({event = "bluegreen", step = "write-switch", write = "green"})
end

function M.cutover(ctx, cut)
  local c = cut.ctl
  if cut.route.write ~= "green" then
    error("step=cutover: the write side is still blue; run step=write-switch first", 0)
  end
  if ctx.dry_run then ctx.say("would set weights 0/100 and sync"); return end
  route.set(cut.state, {weights = "0/100"})
  cut.route = route.read(cut.state)
  local res = M.sync(ctx, cut, "both")
  step_done(c, "cutover", {copied = res.copied})
  c.cutover_time = c.steps.cutover.time
  save(cut.state, c)
  ctx.say("cut over: green serves every operation and takes every write")
  ctx.emit({event = "bluegreen", step = "cutover"})
end

-- ------------------------------------------------------------------ rollback

--- Step rollback: operations and writes back to blue, and what was born on green carried
--- back, unless blue cannot hold it (capacity, a mechanism or attribute blue lacks, a key
--- green cannot export): then split mode, reads from both, writes to blue, those keys listed.
function M.rollback(ctx, cut, opts)
  local c = cut.ctl
  if c.cutover_time and os.time() - c.cutover_time > opts.rollback_window * 3600 and not ctx.yes then
    error(("step=rollback: the cutover was %d h ago, past the rollback window of %d h; give --yes to roll back anyway")
      :format((os.time() - c.cutover_time) // 3600, opts.rollback_window), 0)
  end
  if ctx.dry_run then ctx.say("would set weights 100/0, write=blue, and carry green's keys back"); return end
  route.set(cut.state, {weights = "100/0", write = "blue"})
  cut.route = route.read(cut.state)
  local res = M.sync(ctx, cut, "both", {capacity = {blue = opts.blue_capacity}})
  local keep = {}
  -- (a key blue holds under another name is on blue: not one to keep green for)
  for _, r in ipairs(res.blocked) do if r.to == "blue" and not r.held_as then keep[#keep + 1] = r end end
  if #keep > 0 then
    ctx.say("split mode: %d key(s) born on green cannot be on blue; the route serves them from green " ..
      "(reads from both, writes to blue); keep green until they are no longer needed:\n%s",
      #keep, ui.table(keep, ROW_COLUMNS))
    for _, r in ipairs(keep) do
      ctx.emit({event = "split_key", class = r.class, label = r.label, id = r.id, reason = r.reason})
    end
  end
  step_done(c, "rollback", {split = #keep > 0, kept_on_green = #keep})
  c.split = #keep > 0 and keep or nil
  save(cut.state, c)
  ctx.say("rolled back: blue serves every operation and takes every write%s", #keep > 0 and " (split mode)" or "")
  ctx.emit({event = "bluegreen", step = "rollback", split = #keep > 0, kept_on_green = #keep})
end

-- ------------------------------------------------------------------ the route, by hand

--- Changes the route state (weights, write, mode), for the vendor procedures that move the
--- route themselves (cloudhsm/hsm1-to-hsm2); records it as a step.
function M.switch(ctx, cut, changes, name)
  if ctx.dry_run then
    ctx.say("would set the route to %s", json.encode(changes))
    return
  end
  cut.route = route.set(cut.state, changes)
  step_done(cut.ctl, name or "switch", changes)
  if changes.weights == "0/100" then cut.ctl.cutover_time = os.time() end
  save(cut.state, cut.ctl)
  ctx.say("route: weights %s, write %s, mode %s", cut.route.weights, cut.route.write, cut.route.mode)
  ctx.emit({event = "bluegreen", step = name or "switch", weights = cut.route.weights,
            write = cut.route.write, mode = cut.route.mode})
end

-- ------------------------------------------------------------------ decommission, status

function M.decommission(ctx, cut)
  local c = cut.ctl
  local off = cut.route.weights == "0/100" and cut.route.write == "green" and "blue"
    or cut.route.weights == "100/0" and cut.route.write == "blue" and not c.split and "green" or nil
  if not off then
    error(("step=decommission: the route is at weights %s, write=%s%s: cut over or roll back first")
      :format(cut.route.weights, cut.route.write, c.split and ", in split mode" or ""), 0)
  end
  local f = parity_facts(cut)
  if #f.missing > 0 or #f.only_green > 0 or #f.conflicts > 0 then
    error(("step=decommission: parity does not hold (%d on blue only, %d on green only, %d conflicts); run step=sync")
      :format(#f.missing, #f.only_green, #f.conflicts), 0)
  end
  if #f.blocked > 0 and cut.route.write == "green" then
    error(("step=decommission: %d object(s) cannot be on green and exist only on blue:\n%s")
      :format(#f.blocked, ui.table(f.blocked, ROW_COLUMNS)), 0)
  end
  if not core.stat(c.backup) then
    error(("step=decommission: the last backup of blue %s is missing"):format(c.backup), 0)
  end
  local kek = assert(cut.s.blue:find_all({CKA_LABEL = kek_label(c), CKA_CLASS = "CKO_SECRET_KEY"}))[1]
  if not kek then error("step=decommission: the replication key is missing on blue; the last backup cannot be verified", 0) end
  local a = archive.open(cut.s.blue, kek, c.backup)       -- its MAC
  local plan = archive.plan(cut.s.blue, kek, a)             -- every key against blue's
  local conflicts = listed(plan, "conflict")
  if #conflicts > 0 then
    error(("step=decommission: the last backup %s holds %d key(s) that differ from blue's:\n%s"):format(c.backup,
      #conflicts, ui.table(conflicts, ROW_COLUMNS)), 0)
  end
  if ctx.dry_run then ctx.say("would mark the cutover finished (%s may be switched off)", off); return end
  step_done(c, "decommission", {off = off})
  c.finished = os.time()
  save(cut.state, c)
  ctx.say("the last backup %s verifies (%d objects); parity holds. %s may now be switched off%s", c.backup,
    #plan.items, off, off == "blue" and "; applications may load green's module directly" or "")
  ctx.emit({event = "bluegreen", step = "decommission", off = off})
end

function M.status(ctx, cut, opts)
  local c = cut.ctl
  local f = parity_facts(cut)
  local lines = births_since(cut.state, c.births_offset or 0)
  local rs = route.status(cut.state)
  local since = c.cutover_time and os.time() - c.cutover_time or nil
  local in_force, weights_text = route.weights_now(cut.route)
  local s = {id = c.id, last_step = c.last, finished = c.finished ~= nil,
    weights = in_force, write = cut.route.write, mode = cut.route.mode,
    generation = cut.route.generation,
    objects = {both = f.plan.counts.skip or 0, blue_only = #f.missing, green_only = #f.only_green,
               blocked = #f.blocked, pending = #f.pending},
    pending_births = #lines, conflicts = #f.conflicts, split = c.split and #c.split or 0,
    backup = c.backup, seconds_since_cutover = since,
    rollback_window_hours = opts.rollback_window,
    within_rollback_window = since == nil or since <= opts.rollback_window * 3600,
    route = rs.sides}
  s.event = "bluegreen_status"
  ctx.emit(s)
  if ctx.json then return s end
  ctx.print(("cutover %s: last step %s%s; weights %s, write %s, mode %s (generation %d)"):format(c.id,
    tostring(c.last), c.finished and " (finished)" or "", weights_text, s.write, s.mode, s.generation))
  ctx.print(("objects: %d on both sides, %d on blue only, %d on green only, %d cannot be on green, %d made since the last sync; %d split-brain conflict(s)")
    :format(s.objects.both, s.objects.blue_only, s.objects.green_only, s.objects.blocked, s.objects.pending, s.conflicts))
  ctx.print(("pending: %d birth-journal line(s) since the last sync; last backup %s"):format(s.pending_births, c.backup))
  if since then
    ctx.print(("cut over %d min ago; rollback window %d h (%s)"):format(since // 60, opts.rollback_window,
      s.within_rollback_window and "open" or "closed"))
  end
  local rows = {}
  for _, side in ipairs(SIDES) do
    local t = rs.sides[side]
    rows[#rows + 1] = {side = side, ops = t.ops, errors = t.errors, misses = t.misses,
      writes = t.writes, refusals = t.refusals, split_brain = t.split_brain,
      up = t.up == nil and "-" or (t.up and "up" or "down")}
  end
  ctx.print(ui.table(rows, {{"side", "SIDE"}, {"ops", "OPS"}, {"errors", "ERRORS"}, {"misses", "MISSES"},
    {"writes", "WRITES"}, {"refusals", "REFUSALS"}, {"split_brain", "SPLIT-BRAIN"}, {"up", "UP"}}))
  return s
end

return M
