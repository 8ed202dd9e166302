-- X.509 for HSM identities on real SoftHSM2 tokens (seed 001, ProtectServer owner and identity
-- certificates): an owner key (POK) on token A with its self-signed CA certificate (POC), an
-- identity key (PIK) on token B with its CSR, the POC signing the identity certificate (PIC).
-- Every key is EC P-521 inside the token and every signature ECDSA-SHA512 made by the token
-- (CKM_ECDSA over a software hash). Results are checked by the openssl command line too.
local hsm = require("hsm")
local core = require("hsm.core")
local keys = require("hsm.keys")
local H = require("spec.helper")

local work = assert(os.getenv("HSMSH_TEST_WORK"), "run by tests/lua/run.sh") .. "/x509"
assert(os.execute("mkdir -p '" .. work .. "'"))

--- Runs a shell command; returns whether it exited 0 and its output (stdout and stderr).
local function sh(cmd)
  local p = assert(io.popen(cmd .. " 2>&1"))
  local out = p:read("a")
  local ok = p:close()
  return ok == true, out
end

--- Writes der as PEM to work/name and returns the path.
local function pem_file(name, label, der)
  local path = work .. "/" .. name
  local f = assert(io.open(path, "w"))
  f:write((assert(core.pem_encode(label, der))))   -- luassert returns extra nils
  f:close()
  return path
end

local function openssl_text(path, what)
  local ok, out = sh(("openssl %s -in '%s' -noout -text"):format(what or "x509", path))
  assert(ok, out)
  return out
end

--- der with one bit flipped at byte i (negative: from the end).
local function flip(der, i)
  if i < 0 then i = #der + 1 + i end
  return der:sub(1, i - 1) .. string.char(der:byte(i) ~ 1) .. der:sub(i + 1)
end

local function set(list)
  local t = {}
  for _, v in ipairs(list or {}) do t[v] = true end
  return t
end

