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

-- A side's KWP for one direction, known-answer tested (wrap.kwp), or nil and why, naming
-- the side.
local function side_kwp(s, side, flag)
  local k, why, lacks = wrap.kwp(s, flag)
  if k then return k end
  if lacks then return nil, ("the %s %s"):format(side, why:gsub("^token %S+ ", "token ")) end
  return nil, ("the %s token's AES-KWP fails its known-answer test: %s"):format(side, why)
end

-- Whether the two tokens can carry keys with a kind of transport, from their mechanism lists
-- and known-answer tests alone (nothing is made): nil and the facts {sk=, dk=, native=}, or
-- the reason they cannot.
local function incapable(src, dst, kind)
  local smech, dmech = wrap.mechanisms(src), wrap.mechanisms(dst)
  local facts = {}
  local function kwps()
    local why
    facts.sk, why = side_kwp(src, "source", "CKF_WRAP")
    if not facts.sk then return why end
    facts.dk, why = side_kwp(dst, "destination", "CKF_UNWRAP")
    return why
  end
  if kind == "aes-kwp" then return kwps(), facts end
  if not has(dmech, "CKM_RSA_PKCS_KEY_PAIR_GEN", "CKF_GENERATE_KEY_PAIR") then
    return "the destination cannot generate RSA key pairs"
  end
  facts.native = kind == "rsa-aes" and has(smech, "CKM_RSA_AES_KEY_WRAP", "CKF_WRAP")
    and has(dmech, "CKM_RSA_AES_KEY_WRAP", "CKF_UNWRAP")
  if facts.native then return nil, facts end
  local oaep = both(smech, dmech, "CKM_RSA_PKCS_OAEP")
  if oaep and kind == "rsa-aes" then
    return "needs CKM_RSA_AES_KEY_WRAP or CKM_RSA_PKCS_OAEP with CKF_WRAP on the source and "
      .. "CKF_UNWRAP on the destination: " .. oaep
  elseif oaep then
    return "needs CKM_RSA_PKCS_OAEP with CKF_WRAP on the source and CKF_UNWRAP on the destination: " .. oaep
  end
  if kind ~= "rsa-aes" then return nil, facts end
  local why_kwp = kwps()
  if not why_kwp then return nil, facts end
  -- No AES-KWP both ways: AES-CBC-PAD, or AES-CBC (block-sized secret keys only), where
  -- the source wraps and the destination unwraps with it.
  for _, cbc in ipairs({"CKM_AES_CBC_PAD", "CKM_AES_CBC"}) do
    if not both(smech, dmech, cbc) then
      facts.sk, facts.dk, facts.cbc, facts.why_kwp = nil, nil, cbc, why_kwp
      return nil, facts
    end
  end
  return why_kwp .. ", and no AES-CBC-PAD or AES-CBC the source wraps and the destination unwraps with", facts
end

-- The KWP facts of a pair of sides: aligned_only when either zero-pads (SoftHSM2),
-- same_quirk when both do (their non-standard blobs still agree). The quirk is noted only
-- when it matters: when the two sides disagree (issue 14: a quirk said once, and only when
-- it affects the plan).
local function kwp_pair(t, sk, dk)
  t.aligned_only = sk.aligned_only or dk.aligned_only
  t.same_quirk = (sk.aligned_only or false) == (dk.aligned_only or false)
  if not t.same_quirk then
    local side = sk.aligned_only and "source" or "destination"
    t.notes[#t.notes + 1] = ("the %s's %s zero-pads payloads that are not a multiple of 8 bytes "
      .. "and the other side's does not: such keys (private keys, odd-length secrets) are blocked")
      :format(side, (sk.aligned_only and sk or dk).mech)
  end
end

