-- hsm.migrate and hsm.attrs on real SoftHSM2 tokens: plans and their blockers, attributes
-- kept, verification, and re-runs that change nothing.
local hsm = require("hsm")
local migrate = require("hsm.migrate")
local transport = require("hsm.transport")
local attrs = require("hsm.attrs")
local H = require("spec.helper")

local function aes(s, label, id, extra)
  local spec = {type = "AES", bits = 256, label = label, id = id, CKA_EXTRACTABLE = true,
                CKA_ENCRYPT = true, CKA_DECRYPT = true}
  for k, v in pairs(extra or {}) do spec[k] = v end
  return assert(s:generate(spec))
end

local function strategies(plan)
  local out = {}
  for _, it in ipairs(plan.items) do out[it.ref] = {it.strategy, it.reason} end
  return out
end

-- The same AES KEK on two tokens: a known test value, never a real key.
local function shared_kek(src, dst, bytes, extra)
  local value = ("\42"):rep(bytes)
  for _, s in ipairs({src, dst}) do
    local t = {CKA_CLASS = "CKO_SECRET_KEY", CKA_KEY_TYPE = "CKK_AES", CKA_TOKEN = false,
               CKA_LABEL = "kek" .. bytes, CKA_VALUE = value, CKA_WRAP = true, CKA_UNWRAP = true,
               CKA_ENCRYPT = false, CKA_DECRYPT = false}
    for k, v in pairs(extra or {}) do t[k] = v end
    assert(s:create(t))
  end
  return (extra or {}).CKA_LABEL or "kek" .. bytes
end

describe("migrate.filter", function()
  it("selects by label glob, id, class and type", function()
    local f = migrate.filter("label=app-*,class=secret-key,type=aes")
    assert.is_true(f({CKA_LABEL = "app-1", CKA_CLASS = "CKO_SECRET_KEY", CKA_KEY_TYPE = "CKK_AES"}))
    assert.is_false(f({CKA_LABEL = "db-1", CKA_CLASS = "CKO_SECRET_KEY", CKA_KEY_TYPE = "CKK_AES"}))
    assert.is_false(f({CKA_LABEL = "app-1", CKA_CLASS = "CKO_SECRET_KEY", CKA_KEY_TYPE = "CKK_DES3"}))
    assert.is_true(migrate.filter("id=0A01")({CKA_ID = "\10\1"}))
    assert.is_true(migrate.filter("")({}))
  end)
  it("names a bad clause", function()
    for spec, want in pairs({["colour=red"] = "unknown filter 'colour'", ["id=xyz"] = "not hex",
                             ["label"] = "not name=value", ["class=key"] = "class=key",
                             ["type=NOPE"] = "type=NOPE is not a PKCS#11 key type"}) do
      local ok, err = pcall(migrate.filter, spec)
      assert.is_false(ok)
      assert.matches(want, err, 1, true)
    end
  end)
end)

