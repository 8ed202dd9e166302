--- hsm.lab: the embedded SoftHSM2 lab. `hsmsh lab init` writes a SoftHSM2 configuration,
--- creates tokens blue and green (user PIN 1234, SO PIN 12345678), fills blue with a
--- realistic mix of keys, and makes three blank custodian smart cards card-1 .. card-3, each
--- with its own PIN (1111, 2222, 3333; docs/cards.md). Running it again changes nothing.
local core = require("hsm.core")
local keys = require("hsm.keys")
local attrs = require("hsm.attrs")

local M = {}

M.user_pin, M.so_pin = "1234", "12345678"
M.tokens = {"blue", "green"}
--- The custodians' cards: token label -> user PIN.
M.cards = {{label = "card-1", pin = "1111"}, {label = "card-2", pin = "2222"}, {label = "card-3", pin = "3333"}}

local function sh_ok(cmd) return os.execute(cmd) == true end

--- The sample keys of token blue: {label, mechanism, template} for secret keys, and
--- key pairs as {label, mechanism, public template, private template}.
local function ec(oid) return {CKA_EC_PARAMS = oid} end
local P256, P384, P521 = keys.curves["P-256"], keys.curves["P-384"], keys.curves["P-521"]

local function secret(label, id, mech, extra)
  local t = {CKA_TOKEN = true, CKA_PRIVATE = true, CKA_LABEL = label, CKA_ID = id,
             CKA_SENSITIVE = true, CKA_EXTRACTABLE = true, CKA_ENCRYPT = true,
             CKA_DECRYPT = true, CKA_WRAP = false, CKA_UNWRAP = false}
  for k, v in pairs(extra or {}) do t[k] = v end
  return {label = label, mech = mech, tmpl = t}
end

local function pair(label, id, mech, pub, priv)
  local p = {CKA_TOKEN = true, CKA_LABEL = label, CKA_ID = id, CKA_VERIFY = true}
  local k = {CKA_TOKEN = true, CKA_PRIVATE = true, CKA_LABEL = label, CKA_ID = id,
             CKA_SIGN = true, CKA_SENSITIVE = true, CKA_EXTRACTABLE = true}
  for a, v in pairs(pub) do p[a] = v end
  for a, v in pairs(priv or {}) do k[a] = v end
  return {label = label, mech = mech, pub = p, priv = k}
end

M.blue = {
  secret("aes-128", "\1\1", "CKM_AES_KEY_GEN", {CKA_VALUE_LEN = 16}),
  secret("aes-256", "\1\2", "CKM_AES_KEY_GEN", {CKA_VALUE_LEN = 32}),
  secret("aes-256-fixed", "\1\3", "CKM_AES_KEY_GEN", {CKA_VALUE_LEN = 32, CKA_EXTRACTABLE = false}),
  secret("kek", "\1\4", "CKM_AES_KEY_GEN", {CKA_VALUE_LEN = 32, CKA_WRAP = true, CKA_UNWRAP = true,
         CKA_ENCRYPT = false, CKA_DECRYPT = false}),
  secret("aes-256-trusted-only", "\1\5", "CKM_AES_KEY_GEN", {CKA_VALUE_LEN = 32, CKA_WRAP_WITH_TRUSTED = true}),
  secret("des3", "\2\1", "CKM_DES3_KEY_GEN"),
  secret("hmac", "\3\1", "CKM_GENERIC_SECRET_KEY_GEN", {CKA_VALUE_LEN = 32, CKA_ENCRYPT = false,
         CKA_DECRYPT = false, CKA_SIGN = true, CKA_VERIFY = true}),
  secret("shared-label", "\4\1", "CKM_AES_KEY_GEN", {CKA_VALUE_LEN = 32}),
  secret("shared-label", "\4\2", "CKM_AES_KEY_GEN", {CKA_VALUE_LEN = 16}),
  pair("rsa-2048", "\5\1", "CKM_RSA_PKCS_KEY_PAIR_GEN", {CKA_MODULUS_BITS = 2048, CKA_PUBLIC_EXPONENT = "\1\0\1"}),
  pair("rsa-3072", "\5\2", "CKM_RSA_PKCS_KEY_PAIR_GEN", {CKA_MODULUS_BITS = 3072, CKA_PUBLIC_EXPONENT = "\1\0\1"},
       {CKA_EXTRACTABLE = false}),
  pair("ec-p256", "\6\1", "CKM_EC_KEY_PAIR_GEN", ec(P256)),
  pair("ec-p384", "\6\2", "CKM_EC_KEY_PAIR_GEN", ec(P384)),
  pair("ec-p521", "\6\3", "CKM_EC_KEY_PAIR_GEN", ec(P521)),
}

