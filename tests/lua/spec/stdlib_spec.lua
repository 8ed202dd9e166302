-- The stdlib on a real SoftHSM2 token: generate{}, object URIs, the lab, inventory rows.
local hsm = require("hsm")
local core = require("hsm.core")
local ui = require("hsm.ui")
local H = require("spec.helper")

describe("session:generate", function()
  local uri = H.new_token("gen")

  it("makes AES, DES3, RSA, EC and Ed25519 keys", function()
    local s <close> = hsm.token(uri)
    local aes = s:generate{type = "AES", bits = 128, token = false, CKA_ENCRYPT = true}
    assert.equal(16, aes.value_len)
    assert.equal("CKK_DES3", s:generate{type = "DES3", token = false}.key_type)
    local pub = s:generate{type = "RSA", bits = 2048, token = false}
    assert.equal(256, #pub.modulus)
    for curve, bits in pairs({["P-256"] = 256, ["P-384"] = 384, ["P-521"] = 521}) do
      local p = s:generate{type = "EC", curve = curve, token = false}
      assert.equal(bits, p:describe().bits)
    end
    local ed = s:generate{type = "Ed25519", token = false}
    assert.equal("CKK_EC_EDWARDS", ed.key_type)
    assert.has_error(function() s:generate{type = "EC", curve = "P-999"} end)
    assert.has_error(function() s:generate{type = "ROT13"} end)
  end)
end)

describe("object URIs", function()
  local uri, label = H.new_token("obj")
  local s = hsm.token(uri)
  s:generate{type = "AES", label = "twin", id = "\1"}
  s:generate{type = "AES", label = "twin", id = "\2"}
  s:close()

  it("an ambiguous URI is an error, never the first match", function()
    local ok, err = pcall(hsm.object, ("pkcs11:token=%s;object=twin?pin-value=%s"):format(label, H.pin))
    assert.is_false(ok)
    assert.matches("names 2 objects", err)
  end)

  it("id= picks exactly one", function()
    local o = hsm.object(("pkcs11:token=%s;object=twin;id=%%02?pin-value=%s"):format(label, H.pin))
    assert.equal("\2", o.id)
  end)

  it("no match is an error", function()
    local ok, err = pcall(hsm.object, ("pkcs11:token=%s;object=none?pin-value=%s"):format(label, H.pin))
    assert.is_false(ok)
    assert.matches("names 0 objects", err)
  end)
end)

describe("lab", function()
  it("fills a token with the documented mix and certificates that verify", function()
    local lab = require("hsm.lab")
    local uri = H.new_token("lab")
    local s <close> = hsm.token(uri)
    lab.fill_blue(s)
    local rows = ui.object_rows(assert(s:objects()))
    local count = {}
    for _, r in ipairs(rows) do count[r.class] = (count[r.class] or 0) + 1 end
    assert.equal(9, count["secret-key"])
    assert.equal(5, count["private-key"])
    assert.equal(5, count["public-key"])
    assert.equal(5, count["certificate"])
    assert.equal(1, count["data"])
    -- every key pair: public key, private key and certificate share one fingerprint
    local fp = {}
    for _, r in ipairs(rows) do
      if r.class ~= "secret-key" and r.class ~= "data" then
        assert.is_string(r.fingerprint, r.label)
        fp[r.id] = fp[r.id] or r.fingerprint
        assert.equal(fp[r.id], r.fingerprint, r.label)
      end
    end
    local cert = s:find{class = "CKO_CERTIFICATE", label = "rsa-2048"}
    assert.equal("CN=rsa-2048", core.cert_info(cert.value).subject)
  end)
end)

describe("recipe runner", function()
  local recipe = require("hsm.recipe")

  it("journals id, version, sha256 and params, never the PIN", function()
    local uri = H.new_token("jrnl")
    local path = os.tmpname()
    local rec = recipe.load(recipe.find("generic/inventory"))
    local status = recipe.run(rec, {params = recipe.params(rec, {token = uri}), journal = path,
                                    json = true})
    assert.equal(0, status)
    local text = assert(io.open(path)):read("a")
    os.remove(path)
    assert.matches('"recipe":"generic/inventory"', text, 1, true)
    assert.matches('"sha256":"' .. rec.sha256, text, 1, true)
    assert.matches('"event":"end","status":0', text, 1, true)
    assert.not_matches("pin%-value", text)
    assert.not_matches(H.pin, text, 1, true)
  end)

  it("rejects unknown and missing parameters by name", function()
    local rec = recipe.load(recipe.find("generic/inventory"))
    assert.has_error(function() recipe.params(rec, {tokn = "x"}) end)
    local ok, err = pcall(recipe.params, rec, {})
    assert.is_false(ok)
    assert.matches("missing parameter token", err)
  end)

  it("rolls back applied phases in reverse and exits 3, or 4 when a rollback fails", function()
    local order = {}
    local rec = {id = "t", version = "1.0.0", params = {}, phases = {
      {name = "a", apply = function() order[#order + 1] = "apply a" end,
       rollback = function() order[#order + 1] = "rollback a" end},
      {name = "b", apply = function() error("b failed", 0) end,
       rollback = function() order[#order + 1] = "rollback b" end},
    }}
    assert.equal(3, recipe.run(rec, {params = {}, json = true}))
    assert.same({"apply a", "rollback b", "rollback a"}, order)
    rec.phases[1].rollback = function() error("stuck", 0) end
    assert.equal(4, recipe.run(rec, {params = {}, json = true}))
  end)
end)
