--- hsm.provenance: whether an object on a token is the one a run was making, proven by what
--- it holds (a KCV, a public-key fingerprint, the SHA-256 of a value, or an operation on one
--- side checked on the other), never by its label, ID, count or timing. hsmsh destroys,
--- replaces or completes an object only when this says "ours".
---
---   local check = provenance.check_of(obj, attributes)      -- the object's check value or nil
---   local verdict, detail = provenance.judge(obj, expected, {prove = fn})
local core = require("hsm.core")
local keys = require("hsm.keys")

local M = {}
local hex = keys.hex

--- The value that proves two objects hold the same thing: KCV for secret keys, SPKI
--- fingerprint for key pairs (a private key may borrow it from its public key or
--- certificate by ID, by_id: {[CKA_ID] = fingerprint}, to compare a source with a
--- destination; never to prove provenance), SHA-256 of the value for certificates and data.
function M.check_of(obj, a, by_id)
  local cls = a.CKA_CLASS
  if cls == "CKO_SECRET_KEY" then return keys.kcv(obj, a) end
  if cls == "CKO_DATA" then return hex(core.sha256(a.CKA_VALUE or "")) end
  local fp = keys.fingerprint(obj)
  if not fp and cls == "CKO_PRIVATE_KEY" and by_id then fp = by_id[a.CKA_ID or ""] end
  return fp
end

-- The attributes check_of needs, read one by one: a half-made object may refuse some.
local function readable(obj)
  local a = {}
  for _, n in ipairs({"CKA_CLASS", "CKA_KEY_TYPE", "CKA_ENCRYPT", "CKA_CHECK_VALUE", "CKA_VALUE", "CKA_ID"}) do
    a[n] = obj:get(n)
  end
  return a
end

--- What can be proven of obj against the check values a run expected it to hold (expected:
--- a set, {[check] = true}). opts.prove(obj) -> true when an operation shows obj holds the
--- key in flight (for keys that give no check value). Returns a verdict and a detail:
---   "ours", check     its check value (or the operation) matches what was expected
---   "foreign", check  its check value is known and is none of those expected
---   "unproven", why   nothing it holds can be compared
function M.judge(obj, expected, opts)
  local okr, a = pcall(readable, obj)
  if not okr or not a.CKA_CLASS then return "unproven", "nothing of it can be read" end
  local okc, check = pcall(M.check_of, obj, a)
  if okc and check then
    if expected[check] then return "ours", check end
    return "foreign", check
  end
  if opts and opts.prove then
    local okp, yes = pcall(opts.prove, obj)
    if okp and yes then return "ours", "an operation checked on the other token" end
  end
  return "unproven", "it gives no check value and no operation can compare it"
end

--- Candidates judged: {ours = {obj...}, foreign = {{obj=, detail=}...}, unproven = {...}}.
function M.sort(list, expected, opts)
  local out = {ours = {}, foreign = {}, unproven = {}}
  for _, obj in ipairs(list) do
    local verdict, detail = M.judge(obj, expected, opts)
    if verdict == "ours" then out.ours[#out.ours + 1] = obj
    else table.insert(out[verdict], {obj = obj, detail = detail}) end
  end
  return out
end

return M
