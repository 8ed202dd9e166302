--- hsm.transport: how keys travel from a source token to a destination token in one
--- process (generic/migrate, SKS): an RSA transport pair made on the destination, RSA-AES
--- (native, or composed from one ephemeral AES-256 key carried by OAEP and AES-KWP per key),
--- RSA-OAEP, or AES-KWP under a KEK both tokens hold. Every kind is known-answer tested and
--- proven end to end before the first key moves.
---
---   local t = transport.new(src, dst, {kind = "auto", kek = LABEL})
---   local blob = t.wrap(src_key); local obj = t.unwrap(blob, template); t.close()
local keys = require("hsm.keys")
local wrap = require("hsm.wrap")

local M = {}
local hex = keys.hex

local PAIR_PUB = {CKA_TOKEN = false, CKA_WRAP = true, CKA_ENCRYPT = false, CKA_VERIFY = false,
                  CKA_PUBLIC_EXPONENT = "\1\0\1"}
local PAIR_PRIV = {CKA_TOKEN = false, CKA_PRIVATE = true, CKA_SENSITIVE = true,
                   CKA_EXTRACTABLE = false, CKA_UNWRAP = true, CKA_DECRYPT = false, CKA_SIGN = false}

local function merged(a, b)
  local t = {}
  for k, v in pairs(a) do t[k] = v end
  for k, v in pairs(b or {}) do t[k] = v end
  return t
end

--- A destination RSA transport pair. opts: {bits=3072, token=false, label=}.
function M.pair(dst, opts)
  opts = opts or {}
  local label = opts.label or "hsmsh-transport"
  local extra = {CKA_TOKEN = opts.token or false, CKA_LABEL = label, CKA_ID = opts.id}
  local pub, priv = dst:generate_key_pair("CKM_RSA_PKCS_KEY_PAIR_GEN",
    merged(merged(PAIR_PUB, extra), {CKA_MODULUS_BITS = opts.bits or 3072}), merged(PAIR_PRIV, extra))
  if not pub then error("cannot generate the RSA transport pair on the destination: " .. priv, 0) end
  return pub, priv
end

-- The transport kinds. Each: needs (destination and source mechanisms), carries(item) ->
-- nil or the reason it cannot, strength (of the key that wraps the payload).
local function has(mechs, name, flag) return (mechs[name] or {})[flag] end

--- Why a side cannot use a mechanism in one direction: "the destination token lacks X" or
--- "the source token lists X without CKF_WRAP"; nil when it can.
local function why_not(side, mechs, name, flag)
  if not mechs[name] then return ("the %s token lacks %s"):format(side, name) end
  if not mechs[name][flag] then return ("the %s token lists %s without %s"):format(side, name, flag) end
end
local function both(smech, dmech, name)
  local a, b = why_not("source", smech, name, "CKF_WRAP"), why_not("destination", dmech, name, "CKF_UNWRAP")
  if a and b then return a .. " and " .. b end
  return a or b
end

