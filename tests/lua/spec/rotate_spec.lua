-- hsm.sealed on real SoftHSM2 tokens: chunked AES-GCM files under HSM keys, round trips of
-- every size class, every kind of damage refused with a message naming it (and no output
-- left behind), reseal from one key to another, and generate_like's attribute handling.
local hsm = require("hsm")
local core = require("hsm.core")
local keys = require("hsm.keys")
local attrs = require("hsm.attrs")
local sealed = require("hsm.sealed")
local H = require("spec.helper")

local work = assert(os.getenv("HSMSH_TEST_WORK"), "run by tests/lua/run.sh") .. "/rotate"
assert(os.execute("mkdir -p '" .. work .. "'"))

local CHUNK = 1024
local n = 0
local function path(name) n = n + 1 return ("%s/%d-%s"):format(work, n, name) end
local function slurp(p)
  local f = assert(io.open(p, "rb"))
  local d = f:read("a")
  f:close()
  return d
end
local function spit(p, d)
  local f = assert(io.open(p, "wb"))
  f:write(d)
  f:close()
end
local function exists(p) return core.stat(p) ~= nil end
--- The entries of dir, as one sorted string (so a test sees leftover temporary files).
local function entries(dir)
  local out = {}
  for _, e in ipairs(assert(sealed.list(dir))) do out[#out + 1] = e.name end
  return table.concat(out, " ")
end
local function mkdir(p) assert(os.execute("mkdir -p '" .. p .. "'")) return p end
local function bytes(len, seed)
  local t = {}
  for i = 1, len do t[i] = string.char((i * 31 + (seed or 7) * i // 256) % 256) end
  return table.concat(t)
end

local uri = H.new_token("seal")
local uri2 = H.new_token("seal2")
local s = hsm.token(uri)
local s2 = hsm.token(uri2)
local key = s:generate{type = "AES", bits = 256, label = "data-key", id = "\1\2", token = false,
                       CKA_ENCRYPT = true, CKA_DECRYPT = true, CKA_EXTRACTABLE = false}
local other = s:generate{type = "AES", bits = 256, label = "other", token = false,
                         CKA_ENCRYPT = true, CKA_DECRYPT = true}
local newkey = s2:generate{type = "AES", bits = 128, label = "new-key", id = "\9", token = false,
                           CKA_ENCRYPT = true, CKA_DECRYPT = true, CKA_EXTRACTABLE = false}

describe("sealed round trip", function()
  for _, case in ipairs({{"empty", 0, 1}, {"one byte", 1, 1}, {"exactly one chunk", CHUNK, 1},
                         {"two full chunks", 2 * CHUNK, 2},
                         {"several chunks and a partial one", 3 * CHUNK + 100, 4}}) do
    local what, len, chunks = case[1], case[2], case[3]
    it(what .. " (" .. len .. " bytes)", function()
      local data = bytes(len, len)
      local plain, enc, back = path("plain"), path("sealed"), path("back")
      spit(plain, data)
      local res = assert(sealed.seal(s, key, plain, enc, {chunk = CHUNK}))
      assert.same({bytes = len, chunks = chunks, sha256 = keys.hex(core.sha256(data))}, res)
      local info = assert(sealed.inspect(enc))
      assert.equal(1, info.version)
      assert.equal(CHUNK, info.chunk)
      assert.equal("data-key", info.label)
      assert.equal("0102", info.id)
      assert.equal(key:kcv(), info.kcv)
      assert.equal(chunks, info.chunks)
      assert.equal(info.header_bytes + len + chunks * 20, info.size)
      if len > 0 then
        assert.not_equal(data, slurp(enc):sub(info.header_bytes + 5, info.header_bytes + 4 + len))
      end
      local opened = assert(sealed.open(s, key, enc, back))
      assert.same(res, opened)
      assert.equal(data, slurp(back))
      assert.equal(data, slurp(plain))   -- the input is never written
    end)
  end

  it("gives every file its own nonce prefix from the token", function()
    local plain = path("plain")
    spit(plain, "same bytes")
    local a, b = path("a"), path("b")
    sealed.seal(s, key, plain, a)
    sealed.seal(s, key, plain, b)
    assert.not_equal(sealed.inspect(a).prefix, sealed.inspect(b).prefix)
    assert.not_equal(slurp(a), slurp(b))
  end)

  it("uses 64 KiB chunks by default", function()
    local plain, enc = path("plain"), path("sealed")
    spit(plain, bytes(65537))
    assert.equal(2, assert(sealed.seal(s, key, plain, enc)).chunks)
    assert.equal(65536, sealed.inspect(enc).chunk)
  end)
end)

describe("sealed files refuse damage", function()
  -- One file of four chunks (3 full, 1 partial); records are 4 + len + 16 bytes.
  local data = bytes(3 * CHUNK + 100, 3)
  local plain, good = path("plain"), path("good")
  spit(plain, data)
  assert(sealed.seal(s, key, plain, good, {chunk = CHUNK}))
  local blob = slurp(good)
  local H0 = sealed.inspect(good).header_bytes
  local REC = 4 + CHUNK + 16
  --- The byte offset of record i (1-based) and of its parts.
  local function rec(i) return H0 + (i - 1) * REC end
  local function flip(s_, at) -- flips the lowest bit of byte `at` (1-based)
    return s_:sub(1, at - 1) .. string.char(s_:byte(at) ~ 1) .. s_:sub(at + 1)
  end

  --- Opens a damaged copy; expects nil and a message matching pattern, no output file and
  --- no temporary file in the output directory.
  local function refused(damaged, pattern, k)
    local dir = mkdir(path("out"))
    local bad = dir .. "/in.sealed"
    spit(bad, damaged)
    local res, err, kind = sealed.open(s, k or key, bad, dir .. "/plain")
    assert.is_nil(res)
    assert.matches(pattern, err)
    assert.matches(bad, err, 1, true)    -- the message names the file
    assert.equal("input", kind)
    assert.equal("in.sealed", entries(dir))
    assert.equal(damaged, slurp(bad))
    return err
  end

  it("the intact file opens", function()
    assert.equal(4, assert(sealed.verify(s, key, good)).chunks)
  end)

  it("a flipped bit in the magic", function() refused(flip(blob, 3), "bad magic") end)
  it("a flipped bit in the version", function()
    refused(flip(blob, 9), "unsupported format version 0")
  end)
  it("a flipped bit in the label", function()
    refused(flip(blob, H0 - 8 - 2 - 2 - 3), "chunk 1 fails authentication")
  end)
  it("a flipped bit in the nonce prefix", function()
    refused(flip(blob, H0 - 3), "chunk 1 fails authentication")
  end)
  it("a flipped bit in the header's KCV", function()
    refused(flip(blob, 16), "sealed under key kcv")
  end)
  it("a flipped bit in a chunk", function()
    refused(flip(blob, rec(2) + 4 + 10), "chunk 2 fails authentication")
  end)
  it("a flipped bit in a tag", function()
    refused(flip(blob, rec(3) + 4 + CHUNK + 5), "chunk 3 fails authentication")
  end)
  it("a flipped bit in a length field", function()
    refused(flip(blob, rec(2) + 3), "chunk 2 claims 1280 bytes, more than the chunk size 1024")
    refused(flip(blob, rec(4) + 4), "truncated in chunk 4")
  end)
  it("a file truncated at a chunk boundary", function()
    refused(blob:sub(1, rec(3)), "truncated after chunk 2")
  end)
  it("a file truncated inside a chunk", function()
    refused(blob:sub(1, rec(3) + 100), "truncated in chunk 3")
    refused(blob:sub(1, rec(2) + 2), "truncated in chunk 2")
    refused(blob:sub(1, #blob - 1), "truncated in chunk 4")
  end)
  it("a file cut after its header", function()
    refused(blob:sub(1, H0), "truncated after the header")
    refused(blob:sub(1, H0 - 1), "truncated header")
    refused(blob:sub(1, 5), "truncated header %(in the magic%)")
    refused("", "empty %(not a sealed file%)")
  end)
  it("two chunks swapped", function()
    refused(blob:sub(1, rec(1)) .. blob:sub(rec(2) + 1, rec(3)) .. blob:sub(rec(1) + 1, rec(2))
      .. blob:sub(rec(3) + 1), "chunk 1 fails authentication")
  end)
  it("a chunk dropped", function()
    refused(blob:sub(1, rec(2)) .. blob:sub(rec(3) + 1), "chunk 2 fails authentication")
  end)
  it("a chunk repeated at the end", function()
    refused(blob .. blob:sub(rec(4) + 1), "data after the final chunk 4")
  end)
  it("a chunk spliced in from another file under the same key", function()
    local p2, e2 = path("plain"), path("sealed")
    spit(p2, bytes(3 * CHUNK + 100, 5))
    assert(sealed.seal(s, key, p2, e2, {chunk = CHUNK}))
    local blob2 = slurp(e2)
    refused(blob:sub(1, rec(2)) .. blob2:sub(rec(2) + 1, rec(3)) .. blob:sub(rec(3) + 1),
      "chunk 2 fails authentication")
  end)
  it("a file sealed under another key", function()
    refused(blob, "sealed under key kcv " .. key:kcv() .. " %(label 'data%-key', id 0102%), "
      .. "not under the key given, kcv " .. other:kcv(), other)
  end)
  it("not a sealed file at all", function()
    refused("just some text, long enough to have a header's worth of bytes in it", "bad magic")
  end)
  it("reseal and inspect refuse the same damage and write nothing", function()
    local dir = mkdir(path("out"))
    local bad = dir .. "/in.sealed"
    spit(bad, flip(blob, rec(2) + 4 + 10))
    local res, err = sealed.reseal(s, key, s2, newkey, bad, dir .. "/out.sealed")
    assert.is_nil(res)
    assert.matches("chunk 2 fails authentication", err)
    assert.equal("in.sealed", entries(dir))
    spit(bad, "HSMSEAL2" .. blob:sub(9))
    assert.matches("bad magic", select(2, sealed.inspect(bad)))
  end)
  it("a missing file, a directory, a missing output directory", function()
    assert.matches("cannot open: No such file", select(2, sealed.open(s, key, work .. "/nope", nil)))
    assert.matches("Is a directory", select(2, sealed.verify(s, key, work)))
    local res, err, kind = sealed.seal(s, key, plain, work .. "/no/such/dir/x")
    assert.is_nil(res)
    assert.equal("output", kind)
    assert.matches("cannot create", err)
  end)
  it("never writes over its input", function()
    local copy = path("copy")
    spit(copy, blob)
    local res, err = sealed.open(s, key, copy, copy)
    assert.is_nil(res)
    assert.matches("is the input file", err)
    assert.equal(blob, slurp(copy))
  end)
end)

describe("reseal", function()
  it("re-encrypts under a key on another token, to the same bytes", function()
    local data = bytes(5 * CHUNK + 17, 11)
    local plain, enc, re, back = path("plain"), path("sealed"), path("resealed"), path("back")
    spit(plain, data)
    assert(sealed.seal(s, key, plain, enc, {chunk = CHUNK}))
    local before = slurp(enc)
    local res = assert(sealed.reseal(s, key, s2, newkey, enc, re))
    assert.same({bytes = #data, chunks = 6, sha256 = keys.hex(core.sha256(data))}, res)
    assert.equal(before, slurp(enc))          -- the original is untouched
    local info = sealed.inspect(re)
    assert.equal("new-key", info.label)
    assert.equal("09", info.id)
    assert.equal(newkey:kcv(), info.kcv)
    assert.equal(CHUNK, info.chunk)           -- the chunking is kept
    assert.not_equal(sealed.inspect(enc).prefix, info.prefix)
    assert.same(res, assert(sealed.open(s2, newkey, re, back)))
    assert.equal(data, slurp(back))
    assert.matches("sealed under key kcv " .. newkey:kcv(), select(2, sealed.verify(s, key, re)))
  end)

  it("of an empty file", function()
    local plain, enc, re = path("plain"), path("sealed"), path("resealed")
    spit(plain, "")
    assert(sealed.seal(s, key, plain, enc))
    assert.equal(0, assert(sealed.reseal(s, key, s2, newkey, enc, re)).bytes)
    assert.equal(0, assert(sealed.verify(s2, newkey, re)).bytes)
  end)
end)

describe("sealed helpers", function()
  it("list, stat and remove (sealed files only)", function()
    local dir = mkdir(path("dir"))
    spit(dir .. "/b.txt", "not sealed")
    spit(dir .. "/a.txt", "x")
    assert(sealed.seal(s, key, dir .. "/a.txt", dir .. "/c.sealed"))
    mkdir(dir .. "/sub")
    local list = assert(sealed.list(dir))
    assert.equal("a.txt b.txt c.sealed sub", entries(dir))
    assert.equal("file", list[1].kind)
    assert.equal(dir .. "/a.txt", list[1].path)
    assert.equal("dir", list[4].kind)
    assert.equal("dir", sealed.stat(dir).kind)
    assert.is_nil(sealed.list(dir .. "/none"))
    local ok, err = sealed.remove(dir .. "/b.txt")
    assert.is_nil(ok)
    assert.matches("bad magic", err)
    assert(sealed.remove(dir .. "/c.sealed"))
    assert.equal("a.txt b.txt sub", entries(dir))
  end)
end)

describe("generate_like", function()
  it("makes a key with the old key's attributes", function()
    local old = s:generate{type = "AES", bits = 256, label = "old", id = "\7", token = true,
                           CKA_ENCRYPT = true, CKA_DECRYPT = true, CKA_EXTRACTABLE = false,
                           CKA_DERIVE = true}
    local cap = attrs.capture(old)
    local new, dropped = assert(sealed.generate_like(s2, cap, {CKA_LABEL = "renamed"}))
    assert.same({}, dropped)
    local diff = {}
    for _, d in ipairs(attrs.diff(cap, new:attrs())) do
      if not d.forced then diff[#diff + 1] = d.name end
    end
    assert.same({"CKA_CHECK_VALUE", "CKA_LABEL"}, diff)
    assert.is_false(new.extractable)
    assert.not_equal(old:kcv(), new:kcv())
    new:destroy()
    old:destroy()
  end)

  it("leaves out what the module refuses, reports it, never the essentials", function()
    local made = {}
    local fake = {generate_key = function(_, mech, t)
      assert.equal("CKM_AES_KEY_GEN", mech)
      if t.CKA_COPYABLE ~= nil or t.CKA_WRAP_WITH_TRUSTED ~= nil then
        return nil, "C_GenerateKey: CKR_ATTRIBUTE_TYPE_INVALID", "CKR_ATTRIBUTE_TYPE_INVALID"
      end
      local k = {destroyed = false, token = t.CKA_TOKEN, t = t}
      function k.destroy(self) self.destroyed = true end
      made[#made + 1] = k
      return k
    end}
    local cap = {CKA_CLASS = "CKO_SECRET_KEY", CKA_KEY_TYPE = "CKK_AES", CKA_VALUE_LEN = 32,
                 CKA_TOKEN = true, CKA_LABEL = "x", CKA_ENCRYPT = true, CKA_DECRYPT = true,
                 CKA_COPYABLE = true, CKA_WRAP_WITH_TRUSTED = false, CKA_DERIVE = false,
                 CKA_LOCAL = true, CKA_CHECK_VALUE = "\1\2\3"}
    local k, dropped = assert(sealed.generate_like(fake, cap))
    assert.same({"CKA_COPYABLE", "CKA_WRAP_WITH_TRUSTED"}, dropped)
    assert.is_true(k.token)
    assert.is_false(k.destroyed)
    assert.is_false(k.t.CKA_DERIVE)
    assert.is_nil(k.t.CKA_LOCAL)
    for i = 1, #made - 1 do   -- every probe was a session object, destroyed again
      assert.is_false(made[i].token)
      assert.is_true(made[i].destroyed)
    end
    local refuse_all = {generate_key = function()
      return nil, "C_GenerateKey: CKR_TEMPLATE_INCONSISTENT", "CKR_TEMPLATE_INCONSISTENT"
    end}
    local none, err = sealed.generate_like(refuse_all, cap)
    assert.is_nil(none)
    assert.matches("even with only its essential attributes", err)
  end)
end)
