--- hsm.sks: Scalable Key Storage as Luna HSMs do it (seed 004), on any PKCS#11 token. An
--- SKS master key (SMK) stays on the token; keys live outside as encrypted SKS blobs and are
--- inserted back as session objects when needed.
---
---   local smk = sks.smk(s)                         -- the token's SMK (made once)
---   local blobs = sks.extract(s, smk, {key1, ...}) -- blobs of at most 64 KB each
---   local objs = sks.insert(s, smk, blob)          -- session objects, blob checked first
---   sks.backup_smk(s, smk, backup)                 -- a new container on a backup token
---   sks.restore_smk(backup, container, s, confirm) -- overwrites the SMK only if confirmed
---
--- Blob: "HSMSKS01" | u32 header length | header JSON {smk_kcv, count, mac_key (wrapped under
--- the SMK)} | per key: u32 length + manifest JSON (attributes, check value), u32 length +
--- key wrapped with AES-KWP under the SMK | HMAC-SHA256 (32 bytes) of everything before it,
--- computed in the HSM with the blob's own MAC key.
local json = require("hsm.json")
local wrap = require("hsm.wrap")
local keys = require("hsm.keys")
local attrs = require("hsm.attrs")
local migrate = require("hsm.migrate")
local transport = require("hsm.transport")
local verify = require("hsm.verify")

local M = {}
local MAGIC, MAC = "HSMSKS01", "CKM_SHA256_HMAC"
M.MAX_BLOB = 64 * 1024

local SMK_ATTRS = {CKA_CLASS = "CKO_SECRET_KEY", CKA_KEY_TYPE = "CKK_AES", CKA_TOKEN = true,
  CKA_PRIVATE = true, CKA_SENSITIVE = true, CKA_EXTRACTABLE = true, CKA_WRAP = true,
  CKA_UNWRAP = true, CKA_ENCRYPT = false, CKA_DECRYPT = false, CKA_SIGN = false, CKA_VERIFY = false}

local function smk_kcv(s, smk)
  local cv = smk:get("CKA_CHECK_VALUE")
  return cv and #cv > 0 and keys.hex(cv) or nil
end

--- The token's SMK (label "hsmsh-smk" unless given), generated on first use.
function M.smk(s, label, create)
  label = label or "hsmsh-smk"
  local l = assert(s:find_all({CKA_CLASS = "CKO_SECRET_KEY", CKA_LABEL = label}))
  if #l > 1 then error(("%d keys are labelled %s (expected one SMK)"):format(#l, label), 0) end
  if l[1] or create == false then return l[1] end
  local t = {CKA_LABEL = label, CKA_VALUE_LEN = 32}
  for k, v in pairs(SMK_ATTRS) do t[k] = v end
  t.CKA_CLASS, t.CKA_KEY_TYPE = nil, nil
  return assert(s:generate_key("CKM_AES_KEY_GEN", t))
end

local function u32(n) return string.pack(">I4", n) end

