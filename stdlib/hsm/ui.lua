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
    for i, c in ipairs(cols) do parts[i] = ("%-" .. widths[i] .. "s"):format(get(c)) end
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

--- REPL prompt: current token and login state.
function M.prompt()
  local hsm = package.loaded["hsm"]
  local cur = hsm and hsm.current
  if cur then return ("hsmsh[%s:%s]> "):format(cur.label, cur.login) end
  return "hsmsh> "
end

return M
