--- hsm: the public Lua API. Modules, tokens by RFC 7512 URI, objects and key facts.
local core = require("hsm.core")
local keys = require("hsm.keys")
local ui = require("hsm.ui")

local M = {}
M.core = core

local modules = {}   -- one hsm.Module per library path

--- Loads and initialises a PKCS#11 module once per process (an hsm.Module: slots, token
--- info, mechanisms, sessions).
---@param path string|nil module path or p11-kit name; nil = the embedded default (SoftHSM2)
---@param init_reserved string|nil C_Initialize's pReserved (else the p11-kit registration's x-init-reserved)
function M.open(path, init_reserved)
  local key = (path or "(default)") .. "\0" .. (init_reserved or "")
  if modules[key] then return modules[key] end
  local m, err, code = core.load(path, init_reserved)
  if not m then return nil, err, code end
  modules[key] = m
  return m
end

local function matches(ti, slot, u)
  return (not u.token or ti.label == u.token) and (not u.serial or ti.serial == u.serial)
     and (not u.manufacturer or ti.manufacturer == u.manufacturer)
     and (not u.model or ti.model == u.model) and (not u.slot_id or slot == u.slot_id)
end

--- A PIN from a source: file:PATH (or an absolute path), or "prompt" (no echo).
local function pin_from(source, what)
  if source == "prompt" then
    local s, err = core.secret_prompt(what .. ": ")
    if not s then error(err, 0) end
    return s
  end
  local path = source:match("^file:(.*)$") or (source:sub(1, 1) == "/" and source)
  -- (what was given is not repeated: it may be the PIN itself, typed in the wrong place)
  if not path then error(("%s: a PIN source must be file:PATH or prompt"):format(what), 0) end
  local sec, err = core.secret_file(path)
  if not sec then error(("%s: %s"):format(what, err), 0) end
  return sec
end

--- The PIN named by a URI: pin-value, pin-source=file:PATH, or a no-echo prompt.
local function pin_for(u, label)
  if u.pin then return u.pin end
  return pin_from(u.pin_source or "prompt", ("PIN for token %s"):format(label))
end

--- The user PIN a URI names (pin-value, pin-source, or a prompt) as an hsm.Secret; for a
--- second login in the same run. source: a PIN source instead ("file:PATH" or "prompt").
---@param uri string a token URI
---@param source string|nil "file:PATH" or "prompt", instead of the URI's PIN
function M.pin(uri, source)
  if source then return pin_from(source, "SO PIN") end
  local u, err = core.uri_parse(uri)
  if not u then error(err, 0) end
  return pin_for(u, u.token or u.display)
end