-- One blob for a list of {a=, blob=} entries.
local function seal(s, smk, entries)
  local mac_key = assert(s:generate{type = "GENERIC", bits = 256, token = false,
                                    CKA_EXTRACTABLE = true, CKA_SIGN = true, CKA_VERIFY = true})
  local wrapped = assert(s:wrap(wrap.kwp_mech(s, "CKF_WRAP"), smk, mac_key))
  local header = json.encode({format = "hsmsh-sks", version = 1, smk_kcv = smk_kcv(s, smk),
                              count = #entries, mac_key = keys.hex(wrapped)})
  local parts = {MAGIC, u32(#header), header}
  for _, e in ipairs(entries) do
    local m = json.encode({attrs = attrs.to_data(e.a), check = e.check})
    parts[#parts + 1] = u32(#m) .. m .. u32(#e.blob) .. e.blob
  end
  local body = table.concat(parts)
  local mac = assert(s:sign(MAC, mac_key, body))
  mac_key:destroy()
  return body .. mac
end

--- Extracts keys as SKS blobs: each key wrapped under the SMK with its attributes. Keys are
--- grouped into blobs of at most MAX_BLOB bytes; a single key too large for one is an error.
function M.extract(s, smk, objects)
  local blobs, group, size = {}, {}, 1024
  for _, obj in ipairs(objects) do
    local a = attrs.capture(obj)
    local blob, err = s:wrap(wrap.kwp_mech(s, "CKF_WRAP"), smk, obj)
    if not blob then error(("cannot extract %s: %s"):format(migrate.ref(a), err), 0) end
    local e = {a = a, blob = blob, check = keys.kcv(obj) or keys.fingerprint(obj)}
    local need = #blob + #json.encode(attrs.to_data(a)) + 128
    if need + 1024 > M.MAX_BLOB then error(("%s does not fit in a 64 KB SKS blob"):format(migrate.ref(a)), 0) end
    if size + need > M.MAX_BLOB then
      blobs[#blobs + 1] = seal(s, smk, group)
      group, size = {}, 1024
    end
    group[#group + 1], size = e, size + need
  end
  if #group > 0 then blobs[#blobs + 1] = seal(s, smk, group) end
  return blobs
end

--- Parses a blob's framing without trusting it (every length bounded by what is left).
--- Returns header, entries {a=, check=, blob=}, body (the authenticated part), mac; raises
--- "SKS blob: ..." naming the problem.
function M.parse(blob)
  local function bad(msg) error("SKS blob: " .. msg, 0) end
  if type(blob) ~= "string" or #blob < #MAGIC + 4 + 32 then bad("too short") end
  if blob:sub(1, #MAGIC) ~= MAGIC then bad("bad magic (not an SKS blob)") end
  if #blob > M.MAX_BLOB then bad(("%d bytes, more than 64 KB"):format(#blob)) end
  local body, mac = blob:sub(1, -33), blob:sub(-32)
  local pos = #MAGIC + 1
  local function take()
    if pos + 3 > #body then bad("truncated") end
    local n = string.unpack(">I4", body, pos)
    if n > #body - pos - 3 then bad("a length runs past the end") end
    local v = body:sub(pos + 4, pos + 3 + n)
    pos = pos + 4 + n
    return v
  end
  local header = json.decode(take())
  if type(header) ~= "table" or header.format ~= "hsmsh-sks" or header.version ~= 1 then bad("bad header") end
  local count = math.tointeger(header.count)
  if not count or count < 0 or count > M.MAX_BLOB then bad("bad key count") end
  local entries = {}
  for _ = 1, count do
    local m = json.decode(take())
    if type(m) ~= "table" or (m.attrs ~= nil and type(m.attrs) ~= "table") then bad("bad manifest") end
    local ok, a = pcall(attrs.from_data, m.attrs or {})
    if not ok then bad(tostring(a)) end
    entries[#entries + 1] = {a = a, check = m.check, blob = take()}
  end
  if pos ~= #body + 1 then bad("data after the last key") end
  return header, entries, body, mac
end

-- Parses and authenticates a blob with the token's SMK; nothing is created until the
-- whole blob checks out.
local function open(s, smk, blob)
  local header, entries, body, mac = M.parse(blob)
  local function bad(msg) error("SKS blob: " .. msg, 0) end
  local want = smk_kcv(s, smk)
  if header.smk_kcv and want and header.smk_kcv ~= want then
    bad(("made under the SMK of KCV %s; this token's SMK is %s"):format(tostring(header.smk_kcv), want))
  end
  local mk = type(header.mac_key) == "string" and header.mac_key:match("^%x+$")
  local mac_key = mk and #mk % 2 == 0 and s:unwrap(wrap.kwp_mech(s, "CKF_UNWRAP"), smk, require("hsm").unhex(mk), {CKA_CLASS = "CKO_SECRET_KEY",
    CKA_KEY_TYPE = "CKK_GENERIC_SECRET", CKA_TOKEN = false, CKA_VERIFY = true})
  if not mac_key then bad("its MAC key does not unwrap under this SMK (another SMK, or altered)") end
  local ok = s:verify(MAC, mac_key, body, mac)
  mac_key:destroy()
  if ok ~= true then bad("fails its MAC check (altered or truncated)") end
  return entries
end

--- Inserts a blob: its keys become session objects on the token (CKA_TOKEN=false), with
--- their attributes, each checked against its recorded check value.
function M.insert(s, smk, blob)
  local out = {}
  for _, e in ipairs(open(s, smk, blob)) do
    local t = attrs.template(e.a, "unwrap", attrs.quirks(s))
    t.CKA_TOKEN = false
    local obj, err = s:unwrap(wrap.kwp_mech(s, "CKF_UNWRAP"), smk, e.blob, t)
    if not obj then error(("SKS insert of %s failed: %s"):format(migrate.ref(e.a), err), 0) end
    local got = keys.kcv(obj) or keys.fingerprint(obj)
    if e.check and got and got ~= e.check then
      obj:destroy()
      error(("SKS insert of %s: check value %s, the blob recorded %s"):format(migrate.ref(e.a), got, e.check), 0)
    end
    out[#out + 1] = obj
  end
  return out
end

-- ------------------------------------------------------------------ SMK backup and restore

-- Copies the SMK from one token to another (RSA-AES transport), verified by a key wrapped
-- with one and unwrapped with the other. Returns the copy.
local function copy_smk(from, smk, to, label, id)
  local t = transport.new(from, to, {kind = "rsa-aes"})
  local a = attrs.capture(smk)
  local tmpl = attrs.template(a, "unwrap", attrs.quirks(to))
  tmpl.CKA_LABEL, tmpl.CKA_ID, tmpl.CKA_TOKEN = label, id or a.CKA_ID, true
  local blob, err = t.wrap(smk)
  local copy = blob and t.unwrap(blob, tmpl)
  t.close()
  if not copy then error("cannot copy the SMK: " .. tostring(err), 0) end
  local ok, how = pcall(verify.functional, from, smk, to, copy, a, function() end)
  if not ok or how:find("only", 1, true) then
    copy:destroy()
    error("the SMK copy does not verify: " .. tostring(how), 0)
  end
  return copy
end

--- Backs the SMK up into a new container on the backup token, named from the source serial
--- and the time (never an existing one). Returns the container name.
function M.backup_smk(s, smk, backup)
  local serial = (s:module():token_info(s:slot()) or {}).serial or "unknown"
  local name = ("%s_%s"):format(serial, os.date("!%Y:%m:%d-%H:%M:%S"))
  local taken = assert(backup:find_all({CKA_LABEL = name}))
  if #taken > 0 then error(("container %s already exists on the backup token; not overwriting it"):format(name), 0) end
  copy_smk(s, smk, backup, name, "SMK")
  return name
end

--- The objects of a container on the backup token: its SMK, and how many others it holds.
function M.container(backup, name)
  local l = assert(backup:find_all({CKA_LABEL = name}))
  local smk, others = nil, 0
  for _, o in ipairs(l) do
    if o.class == "CKO_SECRET_KEY" and o.id == "SMK" and not smk then smk = o else others = others + 1 end
  end
  if not smk then error(("no SMK in container %s on the backup token"):format(name), 0) end
  return smk, others
end

--- Restores the SMK of a container onto the token. An existing SMK is overwritten only when
--- confirm(question) returns true; warn(text) hears about other objects in the container.
function M.restore_smk(backup, name, s, label, confirm, warn)
  label = label or "hsmsh-smk"
  local bsmk, others = M.container(backup, name)
  if others > 0 then
    warn(("container %s holds %d other object(s); only the SMK is restored (a dedicated SMK container is recommended)")
      :format(name, others))
  end
  local current = M.smk(s, label, false)
  if current and not confirm(("The SMK of %s will be overwritten (destroyed). Proceed?"):format(label)) then
    error("not overwriting the existing SMK without confirmation", 0)
  end
  local copy = copy_smk(backup, bsmk, s, label .. ".restoring", "")
  if current then current:destroy() end
  copy:set({CKA_LABEL = label})
  return copy
end

return M