local function write_conf(dir)
  local conf = dir .. "/softhsm2.conf"
  local f = io.open(conf, "r")
  if f then f:close() return conf end
  assert(sh_ok(("mkdir -p '%s/tokens'"):format(dir)), "cannot create " .. dir)
  f = assert(io.open(conf, "w"))
  f:write(("# hsmsh lab\ndirectories.tokendir = %s/tokens\nobjectstore.backend = file\n" ..
           "log.level = ERROR\nslots.removable = false\n"):format(dir))
  f:close()
  return conf
end

--- Creates a token in the free slot unless one with that label exists, with user PIN pin
--- (default M.user_pin). Returns its slot and whether it was made now.
function M.ensure_token(m, label, pin)
  for _, slot in ipairs(assert(m:slots())) do
    local ti = m:token_info(slot)
    if ti and ti.flags.CKF_TOKEN_INITIALIZED and ti.label == label then return slot, false end
  end
  for _, slot in ipairs(assert(m:slots())) do
    local ti = m:token_info(slot)
    if ti and not ti.flags.CKF_TOKEN_INITIALIZED then
      local so = core.secret(M.so_pin)
      assert(m:init_token(slot, so, label))
      -- SoftHSM2 renumbers the slot of a fresh token: find it again by label.
      for _, s2 in ipairs(assert(m:slots())) do
        local t2 = m:token_info(s2)
        if t2 and t2.label == label and not t2.flags.CKF_USER_PIN_INITIALIZED then
          local s = assert(m:open(s2, true))
          assert(s:login(so, "so"))
          assert(s:init_pin(core.secret(pin or M.user_pin)))
          s:close()
          return s2, true
        end
      end
      error("token " .. label .. " vanished after C_InitToken")
    end
  end
  error("no free slot for token " .. label)
end

--- A self-signed certificate for a key pair, signed on the token by its private key.
function M.certify(s, pub, priv, label, id)
  local spki = assert(keys.spki(pub))
  local der = assert(core.self_signed_cert(priv, spki, label, 3650))
  -- Subject, issuer and serial number as the DER has them (NSS needs the last two).
  return assert(s:create(attrs.completed({CKA_CLASS = "CKO_CERTIFICATE",
    CKA_CERTIFICATE_TYPE = "CKC_X_509", CKA_TOKEN = true, CKA_PRIVATE = false, CKA_LABEL = label,
    CKA_ID = id, CKA_VALUE = der})))
end

function M.fill_blue(s)
  for _, k in ipairs(M.blue) do
    if k.tmpl then assert(s:generate_key(k.mech, k.tmpl))
    else
      local pub, priv = assert(s:generate_key_pair(k.mech, k.pub, k.priv))
      M.certify(s, pub, priv, k.label, k.pub.CKA_ID)
    end
  end
  assert(s:create({CKA_CLASS = "CKO_DATA", CKA_TOKEN = true, CKA_PRIVATE = false,
                   CKA_LABEL = "site-config", CKA_APPLICATION = "hsmsh-lab",
                   CKA_VALUE = "lab data object"}))
end

--- hsmsh lab init: idempotent.
--- dir: where the lab lives (default core.lab_dir()); given, its tokens go there whatever
--- SOFTHSM2_CONF says.
function M.init(dir)
  local given = dir ~= nil
  dir = dir or core.lab_dir()
  if dir:sub(1, 1) ~= "/" then dir = (os.getenv("PWD") or ".") .. "/" .. dir end   -- SoftHSM2 needs it absolute
  local conf = write_conf(dir)
  local env = os.getenv("SOFTHSM2_CONF")
  if given then
    if env and env ~= conf then
      io.stderr:write(("hsmsh: --dir %s: SOFTHSM2_CONF=%s is not used for the lab\n"):format(dir, env))
    end
    core.use_softhsm2_conf(conf)
  elseif env and env ~= conf then
    io.stderr:write(("hsmsh: SOFTHSM2_CONF=%s is set and wins over the lab's %s\n"):format(env, conf))
  end
  local m = assert(core.load(nil))
  for _, label in ipairs(M.tokens) do
    local slot, created = M.ensure_token(m, label)
    if created and label == "blue" then
      local s = assert(m:open(slot, true))
      assert(s:login(core.secret(M.user_pin)))
      M.fill_blue(s)
      s:close()
    end
    io.stderr:write(("token %-6s %s (user PIN %s, SO PIN %s)\n"):format(label,
      created and "created" or "already there", M.user_pin, M.so_pin))
  end
  for _, card in ipairs(M.cards) do
    local _, created = M.ensure_token(m, card.label, card.pin)
    io.stderr:write(("card  %-6s %s (a custodian's smart card: user PIN %s, SO PIN %s)\n"):format(card.label,
      created and "created" or "already there", card.pin, M.so_pin))
  end
  io.stderr:write(("lab: %s\n"):format(dir))
  if given and conf ~= core.lab_dir() .. "/softhsm2.conf" then
    io.stderr:write(("use it with: export SOFTHSM2_CONF=%s\n"):format(conf))
  end
end

return M
