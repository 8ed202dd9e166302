--- hsm.keys: facts about keys without reading key material: KCV, public-key fingerprint,
--- and a one-row description (class, type, size, flags) for inventories.
local core = require("hsm.core")

local M = {}

--- Lower-case hex of a byte string (IDs, KCVs, digests: never key material).
M.hex = core.hex
local hex = M.hex

--- DER CKA_EC_PARAMS (namedCurve OIDs) by curve name, and each curve's size in bits.
M.curves = { ["P-256"] = "\6\8\42\134\72\206\61\3\1\7", ["P-384"] = "\6\5\43\129\4\0\34",
             ["P-521"] = "\6\5\43\129\4\0\35", Ed25519 = "\6\3\43\101\112" }
local curve_bits = {}
for name, oid in pairs(M.curves) do curve_bits[oid] = tonumber(name:match("^P%-(%d+)$")) end

--- Key check value (hex): AES: AES-ECB(key, 0^16)[1..3]; DES3: 3DES-ECB(key, 0^8)[1..3];
--- otherwise CKA_CHECK_VALUE where the module provides it. nil when none can be had.
--- a: the object's attributes when the caller has read them already (saves the reads).
function M.kcv(obj, a)
  local kt = a and a.CKA_KEY_TYPE or obj.key_type
  local s = obj:session()
  local cls = a and a.CKA_CLASS or obj.class
  if cls == "CKO_SECRET_KEY" and (a and a.CKA_ENCRYPT or not a and obj.encrypt) then
    local mech, block = nil, nil
    if kt == "CKK_AES" then mech, block = "CKM_AES_ECB", ("\0"):rep(16)
    elseif kt == "CKK_DES3" or kt == "CKK_DES2" then mech, block = "CKM_DES3_ECB", ("\0"):rep(8) end
    if mech then
      local c = s:encrypt(mech, obj, block)
      if c then return hex(c:sub(1, 3)) end
    end
  end
  local cv = a and a.CKA_CHECK_VALUE or not a and obj:get("CKA_CHECK_VALUE")
  if cv and #cv > 0 then return hex(cv) end
  return nil
end

--- DER SubjectPublicKeyInfo of a public key, certificate or (where the module exposes the
--- public parts) private key; nil when it cannot be built.
function M.spki(obj)
  local cls, kt = obj.class, obj.key_type
  if cls == "CKO_CERTIFICATE" then
    return core.spki_cert(obj.value)
  elseif kt == "CKK_RSA" then
    local n, e = obj:get("CKA_MODULUS"), obj:get("CKA_PUBLIC_EXPONENT")
    if n and e then return core.spki_rsa(n, e) end
  elseif kt == "CKK_EC" or kt == "CKK_EC_EDWARDS" then
    local p, q = obj:get("CKA_EC_PARAMS"), obj:get("CKA_EC_POINT")
    if p and q then return core.spki_ec(p, q) end
  end
  return nil
end

--- SHA-256 of the SubjectPublicKeyInfo (hex), or nil.
function M.fingerprint(obj)
  local spki = M.spki(obj)
  return spki and hex(core.sha256(spki)) or nil
end

local class_names = {
  CKO_SECRET_KEY = "secret-key", CKO_PRIVATE_KEY = "private-key", CKO_PUBLIC_KEY = "public-key",
  CKO_CERTIFICATE = "certificate", CKO_DATA = "data", CKO_DOMAIN_PARAMETERS = "domain-parameters",
}


function M.bits(obj)
  local kt = obj.key_type
  if kt == "CKK_RSA" then
    local n = obj:get("CKA_MODULUS")
    return n and #n * 8 or obj:get("CKA_MODULUS_BITS")
  elseif kt == "CKK_EC" then
    return curve_bits[obj:get("CKA_EC_PARAMS") or ""]
  elseif kt == "CKK_DES3" then return 192
  elseif kt == "CKK_EC_EDWARDS" then return 256
  end
  local len = obj:get("CKA_VALUE_LEN")
  return len and len * 8 or nil
end

--- One inventory row: {class=, key_type=, bits=, label=, id=<hex>, extractable=, sensitive=,
--- modifiable=, private=, wrap_with_trusted=, kcv= | fingerprint=}
function M.describe(obj)
  local a = obj:attrs()
  local cls = a.CKA_CLASS
  local row = {
    class = class_names[cls] or cls,
    key_type = a.CKA_KEY_TYPE and a.CKA_KEY_TYPE:gsub("^CKK_", "") or nil,
    label = a.CKA_LABEL or "",
    id = hex(a.CKA_ID or ""),
    private = a.CKA_PRIVATE, modifiable = a.CKA_MODIFIABLE,
    extractable = a.CKA_EXTRACTABLE, sensitive = a.CKA_SENSITIVE,
    wrap_with_trusted = a.CKA_WRAP_WITH_TRUSTED,
  }
  if a.CKA_KEY_TYPE then row.bits = M.bits(obj) end
  if cls == "CKO_SECRET_KEY" then row.kcv = M.kcv(obj)
  else row.fingerprint = M.fingerprint(obj) end
  return row
end

return M
