-- Custodian schemes through the binding (lua/l_custody.c): split, share files, combine.
-- Shares and secrets are hsm.Secret throughout; messages name the share by its index.
local hsm = require("hsm")
local core = require("hsm.core")
local H = require("spec.helper")

local function key32()
  local t = {}
  for i = 1, 32 do t[i] = string.char((i * 37 + 11) % 256) end
  return core.secret(table.concat(t))
end

local function pick(list, ...)
  local out = {}
  for _, i in ipairs({...}) do out[#out + 1] = list[i] end
  return out
end

describe("core.split", function()
  it("splits 3-of-5 into hsm.Secret shares, any 3 of which combine", function()
    local secret = key32()
    local shares, set_id, set_check = core.split(secret, "shamir", 3, 5)
    assert.equal(5, #shares)
    assert.equal(16, #set_id)
    assert.equal(8, #set_check)
    for i, s in ipairs(shares) do
      assert.equal(i, s.index)
      assert.equal("<secret>", tostring(s.share))
      assert.equal(32, s.share:len())
      assert.equal("shamir", s.scheme)
      assert.equal(3, s.threshold)
      assert.equal(5, s.count)
      assert.equal(set_id, s.set_id)
      assert.equal(set_check, s.set_check)
    end
    for _, sub in ipairs({{1, 2, 3}, {5, 3, 1}, {2, 4, 5}, {1, 2, 3, 4, 5}}) do
      local rec, err = core.combine(pick(shares, table.unpack(sub)))
      assert.is_nil(err)
      assert.equal("<secret>", tostring(rec))
      assert.is_true(core.secret_equal(rec, secret))
    end
  end)

  it("splits M-of-M by XOR; every share is needed", function()
    local secret = key32()
    local shares = core.split(secret, "xor", nil, 3)
    assert.equal(3, #shares)
    assert.equal(3, shares[1].threshold)
    assert.is_true(core.secret_equal(assert(core.combine(shares)), secret))
    local rec, err = core.combine(pick(shares, 1, 3))
    assert.is_nil(rec)
    assert.equal("2 shares given, the set needs 3", err)
  end)

  it("takes randomness from a function or from a token's C_GenerateRandom", function()
    local secret = key32()
    -- All-zero XOR shares leave the secret itself as the last share: the rng was used.
    local zeros = function(n) return core.secret(("\0"):rep(n)) end
    local shares = core.split(secret, "xor", 2, 2, zeros)
    assert.is_true(core.secret_equal(shares[2].share, secret))

    local s <close> = hsm.token((H.new_token("custody")))
    shares = core.split(secret, "shamir", 2, 3, s)
    assert.is_true(core.secret_equal(assert(core.combine(pick(shares, 3, 1))), secret))
    shares = core.split(secret, "shamir", 2, 3, function(n) return s:random_secret(n) end)
    assert.is_true(core.secret_equal(assert(core.combine(pick(shares, 2, 3))), secret))
  end)

  it("splits a copy: an rng function that closes the secret changes nothing", function()
    local secret = key32()
    local shares = core.split(secret, "xor", 2, 2, function(n)
      secret:close()
      return core.secret(("\0"):rep(n))
    end)
    assert.is_true(core.secret_equal(shares[2].share, key32()))
  end)

  it("reports a failing rng and raises on misuse", function()
    local secret = key32()
    local r, err = core.split(secret, "shamir", 2, 3, function() error("no entropy", 0) end)
    assert.is_nil(r)
    assert.equal("rng: no entropy", err)
    r, err = core.split(secret, "shamir", 2, 3, function() return "short" end)
    assert.is_nil(r)
    assert.matches("rng: asked for %d+ random bytes", err)
    assert.has_error(function() core.split("a string", "xor", 2, 2) end)
    assert.has_error(function() core.split(secret, "sss", 2, 3) end)
    assert.has_error(function() core.split(secret, "shamir", 3, 3) end,
      "split: Shamir needs 2 <= threshold < count: threshold 3, count 3")
    assert.has_error(function() core.split(secret, "xor", 2, 3) end)
  end)
end)

-- The bytes of an encoded share file (an hsm.Secret), read back as a custodian's file would be.
local nfile = 0
local function raw(sec)
  nfile = nfile + 1
  local path = ("%s/share-%d"):format(assert(os.getenv("HSMSH_TEST_WORK")), nfile)
  assert(sec:write(path))
  local f = assert(io.open(path, "rb"))
  local d = f:read("a")
  f:close()
  return d
end

describe("share files", function()
  it("round-trip without a passphrase", function()
    local secret = key32()
    local shares = core.split(secret, "shamir", 2, 3)
    local bytes = raw(assert(core.share_encode(shares[2])))
    assert.equal("HSMSHARE", bytes:sub(1, 8))
    local d = assert(core.share_decode(bytes))
    assert.equal("shamir", d.scheme)
    assert.equal(2, d.index)
    assert.equal(2, d.threshold)
    assert.equal(3, d.count)
    assert.equal(shares[1].set_id, d.set_id)
    assert.equal(shares[1].set_check, d.set_check)
    assert.equal(16, #d.check)
    assert.is_false(d.protected)
    assert.equal("<secret>", tostring(d.share))
    assert.is_true(core.secret_equal(d.share, shares[2].share))
    local d3 = assert(core.share_decode(core.share_encode(shares[3])))
    assert.is_true(core.secret_equal(assert(core.combine({d, d3})), secret))
  end)

  it("round-trip with a passphrase, which is asked for and checked", function()
    local secret = key32()
    local shares = core.split(secret, "xor", 2, 2)
    local pw = core.secret("custodian one")
    local e = {}
    for k, v in pairs(shares[1]) do e[k] = v end
    e.passphrase = pw
    local bytes = assert(core.share_encode(e))
    local d, err, code = core.share_decode(bytes)
    assert.is_nil(d)
    assert.equal("share 1 is passphrase-protected: give its passphrase", err)
    assert.equal("passphrase", code)
    d, err, code = core.share_decode(bytes, core.secret("custodian two"))
    assert.is_nil(d)
    assert.equal("share 1: wrong passphrase (or altered share)", err)
    assert.equal("wrong-passphrase", code)
    d = assert(core.share_decode(bytes, pw))
    assert.is_true(d.protected)
    local d2 = assert(core.share_decode(core.share_encode(shares[2])))
    assert.is_true(core.secret_equal(assert(core.combine({d2, d})), secret))
    -- A file's bytes may come in as a string too.
    assert.is_true(assert(core.share_decode(raw(bytes), pw)).protected)
  end)

  it("refuses altered and truncated files", function()
    local shares = core.split(key32(), "shamir", 2, 3)
    local bytes = raw(core.share_encode(shares[1]))
    local flipped = bytes:sub(1, 49) .. string.char(bytes:byte(50) ~ 1) .. bytes:sub(51)
    local d, err = core.share_decode(flipped)
    assert.is_nil(d)
    assert.equal("share file: altered (check value mismatch)", err)
    d, err = core.share_decode(bytes:sub(1, -2))
    assert.is_nil(d)
    assert.matches("share file: truncated %(%d+ bytes, expected %d+%)", err)
    d, err = core.share_decode("not a share file at all")
    assert.is_nil(d)
    assert.equal("share file: bad magic", err)
  end)
end)

describe("core.combine", function()
  it("names the share at fault", function()
    local secret = key32()
    local a = core.split(secret, "shamir", 3, 5)
    local b = core.split(secret, "shamir", 3, 5)
    local r, err = core.combine({a[1], a[2], b[4]})
    assert.is_nil(r)
    assert.equal("share 4 is from another share set", err)
    r, err = core.combine({a[1], a[2], a[1]})
    assert.is_nil(r)
    assert.equal("share index 1 given twice", err)
    r, err = core.combine({a[1], a[2]})
    assert.is_nil(r)
    assert.equal("2 shares given, the set needs 3", err)
    local zero = {}
    for k, v in pairs(a[3]) do zero[k] = v end
    zero.index = 0
    r, err = core.combine({a[1], a[2], zero})
    assert.is_nil(r)
    assert.matches("share index 0 is not a share", err)
    -- Shares that belong together but do not combine to the secret (one swapped for a share
    -- of another secret with a forged set): the set check value catches it.
    local forged = {}
    for k, v in pairs(b[3]) do forged[k] = v end
    forged.set_id, forged.set_check = a[1].set_id, a[1].set_check
    r, err = core.combine({a[1], a[2], forged})
    assert.is_nil(r)
    assert.equal("the shares do not combine to the set's secret: one is altered or wrong", err)
  end)

  it("raises on entries that are not shares", function()
    assert.has_error(function() core.combine({{index = 1}}) end)
    local a = core.split(key32(), "shamir", 2, 3)
    local s = {}
    for k, v in pairs(a[1]) do s[k] = v end
    s.share = "bytes in a Lua string"
    assert.has_error(function() core.combine({s, a[2]}) end,
      "combine: share #1: share must be an open hsm.Secret")
  end)
end)