describe("x509: owner CA, CSR and identity certificate across two tokens", function()
  local uri_a = H.new_token("x509a")
  local uri_b = H.new_token("x509b")
  local sa = hsm.token(uri_a)
  local sb = hsm.token(uri_b)
  local pok_pub, pok = assert(sa:generate{type = "EC", curve = "P-521", label = "POK", token = false})
  local pik_pub, pik = assert(sb:generate{type = "EC", curve = "P-521", label = "PIK", token = false})
  local pok_spki, pik_spki = assert(keys.spki(pok_pub)), assert(keys.spki(pik_pub))
  local poc, csr, pic   -- made by the first tests, used by the later ones

  it("makes the owner's self-signed CA certificate (POC) with the key on token A", function()
    poc = assert(core.self_signed_cert(pok, pok_spki, "hsmsh Owner POC",
      {ca = true, days = 3650, hash = "sha512", org = "hsmsh lab"}))
    local i = assert(core.cert_info(poc))
    assert.equal("hsmsh Owner POC", i.cn)
    assert.equal("hsmsh Owner POC", i.issuer_cn)
    assert.equal("hsmsh lab", i.org)
    assert.is_true(i.is_ca)
    assert.equal(0, i.pathlen)
    assert.same(set{"keyCertSign", "cRLSign"}, set(i.key_usage))
    assert.equal("ecdsa-with-SHA512", i.sig_alg)
    assert.equal(pok_spki, i.spki)
    assert.equal(i.ski, i.aki)
    assert.equal(3650 * 86400, i.not_after - i.not_before)
    assert.is_true(math.abs(i.not_before - os.time()) < 120)
    assert.equal(32, #i.serial)   -- random 128-bit serial, in hex
    assert.is_true(core.cert_verify(poc, poc))

    local path = pem_file("poc.pem", "CERTIFICATE", poc)
    local text = openssl_text(path)
    assert.matches("CA:TRUE, pathlen:0", text, 1, true)
    assert.matches("Certificate Sign, CRL Sign", text, 1, true)
    assert.matches("Signature Algorithm: ecdsa-with-SHA512", text, 1, true)
    assert.matches("NIST CURVE: P-521", text, 1, true)
    local ok, out = sh(("openssl verify -x509_strict -CAfile '%s' '%s'"):format(path, path))
    assert(ok, out)
  end)

  it("makes a CSR with the identity key on token B; openssl verifies it", function()
    csr = assert(core.csr(pik, pik_spki, {cn = "HSM 0042", serial = "0042", org = "hsmsh lab"}))
    local i = assert(core.csr_info(csr))
    assert.is_true(i.valid)
    assert.is_nil(i.why)
    assert.equal("HSM 0042", i.cn)
    assert.equal("0042", i.serial)
    assert.equal("hsmsh lab", i.org)
    assert.equal("serialNumber=0042,CN=HSM 0042,O=hsmsh lab", i.subject)
    assert.equal(pik_spki, i.spki)

    local path = pem_file("csr.pem", "CERTIFICATE REQUEST", csr)
    local ok, out = sh(("openssl req -in '%s' -verify -noout"):format(path))
    assert(ok, out)
    assert.matches("verify OK", out)
    local text = openssl_text(path, "req")
    assert.matches("ecdsa-with-SHA512", text, 1, true)
    assert.matches("serialNumber = 0042", text, 1, true)
    -- PEM round trip
    local der, label = core.pem_decode(io.open(path):read("a"))
    assert.equal(csr, der)
    assert.equal("CERTIFICATE REQUEST", label)
  end)

  it("the POC signs the CSR into the identity certificate (PIC); openssl verifies the chain", function()
    pic = assert(core.issue_cert(pok, poc, csr, {serial = 42, days = 365}))
    local i = assert(core.cert_info(pic))
    assert.equal("HSM 0042", i.cn)
    assert.equal("0042", i.subject_serial)
    assert.equal("hsmsh Owner POC", i.issuer_cn)
    assert.equal(core.cert_info(poc).subject, i.issuer)
    assert.equal("2a", i.serial)
    assert.is_false(i.is_ca)
    assert.is_nil(i.pathlen)
    assert.same(set{"digitalSignature", "keyAgreement"}, set(i.key_usage))
    assert.equal("ecdsa-with-SHA512", i.sig_alg)
    assert.equal(pik_spki, i.spki)
    assert.equal(core.cert_info(poc).ski, i.aki)
    assert.equal(365 * 86400, i.not_after - i.not_before)
    assert.is_true(core.cert_verify(pic, poc))
    assert.is_true(core.cert_verify(pic, poc, os.time() + 300 * 86400))

    local ca_path = pem_file("poc.pem", "CERTIFICATE", poc)
    local path = pem_file("pic.pem", "CERTIFICATE", pic)
    local ok, out = sh(("openssl verify -CAfile '%s' '%s'"):format(ca_path, path))
    assert(ok, out)
    assert.matches("pic.pem: OK", out, 1, true)
    ok, out = sh(("openssl verify -x509_strict -CAfile '%s' '%s'"):format(ca_path, path))
    assert(ok, out)
    local text = openssl_text(path)
    assert.matches("CA:FALSE", text, 1, true)
    assert.not_matches("CA:TRUE", text, 1, true)
    assert.matches("Digital Signature, Key Agreement", text, 1, true)
    assert.matches("Signature Algorithm: ecdsa-with-SHA512", text, 1, true)
    assert.matches("Issuer: O = hsmsh lab, CN = hsmsh Owner POC", text, 1, true)
  end)

  it("issues from a bare public key and a name, keeping an explicit hex serial", function()
    local der = assert(core.issue_cert(pok, poc, pik_spki,
      {cn = "HSM 0043", subject_serial = "0043", serial = "0a0b0c", days = 30}))
    local i = core.cert_info(der)
    assert.equal("serialNumber=0043,CN=HSM 0043", i.subject)
    assert.equal("0a0b0c", i.serial)
    assert.is_true(core.cert_verify(der, poc))
    -- a CSR's subject can be replaced by the CA
    local renamed = core.cert_info(assert(core.issue_cert(pok, poc, csr, {cn = "renamed"})))
    assert.equal("CN=renamed", renamed.subject)
  end)

  it("a self-signed identity certificate (no owner CA) verifies against itself", function()
    local self = assert(core.self_signed_cert(pik, pik_spki, "HSM 0042 self",
      {days = 365, hash = "sha512", subject_serial = "0042"}))
    local i = core.cert_info(self)
    assert.is_false(i.is_ca)
    assert.same(set{"digitalSignature", "keyAgreement"}, set(i.key_usage))
    assert.equal(i.ski, i.aki)
    assert.is_true(core.cert_verify(self, self))
    -- OpenSSL trusts a self-signed end-entity certificate it is given as the anchor: no
    -- keyCertSign needed (and RFC 5280 forbids keyCertSign without CA:TRUE)
    local path = pem_file("self.pem", "CERTIFICATE", self)
    local ok, out = sh(("openssl verify -CAfile '%s' '%s'"):format(path, path))
    assert(ok, out)
    assert.matches("CA:FALSE", openssl_text(path), 1, true)
    -- but it cannot act as a CA
    local der, err = core.issue_cert(pik, self, csr)
    assert.is_nil(der)
    assert.matches("is not a CA: its keyUsage lacks keyCertSign", err, 1, true)
  end)

  it("keeps the original self_signed_cert form and profile", function()
    local der = assert(core.self_signed_cert(pik, pik_spki, "plain", 30))
    local i = core.cert_info(der)
    assert.same({"digitalSignature"}, i.key_usage)
    assert.is_false(i.is_ca)
    assert.is_nil(i.aki)
    assert.equal("ecdsa-with-SHA256", i.sig_alg)
    assert.equal(30 * 86400, i.not_after - i.not_before)
    i = core.cert_info(assert(core.self_signed_cert(pik, pik_spki, "plain", 30, "sha384")))
    assert.equal("ecdsa-with-SHA384", i.sig_alg)
    -- days and hash positionally, the rest in the options
    i = core.cert_info(assert(core.self_signed_cert(pok, pok_spki, "root", 10, "sha512",
      {ca = true, pathlen = -1, serial = 7})))
    assert.is_true(i.is_ca)
    assert.is_nil(i.pathlen)
    assert.equal("07", i.serial)
    assert.equal("ecdsa-with-SHA512", i.sig_alg)
    assert.has_error(function() core.self_signed_cert(pik, pik_spki, "x", 3, {days = 4}) end,
      "self_signed_cert: days given both as an argument and in the options")
  end)

  it("refuses a certificate signed by another CA, naming the issuer mismatch", function()
    local other_pub, other = assert(sb:generate{type = "EC", curve = "P-521", token = false})
    local other_spki = keys.spki(other_pub)
    local other_ca = assert(core.self_signed_cert(other, other_spki, "Other POC",
      {ca = true, hash = "sha512"}))
    local leaf = assert(core.issue_cert(other, other_ca, csr))
    assert.is_true(core.cert_verify(leaf, other_ca))
    local ok, err = core.cert_verify(leaf, poc)
    assert.is_nil(ok)
    assert.equal('issuer mismatch: the certificate "serialNumber=0042,CN=HSM 0042,O=hsmsh lab" '
      .. 'was issued by "CN=Other POC", not by the CA "CN=hsmsh Owner POC,O=hsmsh lab"', err)
    -- another CA under the same name: told apart by the key identifiers
    local twin = assert(core.self_signed_cert(other, other_spki, "hsmsh Owner POC",
      {ca = true, hash = "sha512", org = "hsmsh lab"}))
    leaf = assert(core.issue_cert(other, twin, csr))
    ok, err = core.cert_verify(leaf, poc)
    assert.is_nil(ok)
    assert.matches("^issuer mismatch: .*authority key identifier", err)
    local path = pem_file("wrong-ca-leaf.pem", "CERTIFICATE", leaf)
    assert.is_false((sh(("openssl verify -CAfile '%s/poc.pem' '%s'"):format(work, path))))
    -- the issuer's private key must match the issuer certificate
    local der, why = core.issue_cert(other, poc, csr)
    assert.is_nil(der)
    assert.matches("does not verify with the issuer certificate's public key", why, 1, true)
  end)

  it("names expired and not-yet-valid certificates", function()
    local now = os.time()
    local old = assert(core.issue_cert(pok, poc, csr, {not_before = now - 10 * 86400, days = 1}))
    local ok, err = core.cert_verify(old, poc)
    assert.is_nil(ok)
    assert.matches("^expired: the certificate .* expired at ", err)
    local future = assert(core.issue_cert(pok, poc, csr, {not_before = now + 10 * 86400, days = 1}))
    ok, err = core.cert_verify(future, poc)
    assert.is_nil(ok)
    assert.matches("^not yet valid: the certificate .* is valid from ", err)
    -- checked at another time
    assert.is_true(core.cert_verify(future, poc, now + 10 * 86400 + 3600))
    ok, err = core.cert_verify(pic, poc, now + 400 * 86400)
    assert.is_nil(ok)
    assert.matches("^expired: ", err)
    local path = pem_file("old.pem", "CERTIFICATE", old)
    ok, err = sh(("openssl verify -CAfile '%s/poc.pem' '%s'"):format(work, path))
    assert.is_false(ok)
    assert.matches("expired", err)
  end)

  it("names a bad signature and an issuer that is not a CA", function()
    local ok, err = core.cert_verify(flip(pic, -2), poc)
    assert.is_nil(ok)
    assert.matches("^signature: the certificate .* is not signed by the CA", err)
    ok, err = core.cert_verify(pic, flip(poc, -2))
    assert.is_nil(ok)
    assert.matches("^signature: the CA certificate .* self%-signed but its signature", err)
    -- the owner's key and name in an identity certificate: the right issuer, but not a CA
    local not_ca = assert(core.self_signed_cert(pok, pok_spki, "hsmsh Owner POC",
      {hash = "sha512", org = "hsmsh lab"}))
    ok, err = core.cert_verify(pic, not_ca)
    assert.is_nil(ok)
    assert.matches("^not a CA: ", err)
  end)

  it("refuses a CSR with one flipped byte in its signature", function()
    local bad = flip(csr, -2)
    local i = assert(core.csr_info(bad))
    assert.is_false(i.valid)
    assert.matches("does not verify", i.why)
    assert.equal("HSM 0042", i.cn)
    local der, err = core.issue_cert(pok, poc, bad)
    assert.is_nil(der)
    assert.matches("the certificate request's signature does not verify", err, 1, true)
    local path = pem_file("bad.csr", "CERTIFICATE REQUEST", bad)
    -- (OpenSSL 3.0's req -verify exits 0 even then: read what it says)
    local _, out = sh(("openssl req -in '%s' -verify -noout"):format(path))
    assert.matches("verify failure", out)
    -- a flipped byte in the signed part (the subject) is caught as well
    local at = csr:find("HSM 0042", 1, true)
    i = assert(core.csr_info(flip(csr, at)))
    assert.is_false(i.valid)
    assert.equal("ISM 0042", i.cn)
    assert.is_nil(core.issue_cert(pok, poc, flip(csr, at)))
  end)

  it("reports bad input with a message and raises on misuse", function()
    local der, err = core.csr_info(core.pem_encode("CERTIFICATE REQUEST", csr))
    assert.is_nil(der)
    assert.matches("PEM text, not DER", err)
    der, err = core.csr_info("garbage")
    assert.is_nil(der)
    assert.matches("not a DER PKCS#10 certificate request", err)
    der, err = core.issue_cert(pok, poc, poc)
    assert.is_nil(der)
    assert.matches("a certificate was given where", err)
    der, err = core.issue_cert(pok, poc, pik_spki)
    assert.is_nil(der)
    assert.matches("needs a subject common name", err)
    der, err = core.issue_cert(pok, csr, csr)
    assert.is_nil(der)
    assert.matches("^issuer certificate: ", err)
    der, err = core.issue_cert(pok, poc, csr, {serial = ("7f"):rep(21)})
    assert.is_nil(der)
    assert.matches("at most 20 octets", err)
    der, err = core.csr(pik, pik_spki, {cn = "x", serial = "not_printable!"})
    assert.is_nil(der)
    assert.matches("PrintableString", err)
    der, err = core.cert_verify(pic, "x")
    assert.is_nil(der)
    assert.matches("^CA certificate: ", err)
    assert.has_error(function() core.issue_cert(pok, poc, csr, {bogus = 1}) end)
    assert.has_error(function() core.issue_cert(pok, poc, csr, {serial = -1}) end)
    assert.has_error(function() core.issue_cert(pok, poc, csr, {serial = "xyz"}) end)
    assert.has_error(function() core.issue_cert(pok, poc, csr, {pathlen = 1}) end)
    assert.has_error(function() core.csr(pik, pik_spki, {serial = "1"}) end)
    assert.has_error(function() core.csr(pik, pik_spki, {cn = "a\0b"}) end)
  end)
end)