-- The body of M.new for one kind; made collects the objects it makes.
local function setup(t, src, dst, opts, need, made)
  local kind = t.kind
  local function keep(obj) made[#made + 1] = obj; return obj end

  need(kind == "aes-kwp" or kind == "rsa-aes" or kind == "rsa-oaep",
    "unknown transport (auto, rsa-aes, aes-kwp, rsa-oaep)")
  if kind == "aes-kwp" then need(opts.kek, "needs kek=LABEL, an AES key present on both tokens") end
  local why, facts = incapable(src, dst, kind)
  need(not why, why)
  local sk, dk, native = facts.sk, facts.dk, facts.native
  if kind == "aes-kwp" then
    local function find_kek(s, side)
      local l = assert(s:find_all({CKA_LABEL = opts.kek, CKA_CLASS = "CKO_SECRET_KEY"}))
      need(#l == 1, ("kek=%s names %d keys on the %s token (expected one)"):format(opts.kek, #l, side))
      return l[1]
    end
    local skek, dkek = find_kek(src, "source"), find_kek(dst, "destination")
    local kcv1, kcv2 = keys.kcv(skek), keys.kcv(dkek)   -- hex, or nil when none can be had
    if kcv1 and kcv2 then
      need(kcv1 == kcv2, "the two KEKs differ (check values " .. kcv1 .. " and " .. kcv2 .. ")")
    else
      -- A copy made by C_UnwrapKey may carry no check value (SoftHSM2): a probe key wrapped
      -- under one and unwrapped under the other proves them the same.
      local ok, err = pcall(require("hsm.verify").functional, src, skek, dst, dkek,
                            require("hsm.attrs").capture(skek))
      need(ok, "the two KEKs are not the same key (" .. tostring(err) .. ")")
    end
    need(skek.wrap and dkek.unwrap, "the KEK needs CKA_WRAP on the source and CKA_UNWRAP on the destination")
    t.unsafe = (skek.decrypt or dkek.decrypt) and "the KEK can also decrypt (CKA_DECRYPT=true)" or nil
    -- Proven the same key: the side that recorded its length (an unwrapped copy may read
    -- CKA_VALUE_LEN = 0 on SoftHSM2) tells its strength.
    t.strength = math.max(wrap.strength(skek), wrap.strength(dkek))
    kwp_pair(t, sk, dk)
    function t.wrap(key) return src:wrap(sk.mech, skek, key) end
    function t.unwrap(blob, tmpl) return dst:unwrap(dk.mech, dkek, blob, tmpl) end
    function t.unwrap_batch(jobs)
      return dst:unwrap_parallel(dk.mech, dkek, jobs, t.workers or {dst})
    end
    function t.close() end
    t.name = kind .. " (" .. sk.mech .. (dk.mech ~= sk.mech and (" / " .. dk.mech) or "") .. ")"
    return
  end
  if kind == "rsa-aes" and not native then
    if sk then kwp_pair(t, sk, dk) end
    t.strength = 256
  end
  t.native = native and kind == "rsa-aes"
  -- keep: the pair is made as token objects and stays (e.g. to audit or reuse it).
  local pub, priv = M.pair(dst, {bits = opts.bits, token = opts.keep,
    label = opts.keep and ("hsmsh-transport-" .. os.date("!%Y%m%dT%H%M%SZ")) or nil})
  if not opts.keep then keep(pub); keep(priv) end
  if kind == "rsa-oaep" then t.strength = wrap.strength(pub) end
  local spub, err = wrap.import_public(src, keys.spki(pub))
  need(spub, "cannot import the transport public key into the source: " .. tostring(err))
  keep(spub)
  local oaep = function() return {"CKM_RSA_PKCS_OAEP", hash = t.hash} end
  if t.native then
    function t.wrap(key) return wrap.rsa_aes_wrap(src, spub, key, {hash = t.hash}) end
    function t.unwrap(blob, tmpl) return wrap.rsa_aes_unwrap(dst, priv, blob, tmpl, {hash = t.hash}) end
  else
    function t.wrap(key) return src:wrap(oaep(), spub, key) end
    function t.unwrap(blob, tmpl) return dst:unwrap(oaep(), priv, blob, tmpl) end
  end
  local closers = {}
  function t.close()
    if t.closed then return end
    t.closed = true
    for _, c in ipairs(closers) do c() end
    spub:destroy()
    if not opts.keep then pub:destroy(); priv:destroy() end
  end
  -- The self-test: a throwaway key through t.wrap and t.unwrap, KCVs compared.
  local probe = keep(assert(src:generate{type = "AES", bits = 128, token = false,
                                         CKA_EXTRACTABLE = true, CKA_ENCRYPT = true}))
  local function round_trip()   -- true, false (wrong key), or nil (refused)
    local blob = t.wrap(probe)
    local back = blob and t.unwrap(blob, {CKA_CLASS = "CKO_SECRET_KEY", CKA_KEY_TYPE = "CKK_AES",
                                          CKA_TOKEN = false, CKA_ENCRYPT = true})
    if not back then return nil end
    local same = keys.kcv(back) == keys.kcv(probe)
    back:destroy()
    return same
  end
  -- OAEP with SHA-256 where both modules take it, else SHA-1 (SoftHSM2 has only SHA-1).
  local ok
  for _, h in ipairs({"sha256", "sha1"}) do
    t.hash = h
    ok = round_trip()
    if ok ~= nil then break end
  end
  need(ok, "the self-test (a session key wrapped on the source, unwrapped on the destination) failed")
  if kind == "rsa-aes" and not t.native then
    -- One ephemeral AES-256 key per run: RSA-OAEP carries it once, AES-KWP every key (each
    -- side its own KWP mechanism, wrap.kwp). The same construction as RSA-AES key wrap,
    -- without repeating the RSA private-key operation (~3 ms) for each key. (Split runs
    -- write standard per-key RSA-AES blobs.) Between modules that share no AES-KWP
    -- (openCryptoki 3.8 has none), AES-CBC-PAD (or AES-CBC for block-sized secret keys)
    -- under the same key, a fresh IV before each blob: not authenticated, which the
    -- verification of every key after it lands makes up for; the blob never leaves the run.
    local eph = keep(assert(src:generate_key("CKM_AES_KEY_GEN",
      wrap.ephemeral_template({CKA_VALUE_LEN = 32, CKA_EXTRACTABLE = true, CKA_WRAP = true}))))
    local blob = src:wrap(oaep(), spub, eph)
    local deph = blob and dst:unwrap(oaep(), priv, blob,
      wrap.ephemeral_template({CKA_UNWRAP = true, CKA_EXTRACTABLE = false}))
    need(deph, "cannot carry the run's AES key to the destination")
    keep(deph)
    if facts.cbc then
      local cbc = facts.cbc
      function t.wrap(key)
        local iv = assert(src:random(16))
        local b, err, code = src:wrap({cbc, iv = iv}, eph, key)
        if not b then return nil, err, code end
        return iv .. b
      end
      function t.unwrap(b, tmpl)
        if #b <= 16 then return nil, ("a %s blob of %d bytes has no room for its IV"):format(cbc, #b) end
        return dst:unwrap({cbc, iv = b:sub(1, 16)}, deph, b:sub(17), tmpl)
      end
      t.cbc, t.block_only = cbc, cbc == "CKM_AES_CBC"
      t.notes[#t.notes + 1] = ("the two tokens share no AES-KWP (%s): keys go %s-wrapped under the "
        .. "run's AES-256 key"):format(facts.why_kwp, cbc)
    else
      function t.wrap(key) return src:wrap(sk.mech, eph, key) end
      function t.unwrap(b, tmpl) return dst:unwrap(dk.mech, deph, b, tmpl) end
      function t.unwrap_batch(jobs)
        return dst:unwrap_parallel(dk.mech, deph, jobs, t.workers or {dst})
      end
    end
    closers[#closers + 1] = function() eph:destroy(); deph:destroy() end
    need(round_trip(), "the self-test of the run's AES key (a session key wrapped under it on the "
      .. "source, unwrapped on the destination) failed")
    t.per_run_key = true
  end
  probe:destroy()
  made[#made] = nil
  local per_key = t.cbc or sk and (sk.mech == dk.mech and sk.mech or sk.mech .. " / " .. dk.mech)
  t.name = kind .. (t.hash and ("/oaep-" .. t.hash) or "") .. (t.native and " (native)" or
    t.per_run_key and (" (composed: one AES-256 key per run, %s per key)"):format(per_key) or "")
end

--- Sets up how keys travel from src to dst and proves it works end to end (a throwaway
--- session key wrapped on the source, unwrapped on the destination, KCVs compared).
--- opts: {kind="auto"|"rsa-aes"|"aes-kwp"|"rsa-oaep", kek=label, bits=3072, keep=false}.
--- auto: aes-kwp with kek=, else rsa-aes, else (the modules share no AES-KWP) rsa-oaep for
--- secret keys, else a transport that carries nothing (t.unavailable says why: every key is
--- then blocked with that reason, and public objects are still copied). Set t.workers to a
--- list of destination sessions (one per thread) for apply's parallel unwrapping.
--- Whatever it made on either token is removed when it fails.
function M.new(src, dst, opts)
  opts = opts or {}
  local kind = opts.kind or "auto"
  if kind == "auto" and opts.kek then kind = "aes-kwp" end
  if kind == "auto" then
    -- By what the modules offer (a failure while setting up is an error, never a fallback).
    local why_aes = incapable(src, dst, "rsa-aes")
    local why_oaep = why_aes and incapable(src, dst, "rsa-oaep")
    local one = {}
    for k, v in pairs(opts) do one[k] = v end
    one.kind = not why_aes and "rsa-aes" or not why_oaep and "rsa-oaep" or nil
    if one.kind then
      local t = M.new(src, dst, one)
      if why_aes then
        t.private = "no transport for private keys: " .. why_aes
        t.notes[#t.notes + 1] = "RSA-AES is not possible (" .. why_aes .. "): secret keys go by RSA-OAEP"
      end
      return t
    end
    -- One reason when both lack the same (e.g. no RSA-OAEP unwrap on the destination).
    local function tail(e) return e:match(".*: (.-)$") or e end
    local why = tail(why_oaep) == tail(why_aes) and why_aes or why_aes .. "; RSA-OAEP: " .. why_oaep
    return {kind = "none", name = "none", notes = {why}, unavailable = "no transport: " .. why,
            close = function() end}
  end
  local t = {kind = kind, notes = {}}
  local function need(ok, what) if not ok then error(("transport %s: %s"):format(kind, what), 0) end end
  local made = {}   -- what this call made, removed if it fails
  local function cleanup() for i = #made, 1, -1 do pcall(made[i].destroy, made[i]) end end
  local ok, err = pcall(setup, t, src, dst, opts, need, made)
  if not ok then cleanup(); error(err, 0) end
  return t
end


return M
