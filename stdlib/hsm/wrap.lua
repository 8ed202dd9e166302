--- hsm.wrap: moving keys between tokens as wrapped blobs, never in clear.
---
--- * `kat(session, mech)`: known-answer test of a module's AES-KW / AES-KWP against the RFC
---   vectors, once per token; a mechanism that fails is not used (no silent fallback).
--- * RSA-AES key wrap (PKCS#11 CKM_RSA_AES_KEY_WRAP): native where the module has it, else
---   composed as RSA-OAEP(ephemeral AES-256) || AES-KWP(payload) — the same bytes.
--- * `transport(src, dst, opts)`: a checked way to carry keys from one session to another.
local core = require("hsm.core")
local keys = require("hsm.keys")

local M = {}
local unhex = core.unhex

-- Known answers. RFC 3394 §4.1 and §4.6, RFC 5649 §6; the 16-byte KWP case has no RFC vector
-- and was computed with OpenSSL 3's AES-192-WRAP-PAD (an independent implementation).
local VECTORS = {
  CKM_AES_KEY_WRAP = {
    {kek = "000102030405060708090a0b0c0d0e0f", data = "00112233445566778899aabbccddeeff",
     out = "1fa68b0a8112b447aef34bd8fb5a7b829d3e862371d2cfe5", ref = "RFC 3394 4.1"},
    {kek = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
     data = "00112233445566778899aabbccddeeff000102030405060708090a0b0c0d0e0f",
     out = "28c9f404c4b810f4cbccb35cfb87f8263f5786e2d80ed326cbc7f0e71a99f43bfb988b9b7a02dd21",
     ref = "RFC 3394 4.6"},
  },
  CKM_AES_KEY_WRAP_PAD = {
    {kek = "5840df6e29b02af1ab493b705bf16ea1ae8338f4dcc176a8", data = "0011223344556677",
     out = "908f9780198d5fa31f11e204809c3645", ref = "8-byte payload (OpenSSL 3)", aligned = true},
    {kek = "5840df6e29b02af1ab493b705bf16ea1ae8338f4dcc176a8",
     data = "c37b7e6492584340bed12207808941155068f738",
     out = "138bdeaa9b8fa7fc61f97742e72248ee5ae6ae5360d1ae6a5f54f373fa543b6a", ref = "RFC 5649 6 (20 bytes)"},
    {kek = "5840df6e29b02af1ab493b705bf16ea1ae8338f4dcc176a8", data = "466f7250617369",
     out = "afbeb0f07dfbf5419200f2ccb50bb24f", ref = "RFC 5649 6 (7 bytes)"},
  },
}
-- PKCS#11 3.0's CKM_AES_KEY_WRAP_KWP (0x210B) is RFC 5649 by name: the same answers.
VECTORS.CKM_AES_KEY_WRAP_KWP = VECTORS.CKM_AES_KEY_WRAP_PAD

local function secret_obj(s, value, kt, extra)
  local t = {CKA_CLASS = "CKO_SECRET_KEY", CKA_KEY_TYPE = kt, CKA_TOKEN = false,
             CKA_VALUE = value, CKA_PRIVATE = true}
  for k, v in pairs(extra) do t[k] = v end
  return s:create(t)
end

local kat_cache = {}

-- What a module may answer for a vector its implementation does not take (NSS's 0x210A
-- refuses the 7-byte one with CKR_DATA_LEN_RANGE): the vector fails. Any other error stops.
local VECTOR_REFUSALS = {CKR_DATA_LEN_RANGE = true, CKR_KEY_SIZE_RANGE = true,
                         CKR_WRAPPED_KEY_LEN_RANGE = true, CKR_KEY_NOT_WRAPPABLE = true,
                         CKR_MECHANISM_PARAM_INVALID = true}

--- Known-answer test of a key-wrap mechanism on a session's token. Returns a result table:
--- {ok = true} when every vector matches; {ok = true, aligned_only = true, detail = ...} when
--- only payloads that are a multiple of 8 bytes come out as the RFC says (AES-KWP that
--- zero-pads first, as SoftHSM2 2.6 does); {ok = false, detail = ...} otherwise, with
--- lacks = true when the module does not offer the mechanism for wrapping at all (not in
--- its mechanism list, listed without CKF_WRAP, or refused as CKR_MECHANISM_INVALID):
--- "lacks X" is not "X fails its known-answer test".
function M.kat(s, mech)
  local ti = s:module():token_info(s:slot()) or {}
  local ck = table.concat({s:module():path() or "", ti.serial or "", ti.label or "", mech}, "\0")
  if kat_cache[ck] then return kat_cache[ck] end
  local vectors = VECTORS[mech]
  if not vectors then return {ok = false, detail = "no known-answer vectors for " .. mech} end
  local flags = M.mechanisms(s)[mech]
  if not flags or not flags.CKF_WRAP then
    local res = {ok = false, lacks = true, detail = ("token %s lacks %s%s"):format(ti.label or "?", mech,
      flags and " for wrapping (listed without CKF_WRAP)" or " (not in its mechanism list)")}
    kat_cache[ck] = res
    return res
  end
  local res, failed = {ok = true}, {}
  for _, v in ipairs(vectors) do
    local kek, err, code = secret_obj(s, unhex(v.kek), "CKK_AES", {CKA_WRAP = true})
    if not kek then
      return {ok = false, detail = ("cannot import the %s test KEK (%s): %s"):format(v.ref, code or "", err)}
    end
    local data, derr = secret_obj(s, unhex(v.data), "CKK_GENERIC_SECRET", {CKA_EXTRACTABLE = true})
    local out, werr
    if data then out, werr = s:wrap(mech, kek, data) else werr = derr end
    kek:destroy()
    if data then data:destroy() end
    if not out and tostring(werr):find("CKR_MECHANISM_INVALID", 1, true) then
      local res = {ok = false, lacks = true,
                   detail = ("token %s lacks %s (C_WrapKey: CKR_MECHANISM_INVALID)"):format(ti.label or "?", mech)}
      kat_cache[ck] = res
      return res
    end
    if not out and not VECTOR_REFUSALS[tostring(werr):match("CKR_[%w_]+") or ""] then
      -- A device or session failure is not an answer: the run stops (nothing is cached).
      error(("the known-answer test of %s on token %s could not run: %s"):format(mech,
        ti.label or "?", tostring(werr)), 0)
    end
    if out ~= unhex(v.out) then
      failed[#failed + 1] = {v = v, why = out and "different output" or tostring(werr)}
    end
  end
  for _, f in ipairs(failed) do
    if f.v.aligned or mech ~= "CKM_AES_KEY_WRAP_PAD" then res.ok = false end
  end
  if #failed > 0 then
    local why = {}
    for _, f in ipairs(failed) do why[#why + 1] = f.v.ref .. ": " .. f.why end
    res.detail = mech .. " fails " .. table.concat(why, "; ")
    if res.ok then
      res.aligned_only = true
      res.detail = res.detail .. " (payloads that are not a multiple of 8 bytes come out non-standard)"
    end
  end
  kat_cache[ck] = res
  return res
end

--- The token's AES-KWP (RFC 5649) for one direction (flag "CKF_WRAP" or "CKF_UNWRAP"):
--- CKM_AES_KEY_WRAP_KWP (0x210B, PKCS#11 3.0) where the module lists it with the flag and it
--- passes its known-answer test, else CKM_AES_KEY_WRAP_PAD (0x210A) where that passes
--- (NSS's 0x210A is PKCS#7 + RFC 3394 and fails; SoftHSM2's zero-pads: aligned_only).
--- Both names are RFC 5649, so a blob of one unwraps with the other. Returns the KAT result
--- with mech = the mechanism, or nil and why (lacks = true when the token has neither).
function M.kwp(s, flag)
  flag = flag or "CKF_WRAP"
  local mechs, tried = M.mechanisms(s), {}
  for _, mech in ipairs({"CKM_AES_KEY_WRAP_KWP", "CKM_AES_KEY_WRAP_PAD"}) do
    local flags = mechs[mech]
    if flags and flags[flag] then
      local r = M.kat(s, mech)
      if r.ok then
        local out = {mech = mech}
        for k, v in pairs(r) do out[k] = v end
        return out
      end
      tried[#tried + 1] = r.detail
    elseif flags then
      tried[#tried + 1] = ("%s is listed without %s"):format(mech, flag)
    end
  end
  if #tried == 0 then
    local ti = s:module():token_info(s:slot()) or {}
    return nil, ("token %s lacks AES-KWP (neither CKM_AES_KEY_WRAP_KWP nor CKM_AES_KEY_WRAP_PAD)")
      :format(ti.label or "?"), true
  end
  return nil, table.concat(tried, "; ")
end

local mech_cache = setmetatable({}, {__mode = "k"})   -- per session

--- The module's mechanisms on a session's slot, as a set {CKM_X = flags} (asked once).
function M.mechanisms(s)
  if mech_cache[s] then return mech_cache[s] end
  local set = {}
  for _, m in ipairs(s:module():mechanisms(s:slot()) or {}) do set[m.name] = m.flags or {} end
  mech_cache[s] = set
  return set
end

local curve_strength = {}
for name, oid in pairs(keys.curves) do
  curve_strength[oid] = math.min(256, (tonumber(name:match("%d+")) or 256) // 2)
end
curve_strength[keys.curves.Ed25519] = 128

--- Security strength in bits of a key (SP 800-57 Part 1 Table 2), from its attributes
--- (an hsm.Object or a table of captured attributes).
function M.strength(a)
  local kt = a.CKA_KEY_TYPE
  if kt == "CKK_AES" then return ((a.CKA_VALUE_LEN or 0) > 0 and a.CKA_VALUE_LEN or 16) * 8 end
  if kt == "CKK_DES3" then return 112 end
  if kt == "CKK_DES2" then return 80 end
  if kt == "CKK_DES" then return 56 end
  if kt == "CKK_RSA" then
    local n = a.CKA_MODULUS
    local bits = n and #n * 8 or a.CKA_MODULUS_BITS or 0
    return bits >= 15360 and 256 or bits >= 7680 and 192 or bits >= 3072 and 128
        or bits >= 2048 and 112 or 80
  end
  if kt == "CKK_EC" or kt == "CKK_EC_EDWARDS" then return curve_strength[a.CKA_EC_PARAMS or ""] or 128 end
  local len = a.CKA_VALUE_LEN
  return len and math.min(256, len * 8) or 0
end

-- ------------------------------------------------------------------ RSA-AES key wrap

local EPHEMERAL = {CKA_TOKEN = false, CKA_PRIVATE = true, CKA_SENSITIVE = true,
                   CKA_ENCRYPT = false, CKA_DECRYPT = false, CKA_SIGN = false, CKA_VERIFY = false}

--- The template of a short-lived AES key that only wraps or unwraps (a session object).
local function ephemeral_template(extra)
  local t = {CKA_CLASS = "CKO_SECRET_KEY", CKA_KEY_TYPE = "CKK_AES"}
  for k, v in pairs(EPHEMERAL) do t[k] = v end
  for k, v in pairs(extra) do t[k] = v end
  return t
end

M.ephemeral_template = ephemeral_template

--- The name of the token's AES-KWP for one direction (M.kwp); raises naming the token and
--- what it lacks or fails when it has none that passes, after what (e.g. "this token
--- cannot restore an archive") when given.
function M.kwp_mech(s, flag, what)
  local k, why = M.kwp(s, flag)
  if not k then error((what and what .. ": " or "") .. why, 0) end
  return k.mech
end
local kwp_mech = M.kwp_mech

local function oaep(opts) return {"CKM_RSA_PKCS_OAEP", hash = opts.hash or "sha1"} end

local modulus_len = setmetatable({}, {__mode = "k"})   -- per private key object

local function native(s, opts)
  return not opts.compose and (M.mechanisms(s).CKM_RSA_AES_KEY_WRAP or {}).CKF_WRAP
end

--- Wraps key under an RSA public key as CKM_RSA_AES_KEY_WRAP does. opts: {hash="sha1"|"sha256",
--- compose=true to compose even when the module has the mechanism}. -> blob | nil, err
function M.rsa_aes_wrap(s, pub, key, opts)
  opts = opts or {}
  if native(s, opts) then
    return s:wrap({"CKM_RSA_AES_KEY_WRAP", aes_bits = 256, hash = opts.hash or "sha1"}, pub, key)
  end
  local eph, err, code = s:generate_key("CKM_AES_KEY_GEN",
    ephemeral_template({CKA_VALUE_LEN = 32, CKA_EXTRACTABLE = true, CKA_WRAP = true}))
  if not eph then return nil, err, code end
  local a, b
  a, err, code = s:wrap(oaep(opts), pub, eph)
  if a then b, err, code = s:wrap(kwp_mech(s, "CKF_WRAP"), eph, key) end
  eph:destroy()
  if not b then return nil, err, code end
  return a .. b
end

--- Unwraps an RSA-AES blob with the RSA private key into a new object made from template.
--- -> hsm.Object | nil, err, code
function M.rsa_aes_unwrap(s, priv, blob, template, opts)
  opts = opts or {}
  if native(s, opts) then
    return s:unwrap({"CKM_RSA_AES_KEY_WRAP", aes_bits = 256, hash = opts.hash or "sha1"}, priv,
                    blob, template)
  end
  local n = modulus_len[priv] or #(priv:get("CKA_MODULUS") or "")
  modulus_len[priv] = n
  if n == 0 or #blob <= n + 8 then
    return nil, ("RSA-AES blob of %d bytes is too short for a %d-bit RSA key"):format(#blob, n * 8)
  end
  local eph, err, code = s:unwrap(oaep(opts), priv, blob:sub(1, n),
    ephemeral_template({CKA_UNWRAP = true, CKA_EXTRACTABLE = false}))
  if not eph then return nil, err, code end
  local obj
  obj, err, code = s:unwrap(kwp_mech(s, "CKF_UNWRAP"), eph, blob:sub(n + 1), template)
  eph:destroy()
  return obj, err, code
end

--- Imports a public key (DER SubjectPublicKeyInfo or PEM) as a session object for wrapping;
--- extra attributes override (e.g. {CKA_VERIFY = true, CKA_WRAP = false}).
function M.import_public(s, spki_or_pem, label, extra)
  local der = spki_or_pem
  if spki_or_pem:find("-----BEGIN", 1, true) then
    local d, err = core.pem_decode(spki_or_pem)
    if not d then return nil, "public key PEM: " .. err end
    der = d
  end
  local t, err = core.spki_attrs(der)
  if not t then return nil, "public key: " .. err end
  t.CKA_CLASS, t.CKA_TOKEN, t.CKA_LABEL = "CKO_PUBLIC_KEY", false, label or "hsmsh-transport"
  t.CKA_WRAP, t.CKA_ENCRYPT, t.CKA_VERIFY = true, false, false
  for k, v in pairs(extra or {}) do t[k] = v end
  return s:create(t)
end

return M
