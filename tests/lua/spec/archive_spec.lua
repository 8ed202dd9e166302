-- hsm.archive on real SoftHSM2 tokens: keys from custodian components (seed 000's own
-- values), backup and restore with attributes and verification, and every bit flip and every
-- truncation of a small archive refused before the first token write.
local hsm = require("hsm")
local core = require("hsm.core")
local archive = require("hsm.archive")
local migrate = require("hsm.migrate")
local H = require("spec.helper")

local work = assert(os.getenv("HSMSH_TEST_WORK"))
local C1 = "0832240A34365AEB8273A6535EF80FA99CB5FCE8D2A19EE1977CB8D664F86968"
local C2 = "263FF91EE9C7A5ECC58AFFA35B4F6A5443F0DA3B5ABE60FB45260AEA8C9458F7"

local function comps() return {assert(core.secret(C1):from_hex()), assert(core.secret(C2):from_hex())} end
local function readfile(p) local f = assert(io.open(p, "rb")); local d = f:read("a"); f:close(); return d end
local function writefile(p, d) local f = assert(io.open(p, "wb")); f:write(d); f:close() end

describe("keys from custodian components", function()
  local uri = H.new_token("comp")

  it("reproduces the KCVs of ProtectServer's ctkmu example (seed 000)", function()
    local s <close> = hsm.token(uri)
    local c = comps()
    assert.equal("9c1884", archive.component_kcv(s, c[1]))
    assert.equal("62a639", archive.component_kcv(s, c[2]))
    local key, kcv = archive.key_from_components(s, c, {attrs = {CKA_ENCRYPT = true}})
    assert.equal("97498b", kcv)
    assert.is_true(key.wrap)
    assert.is_false(key.extractable)
    assert.equal("<secret>", tostring(c[1]))
  end)

  it("refuses components of different lengths or that are not hex, without echoing them", function()
    local s <close> = hsm.token(uri)
    local ok, err = pcall(archive.key_from_components, s, {assert(core.secret(C1):from_hex()),
      assert(core.secret(C1:sub(1, 32)):from_hex())})
    assert.is_false(ok)
    assert.matches("component 2 is 16 bytes, component 1 is 32", err)
    writefile(work .. "/comp-bad", "0832240A34365AEB8273A6535EF80FA99CB5FCE8D2A19EE1977CB8D664F8696Z\n")
    ok, err = pcall(archive.read_components, s, {"file:" .. work .. "/comp-bad"}, function() return true end)
    assert.is_false(ok)
    assert.matches("component 1 is not hexadecimal", err)
    assert.not_matches("0832", err)
    writefile(work .. "/comp-ok", C1 .. "\n")
    ok, err = pcall(archive.read_components, s, {"file:" .. work .. "/comp-ok"}, function() return false end)
    assert.is_false(ok)
    assert.matches("component 1 %(KCV 9c1884%) was not confirmed", err)
  end)
end)

