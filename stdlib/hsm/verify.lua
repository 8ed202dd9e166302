--- hsm.verify: the functional proof that a destination key is the source's key: an
--- operation made with one checked with the other (decrypt what the other encrypted, verify
--- its MAC, verify a signature with the source public key), directly when both tokens are at
--- hand (functional) or from evidence the source recorded for a split run (evidence,
--- check_evidence). Plain data only: never key material.
local core = require("hsm.core")
local keys = require("hsm.keys")
local wrap = require("hsm.wrap")

local M = {}

local BLOCK = {CKK_AES = {"CKM_AES_CBC_PAD", 16}, CKK_DES3 = {"CKM_DES3_CBC_PAD", 8},
               CKK_DES2 = {"CKM_DES3_CBC_PAD", 8}}
local HMAC = {CKK_GENERIC_SECRET = "CKM_SHA256_HMAC", CKK_SHA256_HMAC = "CKM_SHA256_HMAC",
              CKK_SHA_1_HMAC = "CKM_SHA_1_HMAC", CKK_SHA384_HMAC = "CKM_SHA384_HMAC",
              CKK_SHA512_HMAC = "CKM_SHA512_HMAC", CKK_AES = "CKM_AES_CMAC"}

-- A module that lists a MAC mechanism for verifying and then refuses C_VerifyInit with it
-- (NSS 3.87 and CKM_AES_CMAC): a MAC is deterministic, so the same MAC made by the
-- destination and compared proves the same.
local function refused(err)
  err = tostring(err)
  return err:find("CKR_MECHANISM_INVALID", 1, true) or err:find("CKR_FUNCTION_NOT_SUPPORTED", 1, true)
end

local function listed(s, mech, flag) return (wrap.mechanisms(s)[mech] or {})[flag] end

-- A mechanism name as a call takes it (the CBC ones with a zero IV: the probe is one key).
local function as_mech(m) return m == "CKM_AES_KEY_WRAP" and m or {m, iv = ("\0"):rep(16)} end

-- A mechanism the source wraps with and the destination unwraps with, for a 16-byte probe.
local function key_wrap_mech(src, dst)
  for _, m in ipairs({"CKM_AES_KEY_WRAP", "CKM_AES_CBC_PAD", "CKM_AES_CBC"}) do
    if listed(src, m, "CKF_WRAP") and listed(dst, m, "CKF_UNWRAP") then return m end
  end
end

-- A throwaway AES-128 probe key wrapped under a key that only wraps: {mech, wrapped,
-- probe_kcv}, or nil and why.
local function wrapped_probe(s, key, mech)
  local probe, err = s:generate{type = "AES", bits = 128, token = false, CKA_EXTRACTABLE = true,
                                CKA_ENCRYPT = true}
  if not probe then return nil, err end
  local blob, werr = s:wrap(as_mech(mech), key, probe)
  local kcv = keys.kcv(probe)
  probe:destroy()
  if not (blob and kcv) then return nil, werr end
  return {mech = mech, wrapped = blob, probe_kcv = kcv}
end

-- Whether key unwraps the probe to a key with the recorded KCV: true, or false and why.
local function unwraps_probe(s, key, p)
  local back, err = s:unwrap(as_mech(p.mech), key, p.wrapped,
    {CKA_CLASS = "CKO_SECRET_KEY", CKA_KEY_TYPE = "CKK_AES", CKA_TOKEN = false, CKA_ENCRYPT = true})
  local same = back ~= nil and keys.kcv(back) == p.probe_kcv
  if back then back:destroy() end
  return same, err
end

