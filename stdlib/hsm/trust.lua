--- hsm.trust: HSM identities and trust between HSMs (seed 001, ProtectServer owner and
--- identity certificates), done with real X.509 on any PKCS#11 token. Each token is one "HSM".
---
---   PIK  identity key pair, EC P-521, generated on the token (sign, derive)
---   PIC  its certificate: self-signed, or signed by an owner key
---   POK  owner key pair, EC P-521: makes one token the site's CA
---   POC  the owner's self-signed CA certificate; stored on every token the CA certified
---   peer a trusted peer's PIC, stored with CKA_TRUSTED = true (only the SO may set it)
---
--- States (identity): none, PIK-pending (a key, no PIC yet: a CSR is out), self-signed,
--- owner-signed, or "invalid: why". Owner: none, POC-pending (the POK has not signed a PIC
--- for its own token yet), CA, stored (the POC of another token's POK).
---
--- Every certificate is checked before it is stored (key type, signature, chain, validity);
--- overwriting an identity asks first (opts.yes in batch). Signatures are ECDSA-SHA512 made on
--- the token with CKM_ECDSA through hsmsh's own session (see lua/l_x509.c): libp11's EVP_PKEY
--- would close every session of the slot when it opens one.
local core = require("hsm.core")
local keys = require("hsm.keys")
local ui = require("hsm.ui")

local M = {}

M.LABEL = {pik = "hsmsh-PIK", pic = "hsmsh-PIC", pok = "hsmsh-POK", poc = "hsmsh-POC",
           peer = "hsmsh-peer:"}
local ID = {identity = "hsmsh-identity", owner = "hsmsh-owner", peer = "hsmsh-peer"}
local P521 = "\x06\x05\x2b\x81\x04\x00\x23"   -- DER OID secp521r1

--- True when a DER SubjectPublicKeyInfo is an EC P-521 key: identities are P-521 only.
local function is_p521(spki)
  local t = core.spki_attrs(spki)
  return t ~= nil and t.CKA_KEY_TYPE == "CKK_EC" and t.CKA_EC_PARAMS == P521
end
local HASH = "sha512"
M.DAYS = {owner = 3650, identity = 1825}
M.ORG = "hsmsh"

-- ------------------------------------------------------------------ facts

--- Serial number and label of the session's token.
function M.token_facts(s)
  local ti = assert(s:module():token_info(s:slot()))
  return ti.serial, ti.label
end

--- The one object of class with label, or nil; several is an error (never "the first").
local function one(s, class, label)
  local found, err = s:find_all({CKA_CLASS = class, CKA_LABEL = label})
  if not found then error(("cannot search the token: %s"):format(err), 0) end
  if #found > 1 then
    error(("the token has %d objects labelled %s; remove the extra ones first"):format(#found, label), 0)
  end
  return found[1]
end

local function cert_value(obj) return obj and obj:get("CKA_VALUE") or nil end

--- The token's identity objects: {serial=, label=, pik=, pik_pub=, pic=DER, pic_obj=, pok=,
--- pok_pub=, poc=DER, poc_obj=}. Private keys are visible only in a user session.
function M.identity(s)
  local serial, label = M.token_facts(s)
  local id = {serial = serial, label = label}
  id.pik_pub = one(s, "CKO_PUBLIC_KEY", M.LABEL.pik)
  id.pik = one(s, "CKO_PRIVATE_KEY", M.LABEL.pik)
  id.pic_obj = one(s, "CKO_CERTIFICATE", M.LABEL.pic)
  id.pic = cert_value(id.pic_obj)
  id.pok_pub = one(s, "CKO_PUBLIC_KEY", M.LABEL.pok)
  id.pok = one(s, "CKO_PRIVATE_KEY", M.LABEL.pok)
  id.poc_obj = one(s, "CKO_CERTIFICATE", M.LABEL.poc)
  id.poc = cert_value(id.poc_obj)
  return id
end

--- Identity and owner states of id (from M.identity).
function M.states(id)
  local ident
  if not id.pik_pub then
    ident = "none"
  elseif not id.pic then
    ident = "PIK-pending"
  else
    local info = core.cert_info(id.pic)
    if not info or info.spki ~= keys.spki(id.pik_pub) then
      ident = "invalid: the PIC is not for the PIK"
    elseif info.subject == info.issuer and core.cert_verify(id.pic, id.pic) then
      ident = "self-signed"
    elseif id.poc then
      local ok, err = core.cert_verify(id.pic, id.poc)
      ident = ok and "owner-signed" or ("invalid: " .. tostring(err))
    else
      ident = "invalid: signed by " .. tostring(info.issuer_cn) .. ", whose POC is not stored"
    end
  end
  local owner = "none"
  if id.pok_pub and id.poc then
    owner = (id.pic and core.cert_verify(id.pic, id.poc)) and "CA" or "POC-pending"
  elseif id.poc then
    owner = "stored"
  end
  return ident, owner
end

--- SHA-256 (hex) of a certificate's public key: how images name identities.
function M.cert_fingerprint(der)
  local info = core.cert_info(der)
  return info and keys.hex(core.sha256(info.spki)) or nil
end

-- ------------------------------------------------------------------ checks

--- Raises unless der is a certificate for an EC P-521 key, valid now. what names it.
local function check_cert(der, what)
  local info, err = core.cert_info(der)
  if not info then error(("%s is not a certificate: %s"):format(what, err), 0) end
  if not is_p521(info.spki) then
    error(("%s (%s) is not for an EC P-521 key; identities are P-521 only"):format(what, info.subject or "?"), 0)
  end
  local now = os.time()
  if info.not_before > now then
    error(("%s (%s) is not yet valid (from %s)"):format(what, info.subject, os.date("!%Y-%m-%d %H:%M:%SZ", info.not_before)), 0)
  elseif info.not_after < now then
    error(("%s (%s) expired on %s"):format(what, info.subject, os.date("!%Y-%m-%d %H:%M:%SZ", info.not_after)), 0)
  end
  return info
end

--- Raises unless der verifies: against poc when given, else as a self-signed certificate.
local function check_chain(der, poc, what)
  if not poc then
    local info = core.cert_info(der)
    if info.subject ~= info.issuer then
      error(("%s is signed by %s, whose POC this token does not store: store that owner's POC first (store-poc)")
        :format(what, tostring(info.issuer)), 0)
    end
  end
  local ok, err = core.cert_verify(der, poc or der)
  if not ok then
    error(("%s does not verify %s: %s"):format(what, poc and "against the owner's POC" or "as a self-signed certificate", err), 0)
  end
end

--- True when the operator agrees to replace what; opts.yes answers in batch.
local function confirmed(question, opts)
  if opts.yes then return true end
  if opts.confirm then return opts.confirm(question) end
  local answer = ui.confirm(question, true)   -- replacing an identity: Enter keeps it
  if answer == nil then
    error(question:gsub("%?$", "") .. ": not confirmed (use --yes in batch)", 0)
  end
  return answer
end

--- Raises "kept (not confirmed)" unless the operator agrees to question.
local function keep_unless_confirmed(question, kept, opts)
  if not confirmed(question, opts) then error(kept .. " (not confirmed)", 0) end
end

-- ------------------------------------------------------------------ objects

local function cert_template(der, label, id, extra)
  local info = check_cert(der, label)
  local t = {CKA_CLASS = "CKO_CERTIFICATE", CKA_CERTIFICATE_TYPE = "CKC_X_509", CKA_TOKEN = true,
             CKA_PRIVATE = false, CKA_LABEL = label, CKA_ID = id, CKA_VALUE = der,
             CKA_SUBJECT = info.subject_der, CKA_ISSUER = info.issuer_der}
  for k, v in pairs(extra or {}) do t[k] = v end
  return t
end

--- Stores certificate der under label, replacing old (an object) after it is made.
local function put_cert(s, der, label, id, old, extra)
  local obj, err = s:create(cert_template(der, label, id, extra))
  if not obj then error(("cannot store %s: %s"):format(label, err), 0) end
  if old then old:destroy() end
  return obj
end

--- A new EC P-521 pair labelled label (the old pair, if any, is destroyed after the new one
--- exists). Identity keys sign and derive (ECDH for token images); owner keys only sign.
local function new_pair(s, label, id, derive, old_pub, old_priv)
  local tmp = label .. ".new"
  local pub, priv = s:generate_key_pair("CKM_EC_KEY_PAIR_GEN",
    {CKA_TOKEN = true, CKA_PRIVATE = false, CKA_LABEL = tmp, CKA_ID = id, CKA_VERIFY = true,
     CKA_EC_PARAMS = P521},
    {CKA_TOKEN = true, CKA_PRIVATE = true, CKA_LABEL = tmp, CKA_ID = id, CKA_SENSITIVE = true,
     CKA_EXTRACTABLE = false, CKA_SIGN = true, CKA_DERIVE = derive})
  if not pub then error(("cannot generate the %s: %s"):format(label, priv), 0) end
  if old_pub then old_pub:destroy() end
  if old_priv then old_priv:destroy() end
  assert(pub:set{CKA_LABEL = label})
  assert(priv:set{CKA_LABEL = label})
  return pub, priv
end

local function subject(serial) return {cn = "hsmsh HSM " .. serial, serial = serial, org = M.ORG} end

--- Asks before replacing an existing identity (PIK, PIC) on the token of id.
local function replace_identity(s, id, opts)
  if id.pik_pub or id.pic then
    keep_unless_confirmed(("Token %s (serial %s) already has an identity (%s); replace it?")
      :format(id.label, id.serial, (M.states(id))), ("the identity of token %s was kept"):format(id.label), opts)
  end
  local pub, priv = new_pair(s, M.LABEL.pik, ID.identity, true, id.pik_pub, id.pik)
  if id.pic_obj then id.pic_obj:destroy() end
  id.pik_pub, id.pik, id.pic, id.pic_obj = pub, priv, nil, nil
  return pub, priv
end

-- ------------------------------------------------------------------ operations

--- gen-owner: a new POK on the token and its self-signed POC (POC-pending until the POK signs
--- a PIC for this token). opts: {yes=, days=}. Returns the POC (DER).
function M.gen_owner(s, opts)
  opts = opts or {}
  local id = M.identity(s)
  if id.pok_pub or id.poc then
    keep_unless_confirmed(("Token %s (serial %s) already has an owner key and POC; replace them? Every PIC it signed will stop verifying")
      :format(id.label, id.serial), ("the owner key of token %s was kept"):format(id.label), opts)
  end
  local pub, priv = new_pair(s, M.LABEL.pok, ID.owner, false, id.pok_pub, id.pok)
  local poc, err = core.self_signed_cert(priv, keys.spki(pub), "hsmsh Owner POC " .. id.serial,
    {ca = true, days = opts.days or M.DAYS.owner, hash = HASH, org = M.ORG, subject_serial = id.serial})
  if not poc then error("cannot make the POC: " .. tostring(err), 0) end
  put_cert(s, poc, M.LABEL.poc, ID.owner, id.poc_obj)
  return poc
end

--- gen-csr: a new PIK on the token (PIK-pending) and its CSR. opts: {yes=}. Returns the DER
--- CSR; the file name the seed uses is M.csr_name(serial).
function M.gen_csr(s, opts)
  local id = M.identity(s)
  local pub, priv = replace_identity(s, id, opts or {})
  local csr, err = core.csr(priv, keys.spki(pub), subject(id.serial))
  if not csr then error("cannot make the CSR: " .. tostring(err), 0) end
  return csr, id.serial
end

function M.csr_name(serial) return ("HSM_%s.csr"):format(serial) end
function M.cert_name(serial) return ("HSM_%s.crt"):format(serial) end
M.POC_NAME = "Owner_POC.crt"

--- sign: the CA token's POK signs a CSR into a PIC. Refuses a CSR whose signature does not
--- verify, a key that is not P-521, or a request without the HSM's serial. Returns the PIC.
function M.sign_csr(ca, csr, opts)
  opts = opts or {}
  local info, err = core.csr_info(csr)
  if not info then error("not a certificate request: " .. tostring(err), 0) end
  if not info.valid then error("the CSR's signature does not verify (" .. tostring(info.why) .. "): altered or damaged", 0) end
  if not is_p521(info.spki) then
    error(("the CSR of %s is not for an EC P-521 key; identities are P-521 only"):format(info.subject), 0)
  end
  if not info.serial or info.serial == "" then error("the CSR names no HSM serial number (serialNumber)", 0) end
  local id = M.identity(ca)
  if not (id.pok and id.poc) then
    error(("token %s has no owner key (POK) and POC: run gen-owner there first"):format(id.label), 0)
  end
  check_cert(id.poc, "the POC of token " .. id.label)
  local pic, ierr = core.issue_cert(id.pok, id.poc, csr, {days = opts.days or M.DAYS.identity, hash = HASH})
  if not pic then error("cannot sign the CSR: " .. tostring(ierr), 0) end
  return pic, info.serial
end

--- store-poc: stores an owner's POC on the token (a self-signed CA certificate for P-521).
--- Replacing a different POC asks first. Returns true when it changed anything.
function M.store_poc(s, poc, opts)
  opts = opts or {}
  local info = check_cert(poc, "the POC")
  if not info.is_ca then error(("the POC (%s) is not a CA certificate"):format(info.subject), 0) end
  check_chain(poc, nil, "the POC")
  local id = M.identity(s)
  if id.poc == poc then return false end
  if id.pok_pub then
    error(("token %s is itself a CA (it holds a POK); it keeps its own POC"):format(id.label), 0)
  end
  if id.poc then
    keep_unless_confirmed(("Token %s already stores another owner's POC; replace it?"):format(id.label),
      ("the POC of token %s was kept"):format(id.label), opts)
  end
  put_cert(s, poc, M.LABEL.poc, ID.owner, id.poc_obj)
  return true
end

--- store-pic: stores the token's PIC after checking it is for the token's PIK and chains to
--- the stored POC (or, with no POC, verifies as self-signed). Returns true when stored.
function M.store_pic(s, pic, opts)
  opts = opts or {}
  local info = check_cert(pic, "the PIC")
  local id = M.identity(s)
  if not id.pik_pub then error(("token %s has no identity key (PIK): run gen-csr there first"):format(id.label), 0) end
  if info.spki ~= keys.spki(id.pik_pub) then
    error(("the PIC (%s) is for another key than token %s's PIK"):format(info.subject, id.label), 0)
  end
  if info.subject_serial ~= id.serial then
    error(("the PIC names HSM %s; token %s is HSM %s"):format(tostring(info.subject_serial), id.label, id.serial), 0)
  end
  check_chain(pic, id.poc, "the PIC")
  if id.pic == pic then return false end
  if id.pic then
    keep_unless_confirmed(("Token %s already has a PIC; replace it?"):format(id.label),
      ("the PIC of token %s was kept"):format(id.label), opts)
  end
  put_cert(s, pic, M.LABEL.pic, ID.identity, id.pic_obj)
  return true
end

--- gen-key (online CA): a new PIK on target, its CSR signed by the CA token's POK, the POC
--- and the PIC stored on target. ca and target may be the same session. Returns the PIC.
function M.gen_key(ca, target, opts)
  opts = opts or {}
  local cid = M.identity(ca)
  if not (cid.pok and cid.poc) then
    error(("token %s has no owner key (POK) and POC: run gen-owner there first"):format(cid.label), 0)
  end
  local csr = M.gen_csr(target, opts)
  local pic = M.sign_csr(ca, csr, opts)
  if M.token_facts(target) ~= cid.serial then M.store_poc(target, cid.poc, opts) end
  M.store_pic(target, pic, {yes = true})
  return pic
end

--- gen-selfsigned: a new PIK and a self-signed PIC. Returns the PIC.
function M.gen_selfsigned(s, opts)
  opts = opts or {}
  local id = M.identity(s)
  if id.poc and not id.pok then
    error(("token %s stores an owner's POC: its identity must be signed by that owner (gen-key or gen-csr)"):format(id.label), 0)
  end
  local pub, priv = replace_identity(s, id, opts)
  local sub = subject(id.serial)
  local pic, err = core.self_signed_cert(priv, keys.spki(pub), sub.cn, {days = opts.days or M.DAYS.identity,
    hash = HASH, org = sub.org, subject_serial = sub.serial})
  if not pic then error("cannot make the PIC: " .. tostring(err), 0) end
  put_cert(s, pic, M.LABEL.pic, ID.identity)
  return pic
end

--- The token's PIC or POC (which = "pic" | "poc") as DER; raises when it has none.
function M.export(s, which)
  local id = M.identity(s)
  local der = which == "poc" and id.poc or id.pic
  if not der then error(("token %s has no %s"):format(id.label, which:upper()), 0) end
  return der, id.serial
end

-- ------------------------------------------------------------------ certificate store

--- The client certificate store: HSMSH_CERT_STORE, else $XDG_DATA_HOME/hsmsh/certs.
function M.cert_store()
  local dir = os.getenv("HSMSH_CERT_STORE")
  if dir and dir ~= "" then return dir end
  local data = os.getenv("XDG_DATA_HOME")
  if not data or data == "" then data = (os.getenv("HOME") or ".") .. "/.local/share" end
  return data .. "/hsmsh/certs"
end

local function ensure_dir(dir) require("hsm.output").dir(dir, "certificate store") end

local function write_pem(path, der, label)
  require("hsm.exchange").write(path, core.pem_encode(label or "CERTIFICATE", der))
end

--- Reads a PEM or DER certificate (or CSR) file; raises naming the file.
function M.read_der(path)
  local data = require("hsm.exchange").read(path)
  if data:find("-----BEGIN", 1, true) then
    local der, err = core.pem_decode(data)
    if not der then error(("%s: %s"):format(path, err), 0) end
    return der
  end
  return data
end

--- Writes the owner's POC into the store dir as Owner_POC.crt. One POC per store: a
--- different one already there is refused. Returns the path.
function M.save_poc(dir, poc)
  ensure_dir(dir)
  local path = dir .. "/" .. M.POC_NAME
  local f = io.open(path, "rb")
  if f then
    f:close()
    if M.read_der(path) ~= poc then
      error(("%s already holds another owner's POC; a store holds one POC (use another HSMSH_CERT_STORE)"):format(path), 0)
    end
  else
    write_pem(path, poc)
  end
  return path
end

--- Writes an HSM's PIC into the store dir as HSM_<serial>.crt. Returns the path.
function M.save_pic(dir, serial, pic)
  ensure_dir(dir)
  local path = dir .. "/" .. M.cert_name(serial)
  write_pem(path, pic)
  return path
end

--- Writes an HSM's CSR into dir as HSM_<serial>.csr. Returns the path.
function M.save_csr(dir, serial, csr)
  ensure_dir(dir)
  local path = dir .. "/" .. M.csr_name(serial)
  write_pem(path, csr, "CERTIFICATE REQUEST")
  return path
end

--- The CSR files (HSM_<serial>.csr) in dir, sorted.
function M.csr_files(dir)
  local names, err = core.listdir(dir)
  if not names then error(("cannot list %s: %s"):format(dir, tostring(err)), 0) end
  local out = {}
  for _, e in ipairs(names) do
    if e.kind == "file" and e.name:match("^HSM_.+%.csr$") then out[#out + 1] = dir .. "/" .. e.name end
  end
  return out
end

--- fetch-certs: the token's PIC (HSM_<serial>.crt) and its owner's POC (Owner_POC.crt) into
--- dir (default M.cert_store()). Returns the paths written.
function M.fetch_certs(s, dir)
  dir = dir or M.cert_store()
  local id = M.identity(s)
  if not id.pic then error(("token %s has no PIC (identity %s)"):format(id.label, (M.states(id))), 0) end
  local written = {}
  if id.poc then written[#written + 1] = M.save_poc(dir, id.poc) end
  written[#written + 1] = M.save_pic(dir, id.serial, id.pic)
  return written
end

--- gen-key for recipes: the CA token certifies itself (with_ca) and each token of uris; each
--- PIC goes to the store dir. Opened sessions are kept in ctx.state.targets. Returns how
--- many identities were signed.
function M.certify(ctx, ca, uris, dir, with_ca)
  local n = 0
  local function one_token(s)
    local pic, serial = M.gen_key(ca, s, {yes = ctx.yes}), M.token_facts(s)
    local path = M.save_pic(dir, serial, pic)
    ctx.emit({event = "identity", serial = serial, state = "owner-signed", file = path})
    ctx.say("  HSM %s: PIK made, PIC signed by the POK and stored; %s", serial, path)
    n = n + 1
  end
  if with_ca then one_token(ca) end
  ctx.state.targets = ctx.state.targets or {}
  for _, uri in ipairs(uris) do
    local s = ctx.token(uri, {write = true})
    ctx.state.targets[#ctx.state.targets + 1] = s
    if M.token_facts(s) ~= M.token_facts(ca) then one_token(s) end
  end
  return n
end

--- The URIs of a comma-separated list (a recipe parameter), each checked. "all" (as the
--- seed's ctident takes it) is every initialized token of the module of like (a URI; nil:
--- the embedded default), each named by its serial and given like's query (module-path and
--- PIN attributes), so each is opened with the same PIN source.
function M.uri_list(text, what, like)
  local out = {}
  if text == "all" then
    local u = assert(core.uri_parse(like or "pkcs11:"))
    local query = (like or ""):match("%?(.*)$")
    local m, err = require("hsm").open(u.module_path or u.module_name)
    if not m then error(("%s=all: %s"):format(what, err), 0) end
    for _, slot in ipairs(assert(m:slots())) do
      local ti = m:token_info(slot)
      if ti and ti.flags.CKF_TOKEN_INITIALIZED then
        out[#out + 1] = "pkcs11:serial=" .. ti.serial .. (query and "?" .. query or "")
      end
    end
    return out
  end
  for _, item in ipairs(require("hsm").split_list(text or "")) do
    local u, err = core.uri_parse(item)
    if not u then error(("%s: %s"):format(what, err), 0) end
    out[#out + 1] = item
  end
  if #out == 0 then error(("%s: no token given"):format(what), 0) end
  return out
end

-- ------------------------------------------------------------------ trust

--- The trusted peers of the token: list of {serial=, der=, obj=, fingerprint=}.
function M.peers(s)
  local found, err = s:find_all({CKA_CLASS = "CKO_CERTIFICATE", CKA_TRUSTED = true})
  if not found then error(("cannot search the token: %s"):format(err), 0) end
  local out = {}
  for _, obj in ipairs(found) do
    local label = obj.label or ""
    if label:sub(1, #M.LABEL.peer) == M.LABEL.peer then
      local der = obj:get("CKA_VALUE")
      out[#out + 1] = {serial = label:sub(#M.LABEL.peer + 1), der = der, obj = obj,
                       fingerprint = M.cert_fingerprint(der)}
    end
  end
  table.sort(out, function(a, b) return a.serial < b.serial end)
  return out
end

--- The trusted peer whose identity key has fingerprint fp, checked again now (validity and,
--- when the token stores a POC, the chain); nil and why when there is none.
function M.trusted_peer(s, fp)
  local id = M.identity(s)
  for _, p in ipairs(M.peers(s)) do
    if p.fingerprint == fp then
      local ok, err = pcall(function()
        check_cert(p.der, "the trusted certificate of HSM " .. p.serial)
        check_chain(p.der, id.poc, "the trusted certificate of HSM " .. p.serial)
      end)
      if not ok then return nil, err end
      return p
    end
  end
  return nil, ("token %s does not trust the identity %s"):format(id.label, fp:sub(1, 16))
end

--- trust: the token of so_s (an SO session: CKA_TRUSTED needs one) trusts the HSM whose PIC
--- is peer. With an owner POC on the token, the peer must chain to it, and so must the
--- token's own PIC; otherwise the peer must be a valid self-signed PIC. Returns the serial.
function M.trust(so_s, peer, opts)
  opts = opts or {}
  local info = check_cert(peer, "the peer's PIC")
  local serial = info.subject_serial
  if not serial or serial == "" then error(("the peer's PIC (%s) names no HSM serial number"):format(info.subject), 0) end
  local id = M.identity(so_s)
  if serial == id.serial then error(("the PIC is token %s's own; an HSM does not trust itself"):format(id.label), 0) end
  if id.poc then
    local ident = M.states(id)
    if ident ~= "owner-signed" and ident ~= "none" and not (id.pok_pub and ident == "self-signed") then
      error(("token %s stores an owner's POC but its own PIC is %s: every HSM in a trust arrangement must be signed by the same POK")
        :format(id.label, ident), 0)
    end
  end
  check_chain(peer, id.poc, ("the PIC of HSM %s"):format(serial))
  local label = M.LABEL.peer .. serial
  local old = one(so_s, "CKO_CERTIFICATE", label)
  if old and old:get("CKA_VALUE") == peer then return serial, false end
  if old then
    keep_unless_confirmed(("Token %s already trusts another certificate for HSM %s; replace it?"):format(id.label, serial),
      ("token %s keeps its trust in HSM %s"):format(id.label, serial), opts)
  end
  put_cert(so_s, peer, label, ID.peer, old, {CKA_TRUSTED = true})
  return serial, true
end

--- remove: the token of so_s stops trusting HSM serial ("all": every peer). Returns the
--- serials removed.
function M.remove(so_s, serial)
  local gone = {}
  for _, p in ipairs(M.peers(so_s)) do
    if serial == "all" or p.serial == serial then
      local ok, err = p.obj:destroy()
      if not ok then error(("cannot remove the trust in HSM %s: %s"):format(p.serial, err), 0) end
      gone[#gone + 1] = p.serial
    end
  end
  return gone
end

M.LIST_COLUMNS = {{"token", "TOKEN"}, {"serial", "SERIAL"}, {"identity", "IDENTITY"},
                  {"owner", "OWNER"}, {"peers", "TRUSTS"}}

--- list: one row per session (print with ui.table(rows, M.LIST_COLUMNS)): {token=, serial=, identity=, owner=, peers=}.
function M.list(sessions)
  local rows = {}
  for _, s in ipairs(sessions) do
    local id = M.identity(s)
    local ident, owner = M.states(id)
    local peers = {}
    for _, p in ipairs(M.peers(s)) do peers[#peers + 1] = p.serial end
    rows[#rows + 1] = {token = id.label, serial = id.serial, identity = ident, owner = owner,
                       peers = #peers > 0 and table.concat(peers, ",") or "-"}
  end
  return rows
end

--- Raises unless every row (from M.list) has the identity state ident.
function M.expect(rows, ident)
  for _, r in ipairs(rows) do
    if r.identity ~= ident then error(("token %s ends %s, not %s"):format(r.token, r.identity, ident), 0) end
  end
end

--- True for the objects this module keeps on a token (identity, owner, trusted peers): they
--- belong to the HSM and never travel in a backup or a token image.
function M.is_identity_object(a)
  local label = a.CKA_LABEL or ""
  return label == M.LABEL.pik or label == M.LABEL.pic or label == M.LABEL.pok or label == M.LABEL.poc
    or label == M.LABEL.pik .. ".new" or label == M.LABEL.pok .. ".new"
    or label:sub(1, #M.LABEL.peer) == M.LABEL.peer or label:sub(1, 12) == "hsmsh-image:"
end

return M
