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

--- Rows for a list of hsm.Objects.
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
  return rows
end

local function is_object(v)
  local mt = getmetatable(v)
  return type(mt) == "table" and mt.__name == "hsm.Object"
end

--- REPL printer: object lists as tables, everything else as lua.c prints.
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