--- Opens a read-write session on the one token a URI names, logged in as user when the
--- URI carries a PIN (or the token requires a login). Raises with a clear message.
---@param uri string  e.g. "pkcs11:token=blue?pin-value=1234"
---@param opts table|nil  {login=false} to skip the login, {so=true} to log in as SO (with the
---  URI's PIN, or so_pin="file:PATH"|"prompt": RFC 7512 URIs carry one PIN)
function M.token(uri, opts)
  opts = opts or {}
  local u, err = core.uri_parse(uri)
  if not u then error(err, 0) end
  local m, merr = M.open(u.module_path or u.module_name, u.init_reserved)
  if not m then error(merr, 0) end
  local slots = assert(m:slots())
  local found, labels = {}, {}
  for _, slot in ipairs(slots) do
    local ti = m:token_info(slot)
    if ti and ti.flags.CKF_TOKEN_INITIALIZED then
      labels[#labels + 1] = ti.label
      if matches(ti, slot, u) then found[#found + 1] = {slot = slot, info = ti} end
    end
  end
  if #found == 0 then
    error(("no token matches %s (tokens: %s)"):format(u.display,
      #labels > 0 and table.concat(labels, ", ") or "none"), 0)
  elseif #found > 1 then
    -- Modules such as NSS softokn give every token the same serial: name what differs.
    local serials, models = {}, {}
    for _, f in ipairs(found) do serials[f.info.serial] = true; models[f.info.model] = true end
    local n = 0
    for _ in pairs(serials) do n = n + 1 end
    local hint = n > 1 and "add serial= to the URI"
      or "they share serial " .. found[1].info.serial .. ": add token= (the label) or slot-id= to the URI"
    local slots_seen = {}
    for _, f in ipairs(found) do slots_seen[#slots_seen + 1] = ("%s (slot-id=%d)"):format(f.info.label, f.slot) end
    error(("%s matches %d tokens: %s; they are %s"):format(u.display, #found, hint,
      table.concat(slots_seen, ", ")), 0)
  end
  local t = found[1]
  local s, serr = m:open(t.slot, true)
  if not s then error(serr, 0) end
  local want = opts.login ~= false and (u.pin or u.pin_source or opts.so_pin or t.info.flags.CKF_LOGIN_REQUIRED)
  if want then
    local flags = t.info.flags
    if (opts.so and flags.CKF_SO_PIN_FINAL_TRY) or (not opts.so and flags.CKF_USER_PIN_FINAL_TRY) then
      io.stderr:write(("hsmsh: warning: token %s says the next wrong PIN locks it\n"):format(t.info.label))
    end
    local pin = opts.so and opts.so_pin and pin_from(opts.so_pin, ("SO PIN for token %s"):format(t.info.label))
      or pin_for(u, t.info.label)
    local ok, lerr, code = s:login(pin, opts.so and "so" or "user")
    pin:close()
    -- Login state belongs to the process: a second session on a token already logged in.
    if not ok and code == "CKR_USER_ALREADY_LOGGED_IN" and not opts.so then ok = true end
    if not ok then
      s:close()
      error(("cannot log in to token %s: %s"):format(t.info.label, lerr), 0)
    end
  end
  M.current = {session = s, label = t.info.label, login = want and (opts.so and "so" or "user") or "public"}
  return s, t.info
end

--- The items of a comma-separated list whose items may be URIs: a URI's query may hold
--- commas (a PIN, a path), so an item that starts with "pkcs11:" (or prefix) runs to the next
--- ",pkcs11:" (put file names before URIs in a mixed list). Blank items are dropped.
---@param text string
---@param prefix string|nil what starts a URI item (default "pkcs11:"; hsm.cards: "card:")
function M.split_list(text, prefix)
  prefix = prefix or "pkcs11:"
  local out, pos = {}, 1
  while pos <= #text do
    local is_uri = text:sub(pos, pos + #prefix - 1) == prefix
    local stop = is_uri and text:find("," .. prefix, pos, true) or not is_uri and text:find(",", pos, true) or nil
    local item = text:sub(pos, (stop or #text + 1) - 1):match("^%s*(.-)%s*$")
    if item ~= "" then out[#out + 1] = item end
    pos = (stop or #text) + 1
  end
  return out
end

local type_class = {public = "CKO_PUBLIC_KEY", private = "CKO_PRIVATE_KEY",
                    ["secret-key"] = "CKO_SECRET_KEY", cert = "CKO_CERTIFICATE", data = "CKO_DATA"}

--- The one object a URI names (object=, id=, type=); none or several is an error, never
--- "the first match". Returns the object and its session.
function M.object(uri)
  local u, err = core.uri_parse(uri)
  if not u then error(err, 0) end
  local s = M.token(uri)
  local filter = {CKA_LABEL = u.object, CKA_ID = u.id, CKA_CLASS = type_class[u.type or ""]}
  local list, ferr = s:find_all(filter)
  if not list then error(ferr, 0) end
  if #list ~= 1 then
    error(("%s names %d objects (expected exactly one%s)"):format(u.display, #list,
      #list > 1 and "; add id= or type=" or ""), 0)
  end
  return list[1], s
end

--- A list that is also its own iterator: `for o in s:objects() do` and `#s:objects()`.
local ObjectList = {__call = function(list)
  local i = (list._at or 0) + 1
  list._at = i
  return list[i]
end}

local Session = core.methods("hsm.Session")
--- Every object of a session matching a filter ({label=, id=, class=, key_type=}), one enumeration.
function Session:objects(filter)
  local list, err, code = self:find_all(filter)
  if not list then return nil, err, code end
  return setmetatable(list, ObjectList)
end

--- The one object matching filter; raises when none or several match.
function Session:find(filter)
  local list, err = self:find_all(filter)
  if not list then error(err, 0) end
  if #list ~= 1 then
    error(("%d objects match (expected exactly one)"):format(#list), 0)
  end
  return list[1]
end


--- Generates a key from a short spec: {type="AES"|"DES3"|"GENERIC"|"RSA"|"EC"|"Ed25519",
--- bits=, curve="P-256", label=, id=, token=true, extractable=, sensitive=true, ...more
--- attributes by name}. Returns the secret key, or the public and private keys.
function Session:generate(spec)
  local kind = assert(spec.type, "generate needs type=")
  local common = {CKA_TOKEN = spec.token ~= false, CKA_LABEL = spec.label, CKA_ID = spec.id}
  local extra = {}
  for k, v in pairs(spec) do
    if not ({type = 1, bits = 1, curve = 1, label = 1, id = 1, token = 1})[k] then extra[k] = v end
  end
  local function merge(...)
    local t = {}
    for _, src in ipairs({...}) do for k, v in pairs(src) do t[k] = v end end
    return t
  end
  local secret = {AES = "CKM_AES_KEY_GEN", DES3 = "CKM_DES3_KEY_GEN", GENERIC = "CKM_GENERIC_SECRET_KEY_GEN"}
  if secret[kind] then
    local t = merge(common, {CKA_PRIVATE = true, CKA_SENSITIVE = true}, extra)
    if kind ~= "DES3" then t.CKA_VALUE_LEN = (spec.bits or 256) // 8 end
    return self:generate_key(secret[kind], t)
  end
  local priv = merge(common, {CKA_PRIVATE = true, CKA_SENSITIVE = true, CKA_SIGN = true}, extra)
  local pub = merge(common, {CKA_VERIFY = true})
  if kind == "RSA" then
    pub.CKA_MODULUS_BITS, pub.CKA_PUBLIC_EXPONENT = spec.bits or 2048, "\1\0\1"
    return self:generate_key_pair("CKM_RSA_PKCS_KEY_PAIR_GEN", pub, priv)
  elseif kind == "EC" or kind == "Ed25519" then
    local curve = kind == "Ed25519" and "Ed25519" or spec.curve or "P-256"
    pub.CKA_EC_PARAMS = keys.curves[curve] or error("unknown curve '" .. tostring(curve) .. "'", 2)
    return self:generate_key_pair(kind == "EC" and "CKM_EC_KEY_PAIR_GEN"
      or "CKM_EC_EDWARDS_KEY_PAIR_GEN", pub, priv)
  end
  error("unknown key type '" .. tostring(kind) .. "' (AES, DES3, GENERIC, RSA, EC, Ed25519)", 2)
end

-- Slot lists, token facts and mechanism lists are plain tables the REPL prints as tables:
-- hsm.ui is told what each one is (and of which module).
local Module = core.methods("hsm.Module")
for _, name in ipairs({"slots", "token_info", "mechanisms"}) do
  local raw = Module[name]
  Module[name] = function(self, ...)
    local r = table.pack(raw(self, ...))
    if type(r[1]) == "table" then ui.kinds[r[1]] = {kind = name, module = self} end
    return table.unpack(r, 1, r.n)
  end
end

local Object = core.methods("hsm.Object")
Object.kcv = keys.kcv
Object.fingerprint = keys.fingerprint
Object.describe = keys.describe

M.hex = keys.hex
--- Bytes from a hex string; raises when it is not one.
function M.unhex(h)
  return core.unhex(h) or error("not a hex string: " .. h, 2)
end

return M
