--- hsm.attrs: an object's attributes as data — captured from one token, turned into the
--- template that recreates the object on another (through each module's quirks), and
--- compared afterwards. Key material is never captured (hsm.Object:attrs never reads it).
local core = require("hsm.core")
local profiles = require("hsm.profiles")

local M = {}

--- Set by the token when it creates or unwraps a key, so they may differ after a migration;
--- reports list them. PKCS#11 2.40 §4.7/4.8 adds CKA_KEY_GEN_MECHANISM, which is
--- CK_UNAVAILABLE_INFORMATION for a key that was unwrapped rather than generated.
M.FORCED = {CKA_LOCAL = true, CKA_ALWAYS_SENSITIVE = true, CKA_NEVER_EXTRACTABLE = true,
            CKA_UNIQUE_ID = true, CKA_KEY_GEN_MECHANISM = true}

-- Derived from the key material by the token: never in a template, always compared.
local DERIVED = {CKA_CHECK_VALUE = true, CKA_PUBLIC_KEY_INFO = true}
local FROM_BLOB = {   -- a private key's public parts come out of the wrapped PKCS#8
  CKA_MODULUS = true, CKA_PUBLIC_EXPONENT = true, CKA_MODULUS_BITS = true, CKA_EC_POINT = true,
  CKA_EC_PARAMS = true, CKA_VALUE_LEN = true,
}

--- What each module needs (unwrap_drop, unwrap_keep, unrecorded, unwrap_via_session ...) is
--- its profile in hsm.profiles, chosen by the token so that it holds behind p11-kit-proxy.
M.QUIRKS = {default = profiles.DEFAULT}

--- The quirks (the profile) of the token behind a session.
function M.quirks(s)
  return profiles.of(s)
end

local function empty(v) return v == "" or (type(v) == "table" and next(v) == nil) end

--- PKCS#11 defaults of attributes some modules do not have (2.40/3.0 §4.4, §4.7, §4.9): an
--- attribute a module lacks reads as absent, which compares as its default.
M.DEFAULTS = {CKA_COPYABLE = true, CKA_DESTROYABLE = true, CKA_MODIFIABLE = true,
              CKA_WRAP_WITH_TRUSTED = false, CKA_TRUSTED = false, CKA_ALWAYS_AUTHENTICATE = false,
              CKA_NAME_HASH_ALGORITHM = "CKM_SHA_1", CKA_CERTIFICATE_CATEGORY = 0,
              CKA_JAVA_MIDP_SECURITY_DOMAIN = 0, CKA_DERIVE = false}

local function as_default(v)
  if type(v) == "boolean" then return tostring(v) end
  return M.show(v)
end

--- Every readable attribute of an object: {CKA_X = value}.
function M.capture(obj)
  local a, err = obj:attrs()
  if not a then error(("cannot read the attributes of %s: %s"):format(tostring(obj), tostring(err)), 0) end
  return a
end

-- A certificate serial number (hex, as core.cert_info gives it) as the DER INTEGER that
-- CKA_SERIAL_NUMBER holds; nil for a negative or unreadable one.
local function der_integer(hexs)
  if not hexs or hexs:find("[^%x]") then return nil end
  local b = core.unhex((#hexs % 2 == 1 and "0" or "") .. hexs)
  if not b or #b == 0 or #b > 126 then return nil end
  if b:byte(1) >= 0x80 then b = "\0" .. b end
  return "\2" .. string.char(#b) .. b
end

--- Captured attributes with what the object itself implies filled in where the module left
--- it empty: a certificate's CKA_SUBJECT, CKA_ISSUER and CKA_SERIAL_NUMBER from its DER (NSS
--- needs the last two; some tools leave them empty), an RSA key's CKA_MODULUS_BITS from its
--- modulus (NSS records none for a public key it is given); CKA_ALLOWED_MECHANISMS sorted (a
--- set). A copy; the input is untouched.
function M.completed(a)
  local out = {}
  for k, v in pairs(a) do out[k] = v end
  if a.CKA_CLASS == "CKO_CERTIFICATE" and type(a.CKA_VALUE) == "string" and a.CKA_VALUE ~= ""
     and (empty(a.CKA_ISSUER or "") or empty(a.CKA_SERIAL_NUMBER or "") or empty(a.CKA_SUBJECT or "")) then
    local info = core.cert_info(a.CKA_VALUE)
    if info then
      if empty(a.CKA_SUBJECT or "") then out.CKA_SUBJECT = info.subject_der end
      if empty(a.CKA_ISSUER or "") then out.CKA_ISSUER = info.issuer_der end
      if empty(a.CKA_SERIAL_NUMBER or "") then out.CKA_SERIAL_NUMBER = der_integer(info.serial) end
    end
  end
  -- A set, whatever order the module lists it in.
  if type(a.CKA_ALLOWED_MECHANISMS) == "table" then
    local l = {}
    for i, m in ipairs(a.CKA_ALLOWED_MECHANISMS) do l[i] = m end
    table.sort(l, function(x, y) return tostring(x) < tostring(y) end)
    out.CKA_ALLOWED_MECHANISMS = l
  end
  local n = a.CKA_MODULUS
  if a.CKA_MODULUS_BITS == nil and type(n) == "string" and #n > 0 then
    local first, bits = n:byte(1), #n * 8
    while first < 0x80 and bits > 0 do first, bits = first * 2, bits - 1 end
    out.CKA_MODULUS_BITS = bits
  end
  return out
end

--- The template that recreates captured attributes. how: "unwrap" (the key material comes
--- from the blob) or "create" (C_CreateObject, everything given). Empty values are left
--- out: they are the defaults, and some modules refuse them (SoftHSM2: an empty
--- CKA_ALLOWED_MECHANISMS is CKR_ATTRIBUTE_VALUE_INVALID).
--- An attribute the destination's profile lists as unsupported is left out when it holds
--- its PKCS#11 default, and raises, naming it, when it does not: the destination could not
--- record the value, and it is never dropped silently.
function M.template(captured, how, quirks)
  quirks = quirks or M.QUIRKS.default
  if how == "create" then captured = M.completed(captured) end
  local t = {}
  local unsupported = quirks.unsupported or {}
  for name, v in pairs(captured) do
    if unsupported[name] and v ~= M.DEFAULTS[name] then
      error(("the destination (%s) cannot record %s=%s: it does not support %s (%s), and a "
        .. "value other than the default (%s) would be lost"):format(quirks.name or "?", name,
        as_default(v), name, unsupported[name], as_default(M.DEFAULTS[name])), 0)
    end
  end
  for name, v in pairs(captured) do
    if unsupported[name] then goto continue end
    local keep = not M.FORCED[name] and not DERIVED[name] and not empty(v)
    if how == "unwrap" and FROM_BLOB[name] then
      keep = keep and (quirks.unwrap_keep or {})[name] and captured.CKA_CLASS == "CKO_SECRET_KEY"
             and captured.CKA_KEY_TYPE == "CKK_GENERIC_SECRET"
    end
    if how == "unwrap" and (quirks.unwrap_drop or {})[name] then keep = false end
    if how == "create" and name == "CKA_MODULUS_BITS" and captured.CKA_MODULUS then keep = false end
    if name == "CKA_TRUSTED" and v ~= true then keep = false end
    if keep then t[name] = v end
    ::continue::
  end
  return t
end

local function same(a, b)
  if type(a) ~= "table" or type(b) ~= "table" then return a == b end
  for k, v in pairs(a) do if not same(v, b[k]) then return false end end
  for k in pairs(b) do if a[k] == nil then return false end end
  return true
end
M.same = same

--- Differences between two captures: a sorted list of {name=, from=, to=, forced=}, where an
--- empty value and a missing one count as equal, a missing attribute with a PKCS#11
--- default (M.DEFAULTS) counts as that default, what an object implies (M.completed)
--- counts as given, and a derived attribute (CKA_CHECK_VALUE) that one side lacks is none.
function M.diff(a, b)
  a, b = M.completed(a), M.completed(b)
  local out, names = {}, {}
  for n in pairs(a) do names[n] = true end
  for n in pairs(b) do names[n] = true end
  for n in pairs(names) do
    local x, y = a[n], b[n]
    if x == nil then x = M.DEFAULTS[n] end
    if y == nil then y = M.DEFAULTS[n] end
    -- A derived attribute one module does not compute (NSS and openCryptoki keep no
    -- CKA_CHECK_VALUE) is no difference: the check values themselves are compared apart.
    local unknown = DERIVED[n] and (empty(x or "") or empty(y or ""))
    if not unknown and not same(x, y) and not (empty(x or "") and empty(y or "")) then
      out[#out + 1] = {name = n, from = x, to = y, forced = M.FORCED[n] or false}
    end
  end
  table.sort(out, function(p, q) return p.name < q.name end)
  return out
end

--- A value as a report shows it (bytes as hex, lists by length).
function M.show(v)
  if type(v) == "string" then
    if v:match("^CK[AOKMC]_") or v:match("^[%w%-%._ ]*$") then return v end
    return core.hex(v)
  elseif type(v) == "table" then return ("{%d}"):format(#v) end
  return tostring(v)
end

--- Captured attributes as plain data for a JSON manifest: byte strings become "x:<hex>",
--- lists and nested templates recurse. from_data is the inverse.
function M.to_data(v)
  if type(v) == "string" then
    return "x:" .. core.hex(v)
  elseif type(v) == "table" then
    local t = {}
    for k, x in pairs(v) do t[k] = M.to_data(x) end
    if #v > 0 or next(v) == nil then t = setmetatable(t, require("hsm.json").array) end
    return t
  end
  return v
end

function M.from_data(v)
  if type(v) == "string" then
    local bytes = v:sub(1, 2) == "x:" and core.unhex(v:sub(3))
    if not bytes then error(("bad attribute value in manifest: %q"):format(v:sub(1, 40)), 0) end
    return bytes
  elseif type(v) == "table" then
    local t = {}
    for k, x in pairs(v) do t[k] = M.from_data(x) end
    return t
  end
  return v
end

return M