--- An operation with the source key checked with the destination key (or the reverse).
--- Returns a description of the check, or raises naming what failed. pub_of(id) finds the
--- source public key of a pair.
function M.functional(src, s_obj, dst, d_obj, a, pub_of)
  local cls, kt = a.CKA_CLASS, a.CKA_KEY_TYPE
  local data = assert(src:random(32))
  local function must(v, what, err)
    if not v then error(what .. ": " .. tostring(err), 0) end
    return v
  end
  if cls == "CKO_SECRET_KEY" then
    local b = BLOCK[kt]
    if b and a.CKA_ENCRYPT and a.CKA_DECRYPT then
      local mech = {b[1], iv = data:sub(1, b[2])}
      local c, cerr = src:encrypt(mech, s_obj, data)
      must(c, "encrypt on the source", cerr)
      local p, err = dst:decrypt(mech, d_obj, c)
      if p ~= data then error("decrypt on the destination does not give the source's plaintext: " .. tostring(err), 0) end
      return "encrypted on the source, decrypted on the destination"
    end
    if HMAC[kt] and a.CKA_SIGN and a.CKA_VERIFY and listed(src, HMAC[kt], "CKF_SIGN")
       and wrap.mechanisms(dst)[HMAC[kt]] then
      local sig, err = src:sign(HMAC[kt], s_obj, data)
      must(sig, "sign on the source", err)
      local ok, verr = dst:verify(HMAC[kt], d_obj, data, sig)
      if ok == true then return "MAC on the source, verified on the destination" end
      if refused(verr) and dst:sign(HMAC[kt], d_obj, data) == sig then
        return "MAC on both tokens, compared (the destination refuses to verify with " .. HMAC[kt] .. ")"
      end
      error("the destination does not verify the source's MAC: " .. tostring(verr), 0)
    end
    local wm = kt == "CKK_AES" and a.CKA_WRAP and a.CKA_UNWRAP and key_wrap_mech(src, dst)
    if wm then
      local p, err = wrapped_probe(src, s_obj, wm)
      local same
      if p then same, err = unwraps_probe(dst, d_obj, p) end
      if not same then error("a key wrapped on the source does not unwrap on the destination: " .. tostring(err), 0) end
      return "wrapped on the source, unwrapped on the destination"
    end
    return "KCV only (the key allows no operation both sides can check)"
  elseif cls == "CKO_PRIVATE_KEY" then
    local pub = pub_of(a.CKA_ID or "")
    if not pub then return "fingerprint only (no source public key with the same ID)" end
    if not a.CKA_SIGN then return "fingerprint only (the private key cannot sign)" end
    local mech, msg = nil, data
    if kt == "CKK_RSA" then
      -- openCryptoki 3.8 has no CKM_SHA256_RSA_PKCS: PKCS#1 v1.5 over the data itself
      -- where either side lacks it.
      mech = "CKM_SHA256_RSA_PKCS"
      if not (listed(dst, mech, "CKF_SIGN") and listed(src, mech, "CKF_VERIFY"))
         and listed(dst, "CKM_RSA_PKCS", "CKF_SIGN") and listed(src, "CKM_RSA_PKCS", "CKF_VERIFY") then
        mech = "CKM_RSA_PKCS"
      end
    elseif kt == "CKK_EC" then mech, msg = "CKM_ECDSA", core.sha256(data)
    elseif kt == "CKK_EC_EDWARDS" then mech = "CKM_EDDSA"
    else return "fingerprint only" end
    local sig, err = dst:sign(mech, d_obj, msg)
    must(sig, "sign on the destination", err)
    local ok, verr = src:verify(mech, pub, msg, sig)
    if ok ~= true then error("the source public key does not verify the destination's signature: " .. tostring(verr), 0) end
    return "signed on the destination, verified with the source public key"
  end
  return "attributes compared"
end