--- Sets up how keys travel from src to dst and proves it works end to end (a throwaway
--- session key wrapped on the source, unwrapped on the destination, KCVs compared).
--- opts: {kind="auto"|"rsa-aes"|"aes-kwp"|"rsa-oaep", kek=label, bits=3072, keep=false}. Set t.workers
--- to a list of destination sessions (one per thread) for apply's parallel unwrapping.
function M.new(src, dst, opts)
  opts = opts or {}
  local smech, dmech = wrap.mechanisms(src), wrap.mechanisms(dst)
  local kind = opts.kind or "auto"
  if kind == "auto" then kind = opts.kek and "aes-kwp" or "rsa-aes" end
  local t = {kind = kind, notes = {}}
  local function need(ok, what) if not ok then error(("transport %s: %s"):format(kind, what), 0) end end

  local function kat(s, side, mech)
    local r = wrap.kat(s, mech)
    if not r.ok and r.lacks then error(("transport %s: %s"):format(kind, r.detail or "?"), 0) end
    if not r.ok then error(("transport %s: the %s token failed the %s known-answer test: %s")
      :format(kind, side, mech, r.detail or "?"), 0) end
    if r.aligned_only then t.notes[#t.notes + 1] = side .. ": " .. r.detail end
    return r
  end

  if kind == "aes-kwp" then
    need(opts.kek, "needs kek=LABEL, an AES key present on both tokens")
    need(has(smech, "CKM_AES_KEY_WRAP_PAD", "CKF_WRAP"), "the source has no CKM_AES_KEY_WRAP_PAD")
    need(has(dmech, "CKM_AES_KEY_WRAP_PAD", "CKF_UNWRAP"), "the destination has no CKM_AES_KEY_WRAP_PAD")
    local function find_kek(s, side)
      local l = assert(s:find_all({CKA_LABEL = opts.kek, CKA_CLASS = "CKO_SECRET_KEY"}))
      need(#l == 1, ("kek=%s names %d keys on the %s token (expected one)"):format(opts.kek, #l, side))
      return l[1]
    end
    local sk, dk = find_kek(src, "source"), find_kek(dst, "destination")
    local kcv1 = sk:get("CKA_CHECK_VALUE") or keys.kcv(sk)
    local kcv2 = dk:get("CKA_CHECK_VALUE") or keys.kcv(dk)
    need(kcv1 and kcv1 == kcv2, "the two KEKs differ (check values " .. hex(kcv1 or "") .. " and "
      .. hex(kcv2 or "") .. ")")
    need(sk.wrap and dk.unwrap, "the KEK needs CKA_WRAP on the source and CKA_UNWRAP on the destination")
    t.unsafe = (sk.decrypt or dk.decrypt) and "the KEK can also decrypt (CKA_DECRYPT=true)" or nil
    t.strength = wrap.strength(sk)
    local srcr, dstr = kat(src, "source", "CKM_AES_KEY_WRAP_PAD"), kat(dst, "destination", "CKM_AES_KEY_WRAP_PAD")
    t.aligned_only = srcr.aligned_only or dstr.aligned_only
    t.same_quirk = srcr.aligned_only == dstr.aligned_only
    function t.wrap(key) return src:wrap("CKM_AES_KEY_WRAP_PAD", sk, key) end
    function t.unwrap(blob, tmpl) return dst:unwrap("CKM_AES_KEY_WRAP_PAD", dk, blob, tmpl) end
    function t.unwrap_batch(jobs)
      return dst:unwrap_parallel("CKM_AES_KEY_WRAP_PAD", dk, jobs, t.workers or {dst})
    end
    function t.close() end
  else
    need(kind == "rsa-aes" or kind == "rsa-oaep", "unknown transport (auto, rsa-aes, aes-kwp, rsa-oaep)")
    need(has(dmech, "CKM_RSA_PKCS_KEY_PAIR_GEN", "CKF_GENERATE_KEY_PAIR"),
      "the destination cannot generate RSA key pairs")
    local native = has(smech, "CKM_RSA_AES_KEY_WRAP", "CKF_WRAP") and has(dmech, "CKM_RSA_AES_KEY_WRAP", "CKF_UNWRAP")
    if kind == "rsa-aes" and not native then
      local oaep, kwp = both(smech, dmech, "CKM_RSA_PKCS_OAEP"), both(smech, dmech, "CKM_AES_KEY_WRAP_PAD")
      need(not oaep, "needs CKM_RSA_AES_KEY_WRAP or CKM_RSA_PKCS_OAEP with CKF_WRAP on the source "
        .. "and CKF_UNWRAP on the destination: " .. tostring(oaep))
      need(not kwp, "needs CKM_RSA_AES_KEY_WRAP or CKM_AES_KEY_WRAP_PAD with CKF_WRAP on the source "
        .. "and CKF_UNWRAP on the destination: " .. tostring(kwp))
      local srcr, dstr = kat(src, "source", "CKM_AES_KEY_WRAP_PAD"), kat(dst, "destination", "CKM_AES_KEY_WRAP_PAD")
      t.aligned_only = srcr.aligned_only or dstr.aligned_only
      t.same_quirk = srcr.aligned_only == dstr.aligned_only
      t.strength = 256
    end
    t.native = native and kind == "rsa-aes"
    -- keep: the pair is made as token objects and stays (e.g. to audit or reuse it).
    local pub, priv = M.pair(dst, {bits = opts.bits, token = opts.keep,
      label = opts.keep and ("hsmsh-transport-" .. os.date("!%Y%m%dT%H%M%SZ")) or nil})
    if kind == "rsa-oaep" then t.strength = wrap.strength(pub) end
    local spub, err = wrap.import_public(src, keys.spki(pub))
    need(spub, "cannot import the transport public key into the source: " .. tostring(err))
    t.hash = "sha256"
    local function w(key) -- by kind
      if kind == "rsa-oaep" then return src:wrap({"CKM_RSA_PKCS_OAEP", hash = t.hash}, spub, key) end
      return wrap.rsa_aes_wrap(src, spub, key, {hash = t.hash})
    end
    local function u(blob, tmpl)
      if kind == "rsa-oaep" then return dst:unwrap({"CKM_RSA_PKCS_OAEP", hash = t.hash}, priv, blob, tmpl) end
      return wrap.rsa_aes_unwrap(dst, priv, blob, tmpl, {hash = t.hash})
    end
    t.wrap, t.unwrap = w, u
    function t.close()
      if t.closed then return end
      t.closed = true
      spub:destroy()
      if not opts.keep then pub:destroy(); priv:destroy() end
    end
    -- OAEP with SHA-256 where both modules take it, else SHA-1 (SoftHSM2 has only SHA-1).
    local probe = assert(src:generate{type = "AES", bits = 128, token = false,
                                      CKA_EXTRACTABLE = true, CKA_ENCRYPT = true})
    local ok = false
    for _, h in ipairs({"sha256", "sha1"}) do
      t.hash = h
      local blob = w(probe)
      local back = blob and u(blob, {CKA_CLASS = "CKO_SECRET_KEY", CKA_KEY_TYPE = "CKK_AES",
                                     CKA_TOKEN = false, CKA_ENCRYPT = true})
      if back then
        ok = keys.kcv(back) == keys.kcv(probe)
        back:destroy()
        break
      end
    end
    probe:destroy()
    if not ok then t.close() end
    need(ok, "the self-test (a session key wrapped on the source, unwrapped on the destination) failed")
    if kind == "rsa-aes" and not t.native then
      -- One ephemeral AES-256 key per run: RSA-OAEP carries it once, AES-KWP every key. The
      -- same construction as RSA-AES key wrap, without repeating the RSA private-key
      -- operation (~3 ms) for each key. (Split runs write standard per-key RSA-AES blobs.)
      local oaep = {"CKM_RSA_PKCS_OAEP", hash = t.hash}
      local eph = assert(src:generate_key("CKM_AES_KEY_GEN",
        wrap.ephemeral_template({CKA_VALUE_LEN = 32, CKA_EXTRACTABLE = true, CKA_WRAP = true})))
      local blob = src:wrap(oaep, spub, eph)
      local deph = blob and dst:unwrap(oaep, priv, blob,
        wrap.ephemeral_template({CKA_UNWRAP = true, CKA_EXTRACTABLE = false}))
      if not deph then eph:destroy(); t.close() end
      need(deph, "cannot carry the run's AES key to the destination")
      function t.wrap(key) return src:wrap("CKM_AES_KEY_WRAP_PAD", eph, key) end
      function t.unwrap(b, tmpl) return dst:unwrap("CKM_AES_KEY_WRAP_PAD", deph, b, tmpl) end
      function t.unwrap_batch(jobs)
        return dst:unwrap_parallel("CKM_AES_KEY_WRAP_PAD", deph, jobs, t.workers or {dst})
      end
      local close_pair = t.close
      function t.close()
        if not t.closed then eph:destroy(); deph:destroy() end
        close_pair()
      end
      t.per_run_key = true
    end
  end
  t.name = kind .. (t.hash and ("/oaep-" .. t.hash) or "") .. (t.native and " (native)" or
    t.per_run_key and " (composed: one AES-256 key per run, AES-KWP per key)" or "")
  return t
end

return M
