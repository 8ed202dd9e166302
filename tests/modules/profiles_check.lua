-- profiles_check.lua URI EXPECTED: checks every entry of the token's hsm.profiles profile on
-- the real module, and that the profile is the one expected. Prints "ok: ..." per fact and
-- "FAIL: ..." per mismatch; exits 1 on any mismatch. Removing or changing an entry of the
-- profile makes a check fail: each measured fact must be declared, each declared one measured.
local hsm = require("hsm")
local profiles = require("hsm.profiles")
local uri, expected = arg[1], arg[2]
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

-- no_token_data: a token CKO_DATA object is refused with that code.
local d, derr = s:create({CKA_CLASS = "CKO_DATA", CKA_TOKEN = true, CKA_LABEL = "hsmsh-profile-probe",
                          CKA_VALUE = "x"})
if d then d:destroy() end
if p.no_token_data then
  check(not d and code(derr) == p.no_token_data, ("token CKO_DATA refused with %s (got %s)"):format(p.no_token_data, tostring(derr)))
else
  check(d ~= nil, "token CKO_DATA can be stored (" .. tostring(derr) .. ")")
end

-- unwrap_drop / unrecorded (CKA_VALUE_LEN): an AES key wrapped with CKM_AES_KEY_WRAP and
-- unwrapped with CKA_VALUE_LEN in its template is refused; without it, it reads 0.
local wk = not p.no_secret_keygen and aes()
local me = {}
for _, m in ipairs(assert(s:module():mechanisms(s:slot()))) do me[m.name] = m.flags or {} end
if wk and me.CKM_AES_KEY_WRAP and me.CKM_AES_KEY_WRAP.CKF_UNWRAP then
  local key = assert(aes({CKA_TOKEN = false}))
  local blob = assert(s:wrap("CKM_AES_KEY_WRAP", wk, key))
  local base = {CKA_CLASS = "CKO_SECRET_KEY", CKA_KEY_TYPE = "CKK_AES", CKA_TOKEN = false, CKA_ENCRYPT = true}
  local with = {}
  for kk, v in pairs(base) do with[kk] = v end
  with.CKA_VALUE_LEN = 16
  local u1, e1 = s:unwrap("CKM_AES_KEY_WRAP", wk, blob, with)
  if u1 then u1:destroy() end
  local drop = (p.unwrap_drop or {}).CKA_VALUE_LEN
  check((drop and not u1 and code(e1) == "CKR_ATTRIBUTE_READ_ONLY") or (not drop and u1 ~= nil),
    ("CKA_VALUE_LEN in an unwrap template: %s (profile: %s)"):format(u1 and "accepted" or tostring(e1),
      drop and "dropped" or "kept"))
  local u2 = assert(s:unwrap("CKM_AES_KEY_WRAP", wk, blob, base))
  local a = assert(u2:attrs())
  local unrec = (p.unrecorded or {}).CKA_VALUE_LEN
  check((unrec and (a.CKA_VALUE_LEN or 0) == 0) or (not unrec and a.CKA_VALUE_LEN == 16),
    ("unwrapped AES key reads CKA_VALUE_LEN %s (profile: %s)"):format(tostring(a.CKA_VALUE_LEN),
      unrec and "unrecorded" or "recorded"))
  u2:destroy()
  -- unrecorded CKA_CHECK_VALUE: a key unwrapped with CKA_MODIFIABLE=false reads no KCV.
  local frozen = {}
  for kk, v in pairs(base) do frozen[kk] = v end
  frozen.CKA_MODIFIABLE = false
  local u3 = assert(s:unwrap("CKM_AES_KEY_WRAP", wk, blob, frozen))
  local kcv = (assert(u3:attrs())).CKA_CHECK_VALUE
  local unkcv = (p.unrecorded or {}).CKA_CHECK_VALUE
  check((unkcv and (kcv == nil or kcv == "")) or (not unkcv and kcv ~= nil and kcv ~= ""),
    ("AES key unwrapped with CKA_MODIFIABLE=false reads CKA_CHECK_VALUE %s (profile: %s)")
      :format(kcv and ("%q"):format(require("hsm").hex(kcv)) or "nil", unkcv and "unrecorded" or "recorded"))
  u3:destroy()
  key:destroy()
else
  check(not (p.unwrap_drop or p.unrecorded), "no AES key wrap here, and the profile claims no unwrap facts")
end
if wk then wk:destroy() end
os.exit(failed == 0 and 0 or 1)
