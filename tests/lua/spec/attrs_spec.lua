-- hsm.attrs, the attribute model across modules (issue 11): what an object implies is filled
-- in, an absent attribute compares as its PKCS#11 default, a derived attribute one module
-- does not compute is no difference, and a destination's unsupported attribute is left out
-- only when it holds its default.
local hsm = require("hsm")
local core = require("hsm.core")
local keys = require("hsm.keys")
local attrs = require("hsm.attrs")
local H = require("spec.helper")

local function names(diffs)
  local out = {}
  for _, d in ipairs(diffs) do out[#out + 1] = d.name end
  return table.concat(out, ",")
end

describe("hsm.attrs", function()
  local uri = H.new_token("attrs")

  it("fills a certificate's subject, issuer and serial from its DER, never back to empty", function()
    local s <close> = hsm.token(uri)
    local pub, priv = s:generate{type = "EC", curve = "P-256", token = false, CKA_SIGN = true}
    local der = assert(core.self_signed_cert(priv, keys.spki(pub), "attrs-cert", 30))
    local info = assert(core.cert_info(der))
    local bare = {CKA_CLASS = "CKO_CERTIFICATE", CKA_VALUE = der, CKA_ISSUER = "", CKA_SERIAL_NUMBER = ""}
    local full = attrs.completed(bare)
    assert.equal(info.issuer_der, full.CKA_ISSUER)
    assert.equal(info.subject_der, full.CKA_SUBJECT)
    -- DER INTEGER: tag 2, length, the serial's bytes (a leading 0 when the top bit is set)
    local serial = core.unhex(info.serial)
    if serial:byte(1) >= 0x80 then serial = "\0" .. serial end
    assert.equal("\2" .. string.char(#serial) .. serial, full.CKA_SERIAL_NUMBER)
    assert.equal("", bare.CKA_ISSUER)   -- the input is untouched
    -- the create template carries them; the source's empties are no difference
    local t = attrs.template(bare, "create")
    assert.equal(info.issuer_der, t.CKA_ISSUER)
    assert.equal("", names(attrs.diff(bare, full)))
    -- a different issuer on the destination is one
    local other = attrs.completed(bare)
    other.CKA_ISSUER = info.issuer_der .. "x"
    assert.equal("CKA_ISSUER", names(attrs.diff(bare, other)))
  end)

  it("compares absent attributes as their defaults, sets as sets, bits from the modulus", function()
    -- NSS has no CKA_DERIVE on some keys: absent is false, true is a difference
    assert.equal("", names(attrs.diff({CKA_CLASS = "CKO_SECRET_KEY"}, {CKA_CLASS = "CKO_SECRET_KEY", CKA_DERIVE = false})))
    assert.equal("CKA_DERIVE", names(attrs.diff({CKA_CLASS = "CKO_SECRET_KEY"}, {CKA_CLASS = "CKO_SECRET_KEY", CKA_DERIVE = true})))
    assert.equal("", names(attrs.diff({CKA_NAME_HASH_ALGORITHM = "CKM_SHA_1"}, {})))
    -- CKA_ALLOWED_MECHANISMS in another order is the same set; another set is not
    local a = {CKA_ALLOWED_MECHANISMS = {"CKM_RSA_PKCS", "CKM_SHA256_RSA_PKCS"}}
    assert.equal("", names(attrs.diff(a, {CKA_ALLOWED_MECHANISMS = {"CKM_SHA256_RSA_PKCS", "CKM_RSA_PKCS"}})))
    assert.equal("CKA_ALLOWED_MECHANISMS", names(attrs.diff(a, {CKA_ALLOWED_MECHANISMS = {"CKM_RSA_PKCS"}})))
    -- a module that records no CKA_MODULUS_BITS: bits from the modulus (its top bit counts)
    assert.equal(2047, attrs.completed({CKA_MODULUS = "\x7f" .. ("\0"):rep(255)}).CKA_MODULUS_BITS)
    assert.equal("", names(attrs.diff({CKA_MODULUS = "\x80\0", CKA_MODULUS_BITS = 16}, {CKA_MODULUS = "\x80\0"})))
    assert.equal("CKA_MODULUS_BITS", names(attrs.diff({CKA_MODULUS = "\x80\0", CKA_MODULUS_BITS = 15}, {CKA_MODULUS = "\x80\0"})))
    -- a derived attribute one side does not compute is none; two values that differ are
    assert.equal("", names(attrs.diff({CKA_CHECK_VALUE = "\1\2\3"}, {})))
    assert.equal("CKA_CHECK_VALUE", names(attrs.diff({CKA_CHECK_VALUE = "\1\2\3"}, {CKA_CHECK_VALUE = "\1\2\4"})))
  end)

  it("leaves out an unsupported attribute only when it holds its default", function()
    local q = {name = "m", unsupported = {CKA_COPYABLE = "CKR_GENERAL_ERROR"}}
    local t = attrs.template({CKA_CLASS = "CKO_SECRET_KEY", CKA_COPYABLE = true, CKA_LABEL = "k"}, "unwrap", q)
    assert.is_nil(t.CKA_COPYABLE)
    assert.equal("k", t.CKA_LABEL)
    local ok, err = pcall(attrs.template, {CKA_CLASS = "CKO_SECRET_KEY", CKA_COPYABLE = false}, "unwrap", q)
    assert.is_false(ok)
    assert.matches("cannot record CKA_COPYABLE=false", err, 1, true)
  end)
end)
