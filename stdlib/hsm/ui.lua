--- hsm.ui: what people see: aligned tables, the REPL prompt and printer.
local M = {}

--- Aligned text table. rows: list of tables; cols: list of {key, title}.
function M.table(rows, cols)
  local widths, lines = {}, {}
  local function cell(v)
    if v == nil then return "" elseif v == true then return "yes" elseif v == false then return "no" end
    return tostring(v)
  end
  for i, c in ipairs(cols) do
    widths[i] = #c[2]
    for _, r in ipairs(rows) do widths[i] = math.max(widths[i], #cell(r[c[1]])) end
  end
  local function line(get)
    local parts = {}
    for i, c in ipairs(cols) do
      local v = get(c)
      parts[i] = v .. (" "):rep(widths[i] - #v)
    end
    return (table.concat(parts, "  "):gsub("%s+$", ""))
  end
  lines[1] = line(function(c) return c[2] end)
  for _, r in ipairs(rows) do lines[#lines + 1] = line(function(c) return cell(r[c[1]]) end) end
  return table.concat(lines, "\n")
end

M.object_columns = {
  {"class", "CLASS"}, {"key_type", "TYPE"}, {"bits", "BITS"}, {"label", "LABEL"}, {"id", "ID"},
  {"extractable", "EXTR"}, {"sensitive", "SENS"}, {"modifiable", "MOD"}, {"private", "PRIV"},
  {"wrap_with_trusted", "WWT"}, {"check", "KCV/FINGERPRINT"},
}

-- The order of object tables, as plans have it (hsm.migrate): class, ID, label.
local function by_class_id_label(a, b)
  if a.class ~= b.class then return tostring(a.class) < tostring(b.class) end
  if a.id ~= b.id then return a.id < b.id end
  return a.label < b.label
end

--- Rows for a list of hsm.Objects, sorted by class, ID, label.
--- A private key whose module hides its public parts (EC on SoftHSM2) gets the fingerprint
--- of the public key or certificate with the same ID, found in the same listing.
function M.object_rows(objects)
  local rows, by_id = {}, {}
  for i, o in ipairs(objects) do
    local r = o:describe()
    if r.fingerprint and r.class ~= "private-key" then by_id[r.id] = r.fingerprint end
    rows[i] = r
  end
  for _, r in ipairs(rows) do
    if r.class == "private-key" and not r.fingerprint and r.id ~= "" then r.fingerprint = by_id[r.id] end
    r.check = r.kcv or (r.fingerprint and r.fingerprint:sub(1, 16)) or ""
  end
  table.sort(rows, by_class_id_label)
  return rows
end

local function is_a(v, name)
  local mt = getmetatable(v)
  return type(mt) == "table" and mt.__name == name
end
local function is_object(v) return is_a(v, "hsm.Object") end

--- What a table returned by a module method is, for the printer: t -> {kind=, module=}
--- (kind "slots", "token_info" or "mechanisms"; set by hsm's Module methods).
M.kinds = setmetatable({}, {__mode = "k"})

-- CKF_ flags as short words, sorted: {CKF_RNG=true, CKF_LOGIN_REQUIRED=true} -> "login-required,rng"
local function flag_words(flags)
  local w = {}
  for k, on in pairs(flags or {}) do
    if on then w[#w + 1] = (k:gsub("^CKF_", ""):lower():gsub("_", "-")) end
  end
  table.sort(w)
  return table.concat(w, ",")
end

local TOKEN_COLUMNS = {{"slot", "SLOT"}, {"label", "LABEL"}, {"manufacturer", "MANUFACTURER"},
  {"model", "MODEL"}, {"serial", "SERIAL"}, {"flags", "FLAGS"}}
local function token_row(slot, ti)
  return {slot = slot, label = ti.label, manufacturer = ti.manufacturer, model = ti.model,
          serial = ti.serial, flags = flag_words(ti.flags)}
end

-- The printers of what M.kinds knows and of sessions: a value -> its table's text.
local printers = {}
function printers.slots(list, m)
  local rows = {}
  for _, slot in ipairs(list) do
    local ti = m:token_info(slot)
    rows[#rows + 1] = ti and token_row(slot, ti) or {slot = slot, label = "(no token)"}
  end
  return M.table(rows, TOKEN_COLUMNS)
end
function printers.token_info(ti) return M.table({token_row(nil, ti)}, {table.unpack(TOKEN_COLUMNS, 2)}) end
function printers.mechanisms(list)
  local rows = {}
  for _, mech in ipairs(list) do
    rows[#rows + 1] = {name = mech.name, min = mech.min, max = mech.max, flags = flag_words(mech.flags)}
  end
  table.sort(rows, function(a, b) return a.name < b.name end)
  return M.table(rows, {{"name", "MECHANISM"}, {"min", "MIN"}, {"max", "MAX"}, {"flags", "FLAGS"}})
end
function printers.sessions(list)
  local rows = {}
  for _, s in ipairs(list) do
    local info = s:info() or {}
    local ti = info.slot and s:module():token_info(info.slot) or {}
    rows[#rows + 1] = {slot = info.slot, token = ti.label, state = info.state, rw = info.rw}
  end
  return M.table(rows, {{"slot", "SLOT"}, {"token", "TOKEN"}, {"state", "STATE"}, {"rw", "RW"}})
end

-- The table text for a REPL result, or nil when it prints as lua.c prints it.
local function as_table(v)
  local known = type(v) == "table" and M.kinds[v]
  if known then return printers[known.kind](v, known.module) end
  if is_a(v, "hsm.Session") then v = {v} end
  if type(v) == "table" and #v > 0 and is_a(v[1], "hsm.Session") then return printers.sessions(v) end
  return nil
end

--- REPL printer: object lists, slots, token facts, mechanisms and sessions as tables,
--- everything else as lua.c prints.
function M.show(...)
  local n = select("#", ...)
  local first = ...
  if n == 1 and type(first) == "table" and #first > 0 and is_object(first[1]) then
    print(M.table(M.object_rows(first), M.object_columns))
    return
  end
  if n == 1 and is_object(first) then
    print(M.table(M.object_rows({first}), M.object_columns))
    return
  end
  local text = n == 1 and as_table(first)
  if text then print(text) return end
  local out = {}
  for i = 1, n do out[i] = tostring((select(i, ...))) end
  print(table.concat(out, "\t"))
end

--- A progress line on stderr for long work: count, rate, ETA. Silent unless enabled (a TTY
--- and no --json). p:tick() after each item, p:done() at the end.
function M.progress(total, what, enabled)
  local now = require("hsm.core").now
  local p, n, t0, last = {}, 0, now(), -1
  local function draw(final)
    local el = math.max(now() - t0, 1e-3)
    local rate = n / el
    local eta = rate > 0 and (total - n) / rate or 0
    local width = 24
    local fill = total > 0 and math.floor(width * n / total) or width
    io.stderr:write(("\r%s [%s%s] %d/%d  %.1f/s  ETA %d:%02d%s"):format(what or "", ("="):rep(fill),
      (" "):rep(width - fill), n, total, rate, math.floor(eta / 60), math.floor(eta % 60),
      final and "\n" or ""))
  end
  function p.tick()
    n = n + 1
    if enabled and (now() - last > 0.1 or n == total) then last = now(); draw(false) end
  end
  function p.done() if enabled then draw(true) end end
  return p
end

--- Asks a yes/no question on the terminal ("[Y/n]", Enter = yes; with default_no "[y/N]",
--- Enter = no). nil when stdin is not a terminal (batch runs confirm with --yes or the
--- values given on the command line).
function M.confirm(question, default_no)
  local core = require("hsm.core")
  if not core.isatty(0) then return nil end
  io.stderr:write(question, default_no and " [y/N]: " or " [Y/n]: ")
  local line = io.read("l")
  return line ~= nil and ((line == "" and not default_no) or line:match("^[yY]") ~= nil)
end

--- REPL prompt: current token and login state.
function M.prompt()
  local hsm = package.loaded["hsm"]
  local cur = hsm and hsm.current
  if cur then return ("hsmsh[%s:%s]> "):format(cur.label, cur.login) end
  return "hsmsh> "
end

return M
