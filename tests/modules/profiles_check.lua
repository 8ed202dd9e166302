-- profiles_check.lua URI EXPECTED CERT.der: checks every entry of the token's hsm.profiles profile on
-- the real module, and that the profile is the one expected. Prints "ok: ..." per fact and
-- "FAIL: ..." per mismatch; exits 1 on any mismatch. Removing or changing an entry of the
-- profile makes a check fail: each measured fact must be declared, each declared one measured.
local hsm = require("hsm")
local profiles = require("hsm.profiles")
local uri, expected, cert_path = arg[1], arg[2], arg[3]
local s = hsm.token(uri)
local p = profiles.of(s)
local failed = 0
local function check(ok, what)
  if ok then print("ok: " .. what) else failed = failed + 1; print("FAIL: " .. what) end
end
check(p.name == expected, ("profile %s (expected %s)"):format(p.name, expected))

local function code(err) return err and err:match("(CKR_[%w_]+)") end
local function aes(extra)
  local t = {CKA_TOKEN = true, CKA_LABEL = "hsmsh-profile-probe", CKA_VALUE_LEN = 16,
             CKA_SENSITIVE = true, CKA_EXTRACTABLE = true, CKA_ENCRYPT = true,
             CKA_WRAP = true, CKA_UNWRAP = true}
  for k, v in pairs(extra or {}) do t[k] = v end
  return s:generate_key("CKM_AES_KEY_GEN", t)
end

-- no_secret_keygen: C_GenerateKey fails with that code although CKF_GENERATE is listed.
local listed = false
for _, me in ipairs(assert(s:module():mechanisms(s:slot()))) do
  if me.name == "CKM_AES_KEY_GEN" and me.flags and me.flags.CKF_GENERATE then listed = true end
end
local k, kerr = aes()
if p.no_secret_keygen then
  check(listed and not k and code(kerr) == p.no_secret_keygen,
    ("AES keygen listed with CKF_GENERATE but fails %s (got %s)"):format(p.no_secret_keygen, tostring(kerr)))
else
  check(k ~= nil, "AES keygen works (" .. tostring(kerr) .. ")")
end
if k then k:destroy() end

-- unsupported: exactly these candidates are refused in a key template, with these codes.
local candidates = {"CKA_COPYABLE", "CKA_DESTROYABLE", "CKA_WRAP_WITH_TRUSTED", "CKA_MODIFIABLE",
                    "CKA_PRIVATE", "CKA_DERIVE", "CKA_SIGN", "CKA_VERIFY", "CKA_DECRYPT"}
if not p.no_secret_keygen then
  for _, a in ipairs(candidates) do
    local key, err = aes({[a] = true})
    if key then key:destroy() end
    local want = (p.unsupported or {})[a]
    check((want == nil and key ~= nil) or (want ~= nil and code(err) == want),
      ("%s=true in a key template: %s (profile: %s)"):format(a, key and "accepted" or tostring(err),
        want or "supported"))
  end
end

-- unsupported, for certificates: exactly these candidates are refused in the template of a
-- token X.509 certificate (with its subject, issuer and serial), with these codes.
local f = assert(io.open(assert(cert_path, "give a DER certificate as the third argument"), "rb"))
local der = f:read("a")
f:close()
local info = assert(require("hsm.core").cert_info(der))
local serial = require("hsm.core").unhex(info.serial)
local cert_candidates = {CKA_NAME_HASH_ALGORITHM = "CKM_SHA_1", CKA_CERTIFICATE_CATEGORY = 0,
                         CKA_JAVA_MIDP_SECURITY_DOMAIN = 0}
