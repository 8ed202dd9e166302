-- hsm.trust and hsm.replicate on real SoftHSM2 tokens (seed 001 identities, seed 000 token
-- replication): identity states, an owner CA certifying other tokens, trust stored by the SO,
-- token images bound to one destination, and the bad input each must refuse with nothing
-- written: tampered CSRs, PICs of another owner, expired, not yet valid or non-P-521
-- certificates, images for another HSM, from an untrusted signer, replayed, and every bit
-- flip and truncation of a small image.
local hsm = require("hsm")
local core = require("hsm.core")
local keys = require("hsm.keys")
local trust = require("hsm.trust")
local replicate = require("hsm.replicate")
local migrate = require("hsm.migrate")
local lab = require("hsm.lab")
local H = require("spec.helper")

local work = assert(os.getenv("HSMSH_TEST_WORK"))
local function readfile(p) local f = assert(io.open(p, "rb")); local d = f:read("a"); f:close(); return d end
local function writefile(p, d) local f = assert(io.open(p, "wb")); f:write(d); f:close() end
local function flip(der, i) return der:sub(1, i - 1) .. string.char(der:byte(i) ~ 1) .. der:sub(i + 1) end

--- Runs fn(so_session) logged in as SO on the token of uri. The process must hold no other
--- session on that token: login state belongs to the process.
local function as_so(uri, fn)
  collectgarbage()
  local s <close> = hsm.token(uri:gsub("pin%-value=%d+", "pin-value=" .. lab.so_pin), {so = true})
  return fn(s)
end

local function count(uri)
  local s <close> = hsm.token(uri)
  return #assert(s:find_all({CKA_TOKEN = true}))
end

local function refuses(pattern, fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok)
  assert.matches(pattern, tostring(err))
  return err
end