describe("archive backup and restore", function()
  it("restores every object with its attributes, and only once", function()
    local src <close> = hsm.token(H.new_token("arc-src"))
    local dst <close> = hsm.token(H.new_token("arc-dst"))
    assert(src:generate{type = "AES", bits = 256, label = "a", id = "\1", CKA_EXTRACTABLE = true,
                        CKA_ENCRYPT = true, CKA_DECRYPT = true})
    assert(src:generate{type = "DES3", label = "d", id = "\2", CKA_EXTRACTABLE = true, CKA_ENCRYPT = true,
                        CKA_DECRYPT = true})
    assert(src:generate{type = "RSA", bits = 2048, label = "r", id = "\3", CKA_EXTRACTABLE = true})
    assert(src:generate{type = "AES", bits = 128, label = "fixed", id = "\4"})
    assert(src:create{CKA_CLASS = "CKO_DATA", CKA_TOKEN = true, CKA_LABEL = "cfg", CKA_VALUE = "x=1"})
    local path = work .. "/arc1"
    local key = archive.key_from_components(src, comps())
    local sum = archive.backup(src, key, path)
    assert.same({objects = 6, keys = 3, blocked = 1}, sum)
    local dkey = archive.key_from_components(dst, comps())
    local a = archive.open(dst, dkey, path)
    assert.equal(6, a.header.objects)
    local plan = archive.plan(dst, dkey, a)
    local result = migrate.apply(plan, {})
    assert.same({migrated = 5, skipped = 0, blocked = 1, failed = 0}, result)
    for _, label in ipairs({"a", "d"}) do
      assert.equal(src:find({CKA_LABEL = label}):kcv(), dst:find({CKA_LABEL = label}):kcv())
    end
    assert.equal(src:find({CKA_LABEL = "r", CKA_CLASS = "CKO_PUBLIC_KEY"}):fingerprint(),
                 dst:find({CKA_LABEL = "r", CKA_CLASS = "CKO_PUBLIC_KEY"}):fingerprint())
    assert.equal("x=1", dst:find({CKA_LABEL = "cfg"}).value)
    -- Again: everything is there already.
    result = migrate.apply(archive.plan(dst, dkey, archive.open(dst, dkey, path)), {})
    assert.same({migrated = 0, skipped = 5, blocked = 1, failed = 0}, result)
  end)

  it("proves a key that only wraps by a probe it wrapped, and refuses another key in its place", function()
    -- SoftHSM2 records no check value for an unwrapped key, and a key that may only wrap
    -- and unwrap (a KEK, an SKS master key) has no KCV: the archive carries a probe key
    -- wrapped under it at the source, which the restored key must unwrap.
    local src <close> = hsm.token(H.new_token("arc-w-src"))
    assert(src:generate{type = "AES", bits = 256, label = "kek", id = "\9", CKA_EXTRACTABLE = true,
                        CKA_WRAP = true, CKA_UNWRAP = true, CKA_ENCRYPT = false, CKA_DECRYPT = false,
                        CKA_SIGN = false, CKA_VERIFY = false})
    local path = work .. "/arc-wrap"
    archive.backup(src, archive.key_from_components(src, comps()), path)
    local function plan_on(dst)
      local dkey = archive.key_from_components(dst, comps())
      return archive.plan(dst, dkey, archive.open(dst, dkey, path))
    end
    local dst <close> = hsm.token(H.new_token("arc-w-dst"))
    local how
    local result = migrate.apply(plan_on(dst), {on_item = function(ev) how = ev.verified end})
    assert.same({migrated = 1, skipped = 0, blocked = 0, failed = 0}, result)
    assert.equal("unwrapped on the destination a probe key the source wrapped", how)
    assert.equal("", dst:find{CKA_LABEL = "kek"}:get("CKA_CHECK_VALUE") or "")  -- none recorded
    -- A token already holding another wrap-only key under that class, ID and label, with no
    -- check value either (unwrapped there): the restore cannot prove it the same key, and
    -- leaves it.
    local other <close> = hsm.token(H.new_token("arc-w-other"))
    local w = assert(other:generate{type = "AES", bits = 256, token = false, CKA_WRAP = true, CKA_UNWRAP = true})
    local k = assert(other:generate{type = "AES", bits = 256, token = false, CKA_EXTRACTABLE = true})
    assert(other:unwrap("CKM_AES_KEY_WRAP_PAD", w, assert(other:wrap("CKM_AES_KEY_WRAP_PAD", w, k)),
      {CKA_CLASS = "CKO_SECRET_KEY", CKA_KEY_TYPE = "CKK_AES", CKA_TOKEN = true, CKA_LABEL = "kek",
       CKA_ID = "\9", CKA_WRAP = true, CKA_UNWRAP = true, CKA_ENCRYPT = false, CKA_DECRYPT = false}))
    local plan = plan_on(other)
    assert.equal("conflict", plan.items[1].strategy)
    assert.matches("cannot be proven to hold the same key", plan.items[1].reason)
    assert.has_error(function() migrate.apply(plan, {}) end)
    assert.equal(1, #other:find_all{CKA_LABEL = "kek"})
  end)

  it("refuses another key before writing", function()
    local src <close> = hsm.token(H.new_token("arc-k1"))
    assert(src:generate{type = "AES", bits = 128, label = "a", CKA_EXTRACTABLE = true})
    local path = work .. "/arc2"
    archive.backup(src, archive.key_from_components(src, comps()), path)
    local other = {assert(core.secret(C1):from_hex()), assert(core.secret(C1):from_hex())}
    local wrong = archive.key_from_components(src, other)
    local ok, err = pcall(archive.open, src, wrong, path)
    assert.is_false(ok)
    assert.matches("made with the key of KCV 97498b", err)
  end)

  it("refuses every single-bit flip and every truncation before any write", function()
    local s <close> = hsm.token(H.new_token("arc-flip"))
    assert(s:generate{type = "AES", bits = 128, label = "k", id = "\1", CKA_EXTRACTABLE = true})
    local key = archive.key_from_components(s, comps())
    local path = work .. "/arc3"
    archive.backup(s, key, path)
    local good = readfile(path)
    local before = migrate.fingerprint(s)
    local bad = work .. "/arc3-bad"
    local refused, n = 0, 0
    local function try(bytes)
      n = n + 1
      writefile(bad, bytes)
      local ok, err = pcall(archive.open, s, key, bad)
      if not ok and type(err) == "string" and err:find("^archive ") then refused = refused + 1 end
    end
    for i = 1, #good do
      local b = good:byte(i)
      for bit = 0, 7 do
        try(good:sub(1, i - 1) .. string.char(b ~ (1 << bit)) .. good:sub(i + 1))
      end
    end
    for len = 0, #good - 1 do try(good:sub(1, len)) end
    try(good .. "\0")
    assert.equal(n, refused)
    assert.equal(#good * 9 + 1, n)
    assert.equal(before, migrate.fingerprint(s))   -- nothing was written by any attempt
    assert.truthy(archive.open(s, key, path))      -- and the original still opens
  end)
end)
