--- hsm.json: encode Lua values as one-line JSON (keys sorted for stable output).
local M = {}

local escapes = { ['"'] = '\\"', ['\\'] = '\\\\', ['\b'] = '\\b', ['\f'] = '\\f',
                  ['\n'] = '\\n', ['\r'] = '\\r', ['\t'] = '\\t' }

local function str(s)
  return '"' .. s:gsub('[%c"\\]', function(c)
    return escapes[c] or ("\\u%04x"):format(c:byte())
  end) .. '"'
end

---@param v any  tables with keys 1..n encode as arrays; a table field `_order` lists keys first
function M.encode(v)
  local t = type(v)
  if t == "nil" then return "null"
  elseif t == "boolean" then return tostring(v)
  elseif t == "number" then
    if v ~= v or v == math.huge or v == -math.huge then return "null" end
    return math.type(v) == "integer" and tostring(v) or ("%.14g"):format(v)
  elseif t == "string" then return str(v)
  elseif t == "table" then
    if #v > 0 or next(v) == nil and getmetatable(v) == M.array then
      local out = {}
      for i = 1, #v do out[i] = M.encode(v[i]) end
      return "[" .. table.concat(out, ",") .. "]"
    end
    local keys, seen = {}, {}
    for _, k in ipairs(v._order or {}) do
      if v[k] ~= nil then keys[#keys + 1] = k; seen[k] = true end
    end
    local rest = {}
    for k in pairs(v) do
      if k ~= "_order" and not seen[k] then rest[#rest + 1] = tostring(k) end
    end
    table.sort(rest)
    for _, k in ipairs(rest) do keys[#keys + 1] = k end
    local out = {}
    for _, k in ipairs(keys) do out[#out + 1] = str(k) .. ":" .. M.encode(v[k]) end
    return "{" .. table.concat(out, ",") .. "}"
  end
  error("cannot encode a " .. t .. " as JSON", 2)
end

M.array = {}

return M