describe("identities: owner CA, CSR, PIC, states", function()
  local ca_uri, a_uri, b_uri = H.new_token("ca"), H.new_token("ida"), H.new_token("idb")

  it("goes through none, POC-pending, CA and owner-signed; PIK-pending until the PIC is stored", function()
    local ca <close> = hsm.token(ca_uri)
    local a <close> = hsm.token(a_uri)
    assert.same({"none", "none"}, {trust.states(trust.identity(ca))})
    local poc = trust.gen_owner(ca)
    assert.same({"none", "POC-pending"}, {trust.states(trust.identity(ca))})
    local pic_ca = trust.gen_key(ca, ca)
    assert.same({"owner-signed", "CA"}, {trust.states(trust.identity(ca))})
    assert.is_true(core.cert_verify(pic_ca, poc))
    local csr, serial = trust.gen_csr(a)
    assert.equal(trust.token_facts(a), serial)
    assert.same({"PIK-pending", "none"}, {trust.states(trust.identity(a))})
    local pic = trust.sign_csr(ca, csr)
    assert.is_true(trust.store_poc(a, poc))
    assert.same({"PIK-pending", "stored"}, {trust.states(trust.identity(a))})
    assert.is_true(trust.store_pic(a, pic))
    assert.same({"owner-signed", "stored"}, {trust.states(trust.identity(a))})
    local info = core.cert_info(pic)
    assert.equal(serial, info.subject_serial)
    assert.equal("ecdsa-with-SHA512", info.sig_alg)
    assert.is_false(trust.store_pic(a, pic))          -- the same PIC again changes nothing
    -- the identity key never leaves the token and can derive (ECDH for images)
    local id = trust.identity(a)
    assert.is_false(id.pik.extractable)
    assert.is_true(id.pik.derive)
    assert.is_true(id.pik.sensitive)
  end)

  it("asks before replacing an identity and keeps it when not confirmed", function()
    local a <close> = hsm.token(a_uri)
    local ca <close> = hsm.token(ca_uri)
    local before = trust.identity(a).pic
    refuses("already has an identity %(owner%-signed%); replace it: not confirmed %(use %-%-yes in batch%)",
      trust.gen_key, ca, a)
    refuses("identity of token .* was kept", trust.gen_key, ca, a, {confirm = function() return false end})
    assert.equal(before, trust.identity(a).pic)
    local pic = trust.gen_key(ca, a, {yes = true})
    assert.are_not.equal(before, pic)
    assert.equal("owner-signed", (trust.states(trust.identity(a))))
  end)

  it("writes the certificate store: one POC per store, HSM_<serial>.crt, openssl verifies", function()
    local a <close> = hsm.token(a_uri)
    local dir = work .. "/store-a"
    local files = trust.fetch_certs(a, dir)
    assert.equal(2, #files)
    local serial = trust.token_facts(a)
    assert.equal(dir .. "/Owner_POC.crt", files[1])
    assert.equal(dir .. "/HSM_" .. serial .. ".crt", files[2])
    local p = assert(io.popen(("openssl verify -CAfile '%s' '%s' 2>&1"):format(files[1], files[2])))
    local out = p:read("a")
    assert.is_true(p:close() == true, out)
    -- another owner's POC in the same store is refused
    local other <close> = hsm.token(H.new_token("other-ca"))
    refuses("already holds another owner's POC; a store holds one POC", trust.save_poc, dir, trust.gen_owner(other))
  end)

  it("refuses a tampered CSR, a non-P-521 CSR and a CSR without a serial, signing nothing", function()
    local ca <close> = hsm.token(ca_uri)
    local b <close> = hsm.token(b_uri)
    local csr = trust.gen_csr(b)
    local n = count(ca_uri)
    refuses("the CSR's signature does not verify", trust.sign_csr, ca, flip(csr, #csr - 5))
    refuses("not a certificate request", trust.sign_csr, ca, csr:sub(1, #csr - 1))
    local pub, priv = assert(b:generate{type = "EC", curve = "P-256", token = false})
    refuses("is not for an EC P%-521 key", trust.sign_csr, ca,
      assert(core.csr(priv, keys.spki(pub), {cn = "x", serial = "1"})))
    local pub5, priv5 = assert(b:generate{type = "EC", curve = "P-521", token = false})
    refuses("names no HSM serial number", trust.sign_csr, ca,
      assert(core.csr(priv5, keys.spki(pub5), {cn = "x"})))
    assert.equal(n, count(ca_uri))
    -- a CA without a POK cannot sign
    refuses("has no owner key %(POK%) and POC", trust.sign_csr, b, csr)
  end)

  it("refuses PICs of another owner, for another key, expired, not yet valid or not P-521", function()
    local b <close> = hsm.token(b_uri)
    local ca <close> = hsm.token(ca_uri)
    local poc = trust.export(ca, "poc")
    trust.store_poc(b, poc)
    local id = trust.identity(b)
    local spki = keys.spki(id.pik_pub)
    local serial = id.serial
    local n = count(b_uri)
    -- a PIC from another owner's POK for this very key
    local other <close> = hsm.token(H.new_token("rogue-ca"))
    local rogue_poc = trust.gen_owner(other)
    local rogue = trust.identity(other)
    local foreign = assert(core.issue_cert(rogue.pok, rogue_poc, spki,
      {cn = "hsmsh HSM " .. serial, subject_serial = serial, hash = "sha512"}))
    refuses("does not verify against the owner's POC", trust.store_pic, b, foreign)
    -- a PIC of the right owner for another key
    local xpub = assert(b:generate{type = "EC", curve = "P-521", token = false})
    local cid = trust.identity(ca)
    local other_key = assert(core.issue_cert(cid.pok, poc, keys.spki(xpub),
      {cn = "x", subject_serial = serial, hash = "sha512"}))
    refuses("is for another key than token", trust.store_pic, b, other_key)
    -- expired and not yet valid
    local expired = assert(core.issue_cert(cid.pok, poc, spki, {cn = "x", subject_serial = serial,
      not_before = os.time() - 10 * 86400, days = 1}))
    refuses("expired on", trust.store_pic, b, expired)
    local future = assert(core.issue_cert(cid.pok, poc, spki, {cn = "x", subject_serial = serial,
      not_before = os.time() + 10 * 86400, days = 30}))
    refuses("is not yet valid", trust.store_pic, b, future)
    -- not P-521
    local p256pub, p256 = assert(b:generate{type = "EC", curve = "P-256", token = false})
    refuses("is not for an EC P%-521 key", trust.store_poc, b,
      assert(core.self_signed_cert(p256, keys.spki(p256pub), "p256", {ca = true, days = 30})))
    assert.equal(n, count(b_uri))
  end)

  it("refuses a non-P-521 or expired peer, another owner's PIC, and trusting itself", function()
    local pics = {}
    do
      local b <close> = hsm.token(b_uri)
      local ca <close> = hsm.token(ca_uri)
      trust.store_pic(b, trust.sign_csr(ca, assert(core.csr(trust.identity(b).pik,
        keys.spki(trust.identity(b).pik_pub), {cn = "b", serial = trust.token_facts(b)})), {}), {yes = true})
      pics.own = trust.export(b, "pic")
      local pub, priv = assert(b:generate{type = "EC", curve = "P-256", token = false})
      pics.p256 = assert(core.self_signed_cert(priv, keys.spki(pub), "p256", {days = 30, subject_serial = "77"}))
      local pub5, priv5 = assert(b:generate{type = "EC", curve = "P-521", token = false})
      pics.expired = assert(core.self_signed_cert(priv5, keys.spki(pub5), "old",
        {days = 1, not_before = os.time() - 5 * 86400, subject_serial = "78", hash = "sha512"}))
      pics.selfsigned = assert(core.self_signed_cert(priv5, keys.spki(pub5), "self",
        {days = 30, subject_serial = "79", hash = "sha512"}))
      b:close()
      ca:close()
    end
    local n = count(b_uri)
    as_so(b_uri, function(so)
      refuses("is not for an EC P%-521 key", trust.trust, so, pics.p256)
      refuses("expired on", trust.trust, so, pics.expired)
      -- b stores the owner's POC: a self-signed peer does not chain to it
      refuses("does not verify against the owner's POC", trust.trust, so, pics.selfsigned)
      refuses("an HSM does not trust itself", trust.trust, so, pics.own)
    end)
    assert.equal(n, count(b_uri))
  end)
end)

describe("token images", function()
  local ca_uri, src_uri, dst_uri, oth_uri = H.new_token("rca"), H.new_token("rsrc"), H.new_token("rdst"), H.new_token("roth")
  local img = work .. "/t.img"
  local pics = {}

  setup(function()
    local ca <close> = hsm.token(ca_uri)
    trust.gen_owner(ca)
    for _, u in ipairs({src_uri, dst_uri, oth_uri}) do
      local s <close> = hsm.token(u)
      pics[u] = trust.gen_key(ca, s)
    end
    local src <close> = hsm.token(src_uri)
    assert(src:generate{type = "AES", bits = 256, label = "aes", id = "\1", CKA_EXTRACTABLE = true,
                        CKA_ENCRYPT = true, CKA_DECRYPT = true})
    assert(src:generate{type = "AES", bits = 128, label = "wwt", id = "\2", CKA_EXTRACTABLE = true,
                        CKA_WRAP_WITH_TRUSTED = true, CKA_ENCRYPT = true, CKA_DECRYPT = true})
    assert(src:generate{type = "AES", bits = 128, label = "stays", id = "\3", CKA_EXTRACTABLE = false})
    assert(src:generate{type = "EC", curve = "P-256", label = "ec", id = "\4", CKA_EXTRACTABLE = true})
    src:close()
    ca:close()
    -- mutual trust between src and dst; oth trusts src too (it gets an image not made for it)
    as_so(src_uri, function(so) trust.trust(so, pics[dst_uri]) end)
    as_so(dst_uri, function(so) trust.trust(so, pics[src_uri]) end)
    as_so(oth_uri, function(so) trust.trust(so, pics[src_uri]) end)
  end)

  it("needs the destination to be trusted by the source", function()
    local src <close> = hsm.token(src_uri)
    refuses("the source does not trust the destination: token .* does not trust the identity", replicate.make,
      src, pics[oth_uri], work .. "/no.img")
  end)

  it("carries every extractable key, WRAP_WITH_TRUSTED ones only under a trusted transport key", function()
    -- without the SO's trusted key, the WRAP_WITH_TRUSTED key is blocked
    do
      local src <close> = hsm.token(src_uri)
      local reasons = {}
      replicate.make(src, pics[dst_uri], work .. "/untrusted.img",
        {on_item = function(e) reasons[e.ref] = e.reason end})
      assert.matches("CKA_WRAP_WITH_TRUSTED", reasons["secret-key/02/wwt"])
      assert.matches("not extractable: .*rotate%-reencrypt", reasons["secret-key/03/stays"])
      assert.is_nil(reasons["secret-key/01/aes"])
      assert.is_nil(reasons["private-key/04/ec"])
      src:close()
    end
    collectgarbage()
    local src <close> = hsm.token(src_uri)
    local t = replicate.trusted_transport(src, core.secret(lab.so_pin), core.secret(lab.user_pin))
    assert.is_true(t.CKA_TRUSTED)
    local sum, h = replicate.make(src, pics[dst_uri], img, {transport = t})
    assert.equal(3, sum.keys)          -- aes, wwt and the EC private key; its public key is copied
    assert.equal(1, sum.blocked)
    assert.is_true(h.transport_trusted)
    assert.equal(core.cert_info(pics[dst_uri]).subject_serial, h.destination.serial)
    local dst <close> = hsm.token(dst_uri)
    local opened = replicate.open(dst, img)
    local plan = replicate.plan(dst, opened)
    local ctx = {journal = function() end, emit = function() end, say = function() end,
                 progress = function() return {update = function() end, done = function() end, tick = function() end} end}
    local res = migrate.apply_reported(ctx, plan, "importing")
    assert.equal(0, res.failed)
    local rows, bad = replicate.compare(migrate.index(src), dst,
      {["secret-key/03/stays"] = "not extractable"})
    local seen = {}
    for _, r in ipairs(rows) do
      assert(not r.mismatch, ("%s: %s / %s, %s"):format(r.ref, r.source, r.destination, r.attributes))
    end
    assert.equal(0, bad)
    for _, r in ipairs(rows) do seen[r.ref] = r end
    assert.equal("same", seen["secret-key/02/wwt"].attributes)
    assert.equal(seen["secret-key/01/aes"].source, seen["secret-key/01/aes"].destination)
    assert.matches("^blocked", seen["secret-key/03/stays"].attributes)
    -- the imported WRAP_WITH_TRUSTED key keeps the attribute and works like the source's
    local w = dst:find({CKA_LABEL = "wwt"})
    assert.is_true(w.CKA_WRAP_WITH_TRUSTED)
    assert.equal(keys.kcv(src:find({CKA_LABEL = "wwt"})), keys.kcv(w))
    -- identity objects never travel
    assert.equal(1, #assert(dst:find_all({CKA_LABEL = trust.LABEL.pik, CKA_CLASS = "CKO_PRIVATE_KEY"})))
    opened.key:destroy()
  end)

  it("is refused by any other token, from an untrusted signer, or replayed", function()
    local n_oth = count(oth_uri)
    do
      local oth <close> = hsm.token(oth_uri)
      refuses("it was made for HSM %x+; this token is HSM %x+; nothing was written", replicate.open, oth, img)
    end
    assert.equal(n_oth, count(oth_uri))
    -- dst stops trusting src: the signer is not trusted
    local src_serial = core.cert_info(pics[src_uri]).subject_serial
    as_so(dst_uri, function(so) assert.same({src_serial}, trust.remove(so, src_serial)) end)
    do
      local dst <close> = hsm.token(dst_uri)
      refuses("its signer %(HSM %x+%) is not trusted", replicate.open, dst, img)
    end
    as_so(dst_uri, function(so) trust.trust(so, pics[src_uri]) end)
    -- a newer image imported, then the older one again: a replay
    local newer = work .. "/newer.img"
    do
      local src <close> = hsm.token(src_uri)
      replicate.make(src, pics[dst_uri], newer)
    end
    local dst <close> = hsm.token(dst_uri)
    replicate.open(dst, newer).key:destroy()
    local n = #assert(dst:find_all({}))
    refuses("is older than the image of HSM %x+ already imported here .*: a replay", replicate.open, dst, img)
    assert.equal(n, #assert(dst:find_all({})))
    -- the same image again is a resume, not a replay
    replicate.open(dst, newer).key:destroy()
  end)

  it("refuses every single-bit flip and every truncation of a small image before any write", function()
    local src_small, dst_small = H.new_token("fsrc"), H.new_token("fdst")
    local small = work .. "/small.img"
    do
      local ca <close> = hsm.token(ca_uri)
      local s <close> = hsm.token(src_small)
      local d <close> = hsm.token(dst_small)
      pics.fs, pics.fd = trust.gen_key(ca, s), trust.gen_key(ca, d)
      assert(s:generate{type = "AES", bits = 128, label = "k", id = "\1", CKA_EXTRACTABLE = true})
    end
    as_so(src_small, function(so) trust.trust(so, pics.fd) end)
    as_so(dst_small, function(so) trust.trust(so, pics.fs) end)
    do
      local s <close> = hsm.token(src_small)
      replicate.make(s, pics.fd, small)
    end
    local good = readfile(small)
    local d <close> = hsm.token(dst_small)
    local before = migrate.fingerprint(d)
    local bad = work .. "/small-bad.img"
    local refused, n = 0, 0
    local function try(bytes)
      n = n + 1
      writefile(bad, bytes)
      local ok, err = pcall(replicate.open, d, bad)
      if not ok and type(err) == "string" and err:find("image ", 1, true) then refused = refused + 1
      elseif os.getenv("TRUST_SPEC_DEBUG") then print(n, ok, err) end
      if ok then err.key:destroy() end
    end
    for i = 1, #good do
      local b = good:byte(i)
      for bit = 0, 7 do try(good:sub(1, i - 1) .. string.char(b ~ (1 << bit)) .. good:sub(i + 1)) end
    end
    for len = 0, #good - 1 do try(good:sub(1, len)) end
    try(good .. "\0")
    assert.equal(#good * 9 + 1, n)
    assert.equal(n, refused)
    assert.equal(before, migrate.fingerprint(d))   -- no attempt wrote anything
    replicate.open(d, small).key:destroy()          -- and the original still opens
  end)
end)
