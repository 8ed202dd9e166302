-- The C core and bindings against a real SoftHSM2 token.
local hsm = require("hsm")
local core = require("hsm.core")
local H = require("spec.helper")

describe("names", function()
  it("maps both ways and accepts short forms", function()
    assert.equal("CKA_LABEL", core.name("CKA", "label"))
    assert.equal(3, core.value("CKA", "CKA_LABEL"))
    assert.equal("CKM_AES_KEY_GEN", core.name("CKM", 0x1080))
    assert.is_nil(core.value("CKA", "no_such_attribute"))
  end)
end)

describe("token by URI", function()
  local uri, label = H.new_token("core")

  it("opens and logs in", function()
    local s = hsm.token(uri)
    assert.equal("rw-user", s:info().state)
    s:close()
  end)

  it("rejects a malformed URI naming the bad part", function()
    local ok, err = pcall(hsm.token, "pkcs11:tokn=x")
    assert.is_false(ok)
    assert.matches("tokn", err)
  end)

  it("names an unknown token and lists the known ones", function()
    local ok, err = pcall(hsm.token, "pkcs11:token=nope?pin-value=1")
    assert.is_false(ok)
    assert.matches("no token matches", err)
    assert.matches(label, err, 1, true)
  end)

  it("reports a wrong PIN without the PIN", function()
    local ok, err = pcall(hsm.token, ("pkcs11:token=%s?pin-value=999999"):format(label))
    assert.is_false(ok)
    assert.matches("CKR_PIN_INCORRECT", err)
    assert.not_matches("999999", err)
  end)

  it("generates keys, reads attributes, computes a KCV that matches a software AES", function()
    local s <close> = hsm.token(uri)
    local k = assert(s:generate_key("CKM_AES_KEY_GEN", {CKA_TOKEN = false, CKA_VALUE_LEN = 32,
      CKA_LABEL = "k1", CKA_ENCRYPT = true, CKA_DECRYPT = true, CKA_EXTRACTABLE = true}))
    assert.equal("k1", k.label)
    assert.equal("CKO_SECRET_KEY", k.class)
    assert.equal(32, k.value_len)
    local a = k:attrs()
    assert.is_nil(a.CKA_VALUE)              -- key material is never read
    assert.is_true(a.CKA_ENCRYPT)
    assert.equal(6, #k:kcv())
    local c = assert(s:encrypt("CKM_AES_ECB", k, ("\0"):rep(16)))
    assert.equal(hsm.hex(c:sub(1, 3)), k:kcv())
    assert.equal(("x"):rep(16), s:decrypt("CKM_AES_ECB", k, s:encrypt("CKM_AES_ECB", k, ("x"):rep(16))))
  end)

  it("refuses to read key material even of a non-sensitive key", function()
    local s <close> = hsm.token(uri)
    local k = assert(s:generate_key("CKM_AES_KEY_GEN", {CKA_TOKEN = false, CKA_VALUE_LEN = 16,
      CKA_SENSITIVE = false, CKA_EXTRACTABLE = true}))
    local v, why = k:get("CKA_VALUE")
    assert.is_nil(v)
    assert.equal("CKR_ATTRIBUTE_SENSITIVE", why)
  end)

  it("signs with a key pair and verifies; fingerprints of both halves agree", function()
    local s <close> = hsm.token(uri)
    local pub, priv = assert(s:generate_key_pair("CKM_EC_KEY_PAIR_GEN",
      {CKA_TOKEN = false, CKA_EC_PARAMS = "\6\8\42\134\72\206\61\3\1\7", CKA_VERIFY = true},
      {CKA_TOKEN = false, CKA_SIGN = true}))
    local digest = assert(s:digest("CKM_SHA256", "hello"))
    local sig = assert(s:sign("CKM_ECDSA", priv, digest))
    assert.is_true(s:verify("CKM_ECDSA", pub, digest, sig))
    assert.is_false(s:verify("CKM_ECDSA", pub, digest, sig:reverse()))
    assert.equal(64, #pub:fingerprint())
  end)

  it("raises on misuse: unknown attribute, wrong value type, use after close", function()
    local s = hsm.token(uri)
    assert.has_error(function() s:create({lable = "x"}) end, "unknown attribute 'lable'")
    assert.has_error(function() s:create({CKA_TOKEN = "yes"}) end)
    assert(s:create{CKA_CLASS = "CKO_DATA", CKA_TOKEN = false, CKA_LABEL = "held"})
    local objs = assert(s:objects())
    assert.is_truthy(objs[1])
    s:close()
    assert.has_error(function() s:info() end, "session is closed")
    assert.has_error(function() return objs[1].label end, "session is closed")
  end)

  it("enumerates each created object exactly once", function()
    local s <close> = hsm.token(uri)
    local before = #assert(s:objects())
    for i = 1, 5 do
      assert(s:create({CKA_CLASS = "CKO_DATA", CKA_TOKEN = true, CKA_LABEL = "d" .. i, CKA_VALUE = "v"}))
    end
    assert.equal(before + 5, #assert(s:objects()))
    assert.equal(1, #assert(s:objects({CKA_LABEL = "d3"})))
  end)
end)

describe("secrets", function()
  it("print as <secret>", function()
    local sec = core.secret("1234")
    assert.equal("<secret>", tostring(sec))
    assert.equal(4, sec:len())
    sec:close()
    assert.has_error(function() sec:len() end, "secret is closed")
  end)
end)

describe("embedded stdlib and recipes", function()
  it("every module and recipe loads", function()
    local recipe = require("hsm.recipe")
    for _, path in ipairs(require("hsm.embedded").list()) do
      local mod = path:match("^stdlib/(.+)%.lua$")
      if mod then
        mod = mod:gsub("/init$", ""):gsub("/", ".")
        assert.is_truthy(require(mod), mod)
      end
    end
    local list = recipe.list()
    assert.is_true(#list >= 1)
    for _, r in ipairs(list) do
      local rec = recipe.load(r)
      assert.equal(r.id, rec.id)
      assert.is_table(rec.phases)
    end
  end)
end)

describe("module", function()
  it("lists slots, token info and mechanisms with flags and key sizes", function()
    local uri, label = H.new_token("mod")
    local s <close> = hsm.token(uri)
    local m = s:module()
    local ti = assert(m:token_info(s:slot()))
    assert.equal(label, ti.label)
    assert.is_true(ti.flags.CKF_TOKEN_INITIALIZED)
    local found
    for _, mech in ipairs(assert(m:mechanisms(s:slot()))) do
      if mech.name == "CKM_AES_KEY_GEN" then found = mech end
    end
    assert.is_table(found)
    assert.equal(16, found.min)
    assert.equal(32, found.max)
    assert.is_true(found.flags.CKF_GENERATE)
    assert.is_true(#assert(m:slots()) >= 1)
  end)

  it("objects() is both a list and an iterator", function()
    local uri = H.new_token("iter")
    local s <close> = hsm.token(uri)
    for i = 1, 3 do s:generate{type = "AES", label = "k" .. i} end
    local n = 0
    for o in s:objects() do n = n + 1; assert.equal("CKO_SECRET_KEY", o.class) end
    assert.equal(3, n)
    assert.equal(3, #s:objects())
  end)
end)

describe("context-specific login", function()
  it("signs with a CKA_ALWAYS_AUTHENTICATE key only with the PIN given to the operation", function()
    local uri = H.new_token("ctx")
    local s <close> = hsm.token(uri)
    local pub, priv = s:generate{type = "EC", token = false, CKA_ALWAYS_AUTHENTICATE = true}
    local digest = ("a"):rep(32)
    local sig, err = s:sign("CKM_ECDSA", priv, digest)
    assert.is_nil(sig)
    assert.matches("CKR_USER_NOT_LOGGED_IN", err)
    local wrong, werr = s:sign("CKM_ECDSA", priv, digest, core.secret("0000"))
    assert.is_nil(wrong)
    assert.matches("C_Login: CKR_PIN_INCORRECT", werr)
    sig = assert(s:sign("CKM_ECDSA", priv, digest, core.secret(H.pin)))
    assert.is_true(s:verify("CKM_ECDSA", pub, digest, sig))
  end)
end)
