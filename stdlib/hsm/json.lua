--- hsm.json: Lua values as one-line JSON (keys sorted for stable output), and back.
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

local unescapes = {['"'] = '"', ['\\'] = '\\', ['/'] = '/', b = '\b', f = '\f', n = '\n',
                   r = '\r', t = '\t'}

--- Decodes one JSON text. Returns the value, or nil and a message naming the position.
function M.decode(text)
  local pos = 1
  local function fail(what) error({("JSON: %s at byte %d"):format(what, pos)}, 0) end
  local function ws() pos = text:find("[^ \t\r\n]", pos) or #text + 1 end
  local value
  local function string_()
    local out, i = {}, pos + 1
    while true do
      local c = text:sub(i, i)
      if c == "" then pos = i; fail("unterminated string") end
      if c == '"' then pos = i + 1; return table.concat(out) end
      if c == "\\" then
        local e = text:sub(i + 1, i + 1)
        if e == "u" then
          local h = text:sub(i + 2, i + 5)
          if not h:match("^%x%x%x%x$") then pos = i; fail("bad \\u escape") end
          out[#out + 1] = utf8.char(tonumber(h, 16))
          i = i + 6
        elseif unescapes[e] then
          out[#out + 1] = unescapes[e]
          i = i + 2
        else pos = i; fail("bad escape") end
      else
        local j = text:find('["\\]', i) or #text + 1
        out[#out + 1] = text:sub(i, j - 1)
        i = j
      end
    end
  end
  function value()
    ws()
    local c = text:sub(pos, pos)
    if c == "{" then
      local t = {}
      pos = pos + 1; ws()
      if text:sub(pos, pos) == "}" then pos = pos + 1; return t end
      while true do
        ws()
        if text:sub(pos, pos) ~= '"' then fail("expected a key") end
        local k = string_()
        ws()
        if text:sub(pos, pos) ~= ":" then fail("expected ':'") end
        pos = pos + 1
        t[k] = value()
        ws()
        local d = text:sub(pos, pos)
        pos = pos + 1
        if d == "}" then return t end
        if d ~= "," then pos = pos - 1; fail("expected ',' or '}'") end
      end
    elseif c == "[" then
      local t = setmetatable({}, M.array)
      pos = pos + 1; ws()
      if text:sub(pos, pos) == "]" then pos = pos + 1; return t end
      while true do
        t[#t + 1] = value()
        ws()
        local d = text:sub(pos, pos)
        pos = pos + 1
        if d == "]" then return t end
        if d ~= "," then pos = pos - 1; fail("expected ',' or ']'") end
      end
    elseif c == '"' then return string_()
    elseif text:sub(pos, pos + 3) == "true" then pos = pos + 4; return true
    elseif text:sub(pos, pos + 4) == "false" then pos = pos + 5; return false
    elseif text:sub(pos, pos + 3) == "null" then pos = pos + 4; return nil
    end
    local num = text:match("^-?%d+%.?%d*[eE]?[-+]?%d*", pos)
    if not num or num == "" or num == "-" then fail("unexpected character") end
    pos = pos + #num
    return math.tointeger(tonumber(num)) or tonumber(num) or fail("bad number")
  end
  local ok, v = pcall(function()
    local r = value()
    ws()
    if pos <= #text then fail("trailing characters") end
    return r
  end)
  if ok then return v end
  if type(v) == "table" then return nil, v[1] end
  error(v, 0)
end

return M