describe("migrate plan", function()
  it("gives each object a strategy or a blocker, and writes nothing", function()
    local src <close> = hsm.token(H.new_token("plan-src"))
    local dst <close> = hsm.token(H.new_token("plan-dst"))
    aes(src, "ok", "\1")
    aes(src, "fixed", "\2", {CKA_EXTRACTABLE = false})
    aes(src, "trusted-only", "\3", {CKA_WRAP_WITH_TRUSTED = true})
    assert(src:generate{type = "DES3", label = "des", id = "\4", CKA_EXTRACTABLE = true, CKA_ENCRYPT = true})
    assert(src:generate{type = "RSA", bits = 2048, label = "rsa", id = "\5", CKA_EXTRACTABLE = true})
    local before = migrate.fingerprint(dst)
    local t = transport.new(src, dst, {})
    local plan = migrate.plan(src, dst, {transport = t, fips = true})
    local st = strategies(plan)
    assert.equal("wrap", st["secret-key/01/ok"][1])
    assert.equal("blocked", st["secret-key/02/fixed"][1])
    assert.matches("not extractable.*rotate%-reencrypt", st["secret-key/02/fixed"][2])
    assert.matches("WRAP_WITH_TRUSTED", st["secret-key/03/trusted-only"][2])
    assert.matches("3DES into a FIPS target", st["secret-key/04/des"][2])
    assert.equal("wrap", st["private-key/05/rsa"][1])
    assert.equal("copy", st["public-key/05/rsa"][1])
    t.close()
    assert.equal(before, migrate.fingerprint(dst))
  end)

  it("blocks keys over the destination's capacity", function()
    local src <close> = hsm.token(H.new_token("cap-src"))
    local dst <close> = hsm.token(H.new_token("cap-dst"))
    for i = 1, 3 do aes(src, "k" .. i, string.char(i)) end
    aes(dst, "already", "\9")
    local t = transport.new(src, dst, {})
    local plan = migrate.plan(src, dst, {transport = t, capacity = 3})
    assert.equal(2, plan.counts.wrap)
    assert.equal(1, plan.counts.blocked)
    local reasons = {}
    for _, it in ipairs(plan.items) do reasons[#reasons + 1] = it.reason or "" end
    assert.matches("over capacity: the destination holds at most 3 keys", table.concat(reasons, "|"))
    t.close()
  end)

  it("stops at a conflict before writing anything", function()
    local src <close> = hsm.token(H.new_token("conflict-src"))
    local dst <close> = hsm.token(H.new_token("conflict-dst"))
    aes(src, "same", "\1")
    aes(src, "other", "\2")
    aes(dst, "same", "\1")   -- same class, ID and label, another key
    local t = transport.new(src, dst, {})
    local plan = migrate.plan(src, dst, {transport = t})
    assert.equal(1, plan.conflicts)
    local before = migrate.fingerprint(dst)
    local ok, err = pcall(migrate.apply, plan, {})
    assert.is_false(ok)
    assert.matches("1 conflict", err)
    assert.equal(before, migrate.fingerprint(dst))
    t.close()
  end)

  it("does not copy a second time a key the destination holds under another label", function()
    local src <close> = hsm.token(H.new_token("held-src"))
    local dst <close> = hsm.token(H.new_token("held-dst"))
    aes(src, "app", "\1")
    aes(src, "fresh", "\2")
    local one = {CKA_CLASS = "CKO_SECRET_KEY", CKA_KEY_TYPE = "CKK_AES", CKA_TOKEN = true,
                 CKA_VALUE = ("\7"):rep(32), CKA_EXTRACTABLE = true, CKA_ENCRYPT = true, CKA_DECRYPT = true}
    -- The source holds one key under two names (a legitimate alias): both are copied.
    for i, l in ipairs({"alias-a", "alias-b"}) do
      local t = {CKA_LABEL = l, CKA_ID = string.char(4 + i)}
      for k, v in pairs(one) do t[k] = v end
      assert(src:create(t))
    end
    local t = transport.new(src, dst, {})
    -- The destination already holds app's key, renamed.
    local plan = migrate.plan(src, dst, {transport = t})
    assert(migrate.apply(plan, {}))
    assert(dst:find{CKA_LABEL = "app"}:set{CKA_LABEL = "app-renamed", CKA_ID = "\9"})
    assert(dst:find{CKA_LABEL = "alias-b"}:destroy())
    plan = migrate.plan(src, dst, {transport = t})
    local st = strategies(plan)
    assert.equal("blocked", st["secret-key/01/app"][1])
    assert.matches("holds this key already as secret%-key/09/app%-renamed", st["secret-key/01/app"][2])
    assert.equal("skip", st["secret-key/02/fresh"][1])
    assert.equal("skip", st["secret-key/05/alias-a"][1])
    assert.equal("wrap", st["secret-key/06/alias-b"][1])   -- alias-a's twin is the source's own
    local before = #dst:find_all{CKA_CLASS = "CKO_SECRET_KEY"}
    assert.same({migrated = 1, skipped = 2, blocked = 1, failed = 0}, migrate.apply(plan, {}))
    assert.equal(before + 1, #dst:find_all{CKA_CLASS = "CKO_SECRET_KEY"})
    t.close()
  end)

  it("refuses unsafe or weaker wrapping keys", function()
    local src <close> = hsm.token(H.new_token("unsafe-src"))
    local dst <close> = hsm.token(H.new_token("unsafe-dst"))
    aes(src, "k256", "\1")
    aes(src, "k128", "\2", {bits = 128})
    -- A 128-bit KEK is weaker than an AES-256 payload.
    local t = transport.new(src, dst, {kind = "aes-kwp", kek = shared_kek(src, dst, 16)})
    local st = strategies(migrate.plan(src, dst, {transport = t}))
    assert.matches("128%-bit strength is weaker than the 256%-bit payload", st["secret-key/01/k256"][2])
    assert.equal("wrap", st["secret-key/02/k128"][1])
    -- A KEK that can also decrypt exposes what it wraps.
    local t2 = transport.new(src, dst, {kind = "aes-kwp",
      kek = shared_kek(src, dst, 24, {CKA_DECRYPT = true, CKA_LABEL = "kek24"})})
    st = strategies(migrate.plan(src, dst, {transport = t2}))
    assert.matches("can also decrypt", st["secret-key/02/k128"][2])
    -- RSA-OAEP carries no private key, and a 3072-bit RSA key is weaker than AES-256.
    assert(src:generate{type = "RSA", bits = 2048, label = "rsa", id = "\3", CKA_EXTRACTABLE = true})
    local t3 = transport.new(src, dst, {kind = "rsa-oaep"})
    st = strategies(migrate.plan(src, dst, {transport = t3}))
    assert.matches("cannot carry a private key", st["private-key/03/rsa"][2])
    assert.matches("weaker", st["secret-key/01/k256"][2])
    assert.equal("wrap", st["secret-key/02/k128"][1])
    t3.close()
  end)

  it("names a missing or mismatched KEK", function()
    local src <close> = hsm.token(H.new_token("kek-src"))
    local dst <close> = hsm.token(H.new_token("kek-dst"))
    local ok, err = pcall(transport.new, src, dst, {kind = "aes-kwp", kek = "nope"})
    assert.is_false(ok)
    assert.matches("kek=nope names 0 keys on the source token", err, 1, true)
    for i, s in ipairs({src, dst}) do
      assert(s:create({CKA_CLASS = "CKO_SECRET_KEY", CKA_KEY_TYPE = "CKK_AES", CKA_TOKEN = false,
        CKA_LABEL = "k", CKA_VALUE = string.char(i):rep(32), CKA_WRAP = true, CKA_UNWRAP = true}))
    end
    ok, err = pcall(transport.new, src, dst, {kind = "aes-kwp", kek = "k"})
    assert.is_false(ok)
    assert.matches("the two KEKs differ", err)
  end)
end)

describe("migrate apply", function()
  local function run(src, dst, opts)
    local t = transport.new(src, dst, opts or {})
    local plan = migrate.plan(src, dst, {transport = t})
    local events = {}
    local sum = migrate.apply(plan, {on_item = function(ev) events[ev.ref] = ev end})
    t.close()
    return sum, events
  end

  it("moves keys with their attributes, verifies them and leaves the source as it was", function()
    local src <close> = hsm.token(H.new_token("apply-src"))
    local dst <close> = hsm.token(H.new_token("apply-dst"))
    aes(src, "frozen", "\1", {CKA_MODIFIABLE = false, CKA_SIGN = false, CKA_DERIVE = true})
    assert(src:generate{type = "GENERIC", bits = 256, label = "mac", id = "\2", CKA_EXTRACTABLE = true,
                        CKA_SIGN = true, CKA_VERIFY = true})
    assert(src:generate{type = "EC", curve = "P-256", label = "ec", id = "\3", CKA_EXTRACTABLE = true})
    local before = migrate.fingerprint(src)
    local sum, ev = run(src, dst)
    for _, e in pairs(ev) do assert.is_nil(e.reason, e.ref) end
    assert.same({migrated = 4, skipped = 0, blocked = 0, failed = 0}, sum)
    assert.equal(before, migrate.fingerprint(src))
    assert.matches("encrypted on the source, decrypted on the destination", ev["secret-key/01/frozen"].verified)
    assert.matches("MAC on the source", ev["secret-key/02/mac"].verified)
    assert.matches("signed on the destination, verified with the source public key", ev["private-key/03/ec"].verified)
    -- Every attribute but the ones the token sets itself is as on the source.
    local s1 = src:find({CKA_LABEL = "frozen"})
    local d1 = dst:find({CKA_LABEL = "frozen"})
    assert.is_false(d1.modifiable)
    assert.is_true(d1.derive)
    -- The documented list (README, "Checks"; docs/modules.md for SoftHSM2), written out here
    -- rather than taken from attrs.lua, so that a change there shows as a failure here.
    local MAY_DIFFER = {CKA_LOCAL = true, CKA_ALWAYS_SENSITIVE = true, CKA_NEVER_EXTRACTABLE = true,
                        CKA_UNIQUE_ID = true, CKA_KEY_GEN_MECHANISM = true,
                        CKA_VALUE_LEN = true, CKA_CHECK_VALUE = true}   -- SoftHSM2 after an unwrap
    for _, d in ipairs(attrs.diff(s1:attrs(), d1:attrs())) do
      assert.is_truthy(MAY_DIFFER[d.name], d.name)
    end
    -- ... and the key's event names the differences it has, each one a documented one.
    local differs = ev["secret-key/01/frozen"].differs
    assert.is_string(differs)
    for name in differs:gmatch("[^,]+") do assert.is_truthy(MAY_DIFFER[name:match("^[%w_]+")], name) end
    assert.equal(s1:kcv(), d1:kcv())
    -- Running it again changes nothing.
    local fp = migrate.fingerprint(dst)
    sum = run(src, dst)
    assert.same({migrated = 0, skipped = 4, blocked = 0, failed = 0}, sum)
    assert.equal(fp, migrate.fingerprint(dst))
  end)

  it("moves keys under an operator's KEK with AES-KWP", function()
    local src <close> = hsm.token(H.new_token("kwp-src"))
    local dst <close> = hsm.token(H.new_token("kwp-dst"))
    aes(src, "k128", "\1", {bits = 128})
    local sum, ev = run(src, dst, {kind = "aes-kwp", kek = shared_kek(src, dst, 32)})
    assert.is_nil(ev["secret-key/01/k128"].reason)
    assert.same({migrated = 1, skipped = 0, blocked = 0, failed = 0}, sum)
    assert.equal(src:find({CKA_LABEL = "k128"}):kcv(), dst:find({CKA_LABEL = "k128"}):kcv())
  end)

  -- An AES key of a known value (a test value, never a real key); label and id may be nil.
  local function aes_value(s, value, label, id)
    return assert(s:create{CKA_CLASS = "CKO_SECRET_KEY", CKA_KEY_TYPE = "CKK_AES", CKA_TOKEN = true,
      CKA_LABEL = label, CKA_ID = id, CKA_VALUE = value, CKA_EXTRACTABLE = true,
      CKA_SENSITIVE = true, CKA_ENCRYPT = true, CKA_DECRYPT = true})
  end

  it("removes a key without label or ID only when it holds the key in flight", function()
    local src <close> = hsm.token(H.new_token("stray-src"))
    local dst <close> = hsm.token(H.new_token("stray-dst"))
    local k = aes_value(src, ("\7"):rep(32), "k", "\1")
    -- There before the interrupted run (journaled): kept. Appeared during it: the one holding
    -- the key in flight is removed; another program's (a different key) is left.
    aes_value(dst, ("\8"):rep(32))
    local previous = {{event = "destination", counts = {["secret-key//"] = 1}},
                      {event = "step", ref = "secret-key/01/k", step = "create", check = k:kcv()}}
    local half = aes_value(dst, ("\7"):rep(32))
    local foreign = aes_value(dst, ("\9"):rep(32))
    local t = transport.new(src, dst, {})
    local plan = migrate.plan(src, dst, {transport = t, previous = previous})
    assert.equal(1, #plan.strays)
    assert.equal(half:kcv(), plan.strays[1]:kcv())
    local sum = migrate.apply(plan, {resumed = true})
    t.close()
    assert.equal(1, sum.removed)
    assert.equal(1, sum.migrated)
    local kcvs = {}
    for _, o in ipairs(assert(dst:find_all({CKA_CLASS = "CKO_SECRET_KEY"}))) do kcvs[#kcvs + 1] = o:kcv() end
    table.sort(kcvs)
    assert.equal(3, #kcvs)   -- the one from before, the foreign one, and the migrated k
    local joined = table.concat(kcvs, ",")
    assert.truthy(joined:find(foreign:kcv(), 1, true))
    assert.truthy(joined:find(k:kcv(), 1, true))
  end)

  it("replaces what an interrupted run left only when it holds the key the run journaled", function()
    local src <close> = hsm.token(H.new_token("redo-src"))
    local dst <close> = hsm.token(H.new_token("redo-dst"))
    -- The earlier run was carrying value A (journaled), and died; the source now holds B.
    local a_dst = aes_value(dst, ("\1"):rep(32), "k", "\1")
    local a_kcv = a_dst:kcv()
    local b = aes_value(src, ("\2"):rep(32), "k", "\1")
    local t = transport.new(src, dst, {})
    local previous = {{event = "step", ref = "secret-key/01/k", step = "create", check = a_kcv}}
    local plan = migrate.plan(src, dst, {transport = t, previous = previous})
    assert.equal("wrap", plan.items[1].strategy)
    local sum = migrate.apply(plan, {})
    assert.equal(1, sum.migrated)
    local list = assert(dst:find_all({CKA_LABEL = "k"}))
    assert.equal(1, #list)
    assert.equal(b:kcv(), list[1]:kcv())
    t.close()
  end)

  it("calls an in-flight ref holding another key a conflict, and touches nothing", function()
    local src <close> = hsm.token(H.new_token("foreign-src"))
    local dst <close> = hsm.token(H.new_token("foreign-dst"))
    aes_value(src, ("\2"):rep(32), "k", "\1")
    -- Another program wrote its own key under the in-flight label and ID after the kill.
    local theirs = aes_value(dst, ("\3"):rep(32), "k", "\1")
    local kcv = theirs:kcv()
    local t = transport.new(src, dst, {})
    for _, previous in ipairs({
        {{event = "step", ref = "secret-key/01/k", step = "create", check = "000000"}},
        {{event = "step", ref = "secret-key/01/k", step = "create"}}}) do   -- an older journal
      local plan = migrate.plan(src, dst, {transport = t, previous = previous})
      assert.equal("conflict", plan.items[1].strategy)
      assert.matches("now holds another key", plan.items[1].reason, 1, true)
      assert.has_error(function() migrate.apply(plan, {}) end)
      local list = assert(dst:find_all({CKA_LABEL = "k"}))
      assert.equal(1, #list)
      assert.equal(kcv, list[1]:kcv())
    end
    t.close()
  end)
end)

describe("migrate.clear_ghosts", function()
  it("removes a session object holding a key in flight and leaves any other, and the source's", function()
    local src <close> = hsm.token(H.new_token("ghost-src"))
    local dst <close> = hsm.token(H.new_token("ghost-dst"))
    local function session_key(s, byte)
      return assert(s:create({CKA_CLASS = "CKO_SECRET_KEY", CKA_KEY_TYPE = "CKK_AES", CKA_TOKEN = false,
        CKA_VALUE = string.char(byte):rep(32), CKA_ENCRYPT = true}))
    end
    local ours, foreign = session_key(dst, 1), session_key(dst, 2)
    session_key(src, 1)   -- the same key on the source: never touched
    local check = assert(migrate.check_of(ours, attrs.capture(ours)))
    assert.is_truthy(migrate.check_of(foreign, attrs.capture(foreign)))
    local journal = {}
    local ctx = {previous = {{event = "step", step = "create", ref = "secret-key/01/k", check = check}},
                 journal = function(ev) journal[#journal + 1] = ev end}
    local removed, left = migrate.clear_ghosts(ctx, dst, src)
    assert.equal(1, removed)
    assert.equal(2, left)   -- the foreign one on dst, the one on src
    assert.equal(1, #migrate.ghosts(dst))
    assert.equal(1, #migrate.ghosts(src))
    assert.equal("destroy-ghost", journal[1].step)
    -- a finished ref is no longer in flight: nothing is proven ours then
    ctx.previous[2] = {event = "step", step = "done", ref = "secret-key/01/k"}
    session_key(dst, 1)
    removed, left = migrate.clear_ghosts(ctx, dst, src)
    assert.equal(0, removed)
    assert.equal(3, left)
  end)
end)
