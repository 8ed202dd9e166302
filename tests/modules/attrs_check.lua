-- attrs_check.lua SOFTHSM_URI NSS_URI: an AES key moves SoftHSM2 -> NSS softokn under AES
-- key wrap with a KEK imported on both (token objects: NSS accepts the attributes on session
-- objects); the template hsm.attrs makes for NSS carries no
-- CKA_COPYABLE/CKA_DESTROYABLE (NSS's profile: unsupported) while they hold their defaults,
-- the diff counts NSS's absent attributes as their PKCS#11 defaults, a non-default value
-- (CKA_COPYABLE=false) raises naming the attribute, and without the profile entry NSS fails.
local hsm = require("hsm")
local attrs = require("hsm.attrs")
local profiles = require("hsm.profiles")
local src, dst = hsm.token(arg[1]), hsm.token(arg[2])
local failed = 0
local function check(ok, what)
  if ok then print("ok: " .. what) else failed = failed + 1; print("FAIL: " .. what) end
end
local kekv = string.rep("\42", 32)
local function kek(s)
  return assert(s:create({CKA_CLASS = "CKO_SECRET_KEY", CKA_KEY_TYPE = "CKK_AES", CKA_TOKEN = false,
    CKA_VALUE = kekv, CKA_WRAP = true, CKA_UNWRAP = true}))
end
local sk, dk = kek(src), kek(dst)
local function move(extra, quirks)
  local t = {CKA_TOKEN = true, CKA_VALUE_LEN = 16, CKA_EXTRACTABLE = true, CKA_ENCRYPT = true,
             CKA_SENSITIVE = true, CKA_LABEL = "hsmsh-attrs-probe"}
  for k, v in pairs(extra or {}) do t[k] = v end
  local key = assert(src:generate_key("CKM_AES_KEY_GEN", t))
  local cap = attrs.capture(key)
  local blob = assert(src:wrap("CKM_AES_KEY_WRAP", sk, key))
  key:destroy()
  local ok, tmpl = pcall(attrs.template, cap, "unwrap", quirks)
  if not ok then return nil, tmpl, cap end
  local u, err = dst:unwrap("CKM_AES_KEY_WRAP", dk, blob, tmpl)
  if not u then return nil, err, cap, tmpl end
  local got = attrs.capture(u)
  u:destroy()
  return got, nil, cap, tmpl
end

local nss = profiles.of(dst)
check(nss.name == "nss", "destination profile " .. tostring(nss.name))
local got, err, cap, tmpl = move({}, nss)
check(got ~= nil, "SoftHSM2 AES key unwrapped on NSS with its profile (" .. tostring(err) .. ")")
check(tmpl and tmpl.CKA_COPYABLE == nil and tmpl.CKA_DESTROYABLE == nil,
  "the template carries neither CKA_COPYABLE nor CKA_DESTROYABLE")
check(cap.CKA_COPYABLE == true and cap.CKA_DESTROYABLE == true, "the source has both, true")
if got then
  check(got.CKA_COPYABLE == nil and got.CKA_DESTROYABLE == nil, "NSS reads neither back")
  local names = {}
  for _, d in ipairs(attrs.diff(cap, got)) do names[d.name] = true end
  check(not names.CKA_COPYABLE and not names.CKA_DESTROYABLE,
    "absent CKA_COPYABLE/CKA_DESTROYABLE on NSS compare as their defaults (no diff)")
end

local _, err2 = move({CKA_COPYABLE = false}, nss)
check(tostring(err2):find("cannot record CKA_COPYABLE=false", 1, true) ~= nil,
  "CKA_COPYABLE=false raises naming it: " .. tostring(err2))

-- Without the profile entry, the module itself refuses the attribute.
local bare = {name = "nss-without-unsupported", unwrap_keep = nss.unwrap_keep}
local got3, err3 = move({}, bare)
check(got3 == nil and tostring(err3):find("CKR_GENERAL_ERROR", 1, true) ~= nil,
  "without the profile's unsupported entry NSS fails the unwrap: " .. tostring(err3))
sk:destroy(); dk:destroy()
os.exit(failed == 0 and 0 or 1)