for a, v in pairs(cert_candidates) do
  local c, err = s:create({CKA_CLASS = "CKO_CERTIFICATE", CKA_CERTIFICATE_TYPE = "CKC_X_509",
    CKA_TOKEN = true, CKA_LABEL = "hsmsh-profile-probe", CKA_VALUE = der, CKA_SUBJECT = info.subject_der,
    CKA_ISSUER = info.issuer_der, CKA_SERIAL_NUMBER = "\2" .. string.char(#serial) .. serial, [a] = v})
  if c then c:destroy() end
  local want = (p.unsupported or {})[a]
  check((want == nil and c ~= nil) or (want ~= nil and code(err) == want),
    ("%s in a certificate template: %s (profile: %s)"):format(a, c and "accepted" or tostring(err),
      want or "supported"))
end

-- no_token_data: a token CKO_DATA object is refused with that code.
local d, derr = s:create({CKA_CLASS = "CKO_DATA", CKA_TOKEN = true, CKA_LABEL = "hsmsh-profile-probe",
                          CKA_VALUE = "x"})
if d then d:destroy() end
if p.no_token_data then
  check(not d and code(derr) == p.no_token_data, ("token CKO_DATA refused with %s (got %s)"):format(p.no_token_data, tostring(derr)))
else
  check(d ~= nil, "token CKO_DATA can be stored (" .. tostring(derr) .. ")")
end

-- persists_session_objects: a session object made in a second session is still found after
-- that session is closed (PKCS#11 destroys it then).
local s2 = assert(s:module():open(s:slot()))
-- (a data object, or an AES key where the module refuses data objects: NSS)
local so = s2:create({CKA_CLASS = "CKO_DATA", CKA_TOKEN = false, CKA_PRIVATE = true,
                      CKA_LABEL = "hsmsh-profile-session-probe", CKA_VALUE = "x"})
  or assert(s2:create({CKA_CLASS = "CKO_SECRET_KEY", CKA_KEY_TYPE = "CKK_AES", CKA_TOKEN = false,
                       CKA_LABEL = "hsmsh-profile-session-probe", CKA_VALUE = ("\1"):rep(16)}))
s2:close()
local left = assert(s:find_all({CKA_LABEL = "hsmsh-profile-session-probe"}))
for _, o in ipairs(left) do o:destroy() end
check((#left > 0) == (p.persists_session_objects == true),
  ("a closed session's object is %s (profile: %s)"):format(#left > 0 and "still there" or "gone",
    p.persists_session_objects and "persists" or "destroyed"))

-- no_public_data: a token CKO_DATA object with CKA_PRIVATE=false is refused with that code.
local pd, pderr = s:create({CKA_CLASS = "CKO_DATA", CKA_TOKEN = true, CKA_PRIVATE = false,
                            CKA_LABEL = "hsmsh-profile-probe", CKA_VALUE = "x"})
if pd then pd:destroy() end
if p.no_token_data then
  check(not pd, "public token CKO_DATA refused too (" .. tostring(pderr) .. ")")
elseif p.no_public_data then
  check(not pd and code(pderr) == p.no_public_data,
    ("public token CKO_DATA refused with %s (got %s)"):format(p.no_public_data, tostring(pderr)))
else
  check(pd ~= nil, "public token CKO_DATA can be stored (" .. tostring(pderr) .. ")")
end

-- public_key_types: C_CreateObject of a token EC P-256 public key is accepted exactly when the
-- profile lists no limit or lists CKK_EC.
local ec = assert(require("hsm.core").spki_attrs(require("hsm.core").unhex(
  "3059301306072a8648ce3d020106082a8648ce3d03010703420004993f1342f282319916ca0fd4badf7c484a4938"
  .. "745e4c0e912bfb2414a156acc2c409e81333c3b5bcc2f7f84d934c4cb59ad562cfd19d5a2eed3622bcf21b9572")))
ec.CKA_CLASS, ec.CKA_TOKEN, ec.CKA_LABEL, ec.CKA_VERIFY = "CKO_PUBLIC_KEY", true, "hsmsh-profile-probe", true
local ep, eperr = s:create(ec)
if ep then ep:destroy() end
local limit = p.public_key_types
check((limit == nil or limit.CKK_EC == true) == (ep ~= nil),
  ("an EC public key can%s be created (%s; profile: %s)"):format(ep and "" or "not",
    ep and "accepted" or tostring(eperr), limit and "limited" or "any type"))

-- imposes: an RSA public key created without CKA_ALLOWED_MECHANISMS reads a non-empty list
-- exactly when the profile says the module imposes one.
local core = require("hsm.core")
local rsa = assert(core.spki_attrs(assert(core.spki_cert(der))))
rsa.CKA_CLASS, rsa.CKA_TOKEN, rsa.CKA_LABEL, rsa.CKA_VERIFY = "CKO_PUBLIC_KEY", true, "hsmsh-profile-probe", true
local rp = assert(s:create(rsa))
local am = rp:get("CKA_ALLOWED_MECHANISMS")
rp:destroy()
local imposed = type(am) == "table" and #am > 0
check(imposed == ((p.imposes or {}).CKA_ALLOWED_MECHANISMS == true),
  ("an RSA public key given no CKA_ALLOWED_MECHANISMS reads %d of them (profile: %s)"):format(
    type(am) == "table" and #am or 0, (p.imposes or {}).CKA_ALLOWED_MECHANISMS and "imposed" or "none"))

-- unwrap_drop / unrecorded: an AES key unwrapped (with CKM_AES_KEY_WRAP, else RSA-OAEP under
-- a session RSA pair) with CKA_VALUE_LEN, CKA_EXTRACTABLE or CKA_SENSITIVE=false in its template is refused
-- exactly when the profile drops it; without CKA_VALUE_LEN it reads 0 exactly when the
-- profile says unrecorded; one unwrapped with CKA_MODIFIABLE=false reads no KCV likewise.
local me = {}
for _, m in ipairs(assert(s:module():mechanisms(s:slot()))) do me[m.name] = m.flags or {} end
local function can(m) return me[m] and me[m].CKF_WRAP and me[m].CKF_UNWRAP end
local wk, uk, mech
if not p.no_secret_keygen and can("CKM_AES_KEY_WRAP") then
  wk = aes(); uk, mech = wk, "CKM_AES_KEY_WRAP"
elseif not p.no_secret_keygen and can("CKM_RSA_PKCS_OAEP") then
  wk, uk = require("hsm.transport").pair(s, {bits = 2048, label = "hsmsh-profile-probe"})
  mech = {"CKM_RSA_PKCS_OAEP", hash = "sha1"}
end
if wk then
  local key = assert(aes({CKA_TOKEN = false}))
  local blob = assert(s:wrap(mech, wk, key))
  local base = {CKA_CLASS = "CKO_SECRET_KEY", CKA_KEY_TYPE = "CKK_AES", CKA_TOKEN = false, CKA_ENCRYPT = true}
  local function with(extra)
    local t = {}
    for kk, v in pairs(base) do t[kk] = v end
    for kk, v in pairs(extra) do t[kk] = v end
    return t
  end
  for name, v in pairs({CKA_VALUE_LEN = 16, CKA_EXTRACTABLE = true, CKA_SENSITIVE = false}) do
    local u1, e1 = s:unwrap(mech, uk, blob, with({[name] = v}))
    if u1 then u1:destroy() end
    local drop = (p.unwrap_drop or {})[name]
    check((drop and not u1 and code(e1) == "CKR_ATTRIBUTE_READ_ONLY") or (not drop and u1 ~= nil),
      ("%s in an unwrap template: %s (profile: %s)"):format(name, u1 and "accepted" or tostring(e1),
        drop and "dropped" or "kept"))
  end
  local u2 = assert(s:unwrap(mech, uk, blob, base))
  local a = assert(u2:attrs())
  local unrec = (p.unrecorded or {}).CKA_VALUE_LEN
  check((unrec and (a.CKA_VALUE_LEN or 0) == 0) or (not unrec and a.CKA_VALUE_LEN == 16),
    ("unwrapped AES key reads CKA_VALUE_LEN %s (profile: %s)"):format(tostring(a.CKA_VALUE_LEN),
      unrec and "unrecorded" or "recorded"))
  u2:destroy()
  -- unrecorded CKA_CHECK_VALUE: a key unwrapped with CKA_MODIFIABLE=false reads no KCV.
  local u3 = assert(s:unwrap(mech, uk, blob, with({CKA_MODIFIABLE = false})))
  local kcv = (assert(u3:attrs())).CKA_CHECK_VALUE
  local unkcv = (p.unrecorded or {}).CKA_CHECK_VALUE
  check((unkcv and (kcv == nil or kcv == "")) or (not unkcv and kcv ~= nil and kcv ~= ""),
    ("AES key unwrapped with CKA_MODIFIABLE=false reads CKA_CHECK_VALUE %s (profile: %s)")
      :format(kcv and ("%q"):format(require("hsm").hex(kcv)) or "nil", unkcv and "unrecorded" or "recorded"))
  u3:destroy()
  key:destroy()
  wk:destroy()
  if uk ~= wk then uk:destroy() end
else
  check(not (p.unwrap_drop or p.unrecorded), "no key unwrap here, and the profile claims no unwrap facts")
end
os.exit(failed == 0 and 0 or 1)