--- For runs split across two machines: what the source records so the destination can
--- prove a key without the source at hand (as seed 002 tests 3DES "by cross-encryption"):
--- secret keys: a random plaintext and its ciphertext, or data and its MAC; key pairs: the
--- source public key (SPKI) to verify a signature the destination makes; keys that only
--- wrap: a throwaway probe key wrapped under the key, and the probe's KCV. Plain data only.
--- kcv_is_enough: for block-cipher keys that can encrypt, the KCV (each token encrypting a
--- zero block) is already an operation checked on both sides; archives rely on it.
function M.evidence(src, obj, a, pub_of, kcv_is_enough)
  local cls, kt = a.CKA_CLASS, a.CKA_KEY_TYPE
  if kcv_is_enough and cls == "CKO_SECRET_KEY" and BLOCK[kt] and a.CKA_ENCRYPT then
    return {kind = "kcv"}
  end
  local data = assert(src:random(32))
  if cls == "CKO_SECRET_KEY" then
    local b = BLOCK[kt]
    if b and a.CKA_ENCRYPT and a.CKA_DECRYPT then
      local iv = data:sub(1, b[2])
      local c = src:encrypt({b[1], iv = iv}, obj, data)
      if c then return {kind = "decrypt", mech = b[1], iv = iv, plaintext = data, ciphertext = c} end
    end
    if HMAC[kt] and a.CKA_SIGN and a.CKA_VERIFY then
      local mac = src:sign(HMAC[kt], obj, data)
      if mac then return {kind = "verify", mech = HMAC[kt], data = data, mac = mac} end
    end
    -- A key that only wraps (a KEK, an SKS master key): a throwaway probe key wrapped under
    -- it, and the probe's KCV, for the destination to unwrap and compare.
    local wm = kt == "CKK_AES" and a.CKA_WRAP and a.CKA_UNWRAP and key_wrap_mech(src, src)
    local p = wm and wrapped_probe(src, obj, wm)
    if p then p.kind = "unwrap"; return p end
  elseif cls == "CKO_PRIVATE_KEY" and a.CKA_SIGN then
    local pub = pub_of(a.CKA_ID or "")
    local spki = pub and keys.spki(pub)
    if spki then return {kind = "sign", spki = spki} end
  end
  return nil
end

--- Checks a destination key against the source's evidence. Returns how; raises on mismatch.
function M.check_evidence(dst, d_obj, a, ev)
  if not ev then return "check value only (no operation recorded on the source)" end
  if ev.kind == "kcv" then return "KCV: the same zero block encrypted on both tokens" end
  if ev.kind == "decrypt" then
    local p, err = dst:decrypt({ev.mech, iv = ev.iv}, d_obj, ev.ciphertext)
    if p ~= ev.plaintext then error("the destination does not decrypt the source's ciphertext: " .. tostring(err), 0) end
    return "decrypted on the destination what the source encrypted"
  elseif ev.kind == "verify" then
    local ok, err = dst:verify(ev.mech, d_obj, ev.data, ev.mac)
    if ok == true then return "verified on the destination the source's MAC" end
    if refused(err) and dst:sign(ev.mech, d_obj, ev.data) == ev.mac then
      return "the same MAC made on the destination (it refuses to verify with " .. ev.mech .. ")"
    end
    error("the destination does not verify the source's MAC: " .. tostring(err), 0)
  elseif ev.kind == "unwrap" then
    if not listed(dst, ev.mech, "CKF_UNWRAP") then
      return ("check value only (the destination cannot unwrap with %s)"):format(ev.mech)
    end
    local same, err = unwraps_probe(dst, d_obj, ev)
    if not same then error("the destination does not unwrap the probe the source wrapped: " .. tostring(err), 0) end
    return "unwrapped on the destination a probe key the source wrapped"
  elseif ev.kind == "sign" then
    local pub = assert(wrap.import_public(dst, ev.spki, "hsmsh-verify", {CKA_VERIFY = true, CKA_WRAP = false}))
    local kt = a.CKA_KEY_TYPE
    local data = assert(dst:random(32))
    local mech, msg = "CKM_SHA256_RSA_PKCS", data
    if kt == "CKK_EC" then mech, msg = "CKM_ECDSA", core.sha256(data)
    elseif kt == "CKK_EC_EDWARDS" then mech = "CKM_EDDSA" end
    local sig, err = dst:sign(mech, d_obj, msg)
    local ok = sig and dst:verify(mech, pub, msg, sig)
    pub:destroy()
    if ok ~= true then error("the source public key does not verify the destination's signature: " .. tostring(err), 0) end
    return "signed on the destination, verified with the source public key"
  end
  error("unknown evidence kind " .. tostring(ev.kind), 0)
end

return M
