--- hsm.archive: a token backed up to one file and restored onto another (docs/archive-format.md).
---
---   local key = archive.key_from_components(s, components, {label=})  -- custodians' XOR key
---   archive.backup(src, key, path, {filter=, custody=})                -- every object
---   local a = archive.open(dst, key, path)        -- whole file authenticated first
---   archive.restore(dst, key, a, {journal=, previous=, on_item=})
---
--- Keys travel wrapped with AES-KWP under the archive key, which stays in the HSM; public
--- objects travel as their attributes. The file is authenticated as a whole with HMAC-SHA256
--- under a per-archive MAC key that is itself generated in the HSM and stored wrapped under
--- the archive key; the header (format version, algorithms) is inside the MAC, so nothing in
--- the file can be changed or downgraded without the restore refusing it before any write.
local core = require("hsm.core")
local json = require("hsm.json")
local keys = require("hsm.keys")
local attrs = require("hsm.attrs")
local wrap = require("hsm.wrap")
local migrate = require("hsm.migrate")
local verify = require("hsm.verify")
local output = require("hsm.output")

local M = {}

local TRAILER, VERSION = "HSMSHMAC", 1
--- What tells an archive from other files of the same layout (hsm.replicate's images).
M.ARCHIVE = {magic = "HSMSHARC", format = "hsmsh-archive", name = "archive", tail = 0}
local MAC_MECH, MAC_LEN = "CKM_SHA256_HMAC", 32
local MAX_HEADER, MAX_RECORD = 1 << 20, 16 << 20
local TRAILER_LEN = #TRAILER + 2 + MAC_LEN

-- ------------------------------------------------------------------ wrapping keys

--- The KCV of a component (or any AES key value held in an hsm.Secret), computed in the HSM.
function M.component_kcv(s, secret)
  local k, err = s:create({CKA_CLASS = "CKO_SECRET_KEY", CKA_KEY_TYPE = "CKK_AES", CKA_TOKEN = false,
                           CKA_VALUE = secret, CKA_ENCRYPT = true})
  if not k then return nil, err end
  local kcv = keys.kcv(k)
  k:destroy()
  return kcv
end

local KEY_ATTRS = {CKA_WRAP = true, CKA_UNWRAP = true, CKA_ENCRYPT = false, CKA_DECRYPT = false,
                   CKA_SIGN = false, CKA_VERIFY = false, CKA_EXTRACTABLE = false, CKA_SENSITIVE = true}

--- Creates the key the components combine to (XOR) on the session's token. components: list
--- of hsm.Secret holding the raw bytes (see read_components). opts: {label=, token=false,
--- attrs={extra attributes}}. Returns the key and its KCV. The combined value exists only in
--- an hsm.Secret (locked memory, wiped) until the token holds it.
function M.key_from_components(s, components, opts)
  opts = opts or {}
  if #components < 1 then error("no key components given", 0) end
  local len = #components[1]
  if len ~= 16 and len ~= 24 and len ~= 32 then
    error(("component 1 is %d bytes; an AES key needs 16, 24 or 32"):format(len), 0)
  end
  local acc = components[1]
  for i = 2, #components do
    if #components[i] ~= len then
      error(("component %d is %d bytes, component 1 is %d"):format(i, #components[i], len), 0)
    end
    local nxt = acc:xor(components[i])
    if acc ~= components[1] then acc:close() end
    acc = nxt
  end
  local t = {CKA_CLASS = "CKO_SECRET_KEY", CKA_KEY_TYPE = "CKK_AES", CKA_TOKEN = opts.token or false,
             CKA_PRIVATE = true, CKA_LABEL = opts.label or "hsmsh-archive-key", CKA_VALUE = acc}
  for k, v in pairs(KEY_ATTRS) do t[k] = v end
  for k, v in pairs(opts.attrs or {}) do t[k] = v end
  local key, err = s:create(t)
  -- A module that records no CKA_CHECK_VALUE (NSS, openCryptoki) for a key that cannot
  -- encrypt: the KCV of the same value as a throwaway session key that can.
  local kcv = key and (keys.kcv(key) or M.value_kcv(s, key) or M.component_kcv(s, acc))
  if acc ~= components[1] then acc:close() end
  if not key then error("cannot create the key from its components: " .. tostring(err), 0) end
  return key, kcv
end

--- A KCV for a key that cannot encrypt: the token's CKA_CHECK_VALUE.
function M.value_kcv(_, key)
  local cv = key:get("CKA_CHECK_VALUE")
  return cv and #cv > 0 and keys.hex(cv) or nil
end

--- Reads components from sources: "file:PATH" (hex text) or "prompt" (no echo). Each is
--- shown by its KCV; confirm(i, kcv) must return true to accept it (an interactive question,
--- or a comparison with KCVs the operator gave). Returns the list of hsm.Secret.
function M.read_components(s, sources, confirm)
  local out = {}
  for i, src in ipairs(sources) do
    local raw, err
    if src == "prompt" then
      raw, err = core.secret_prompt(("Enter key component %d (hex, not shown): "):format(i))
    else
      local path = src:match("^file:(.+)$")
      if not path then error(("component %d: expected file:PATH or prompt (not shown: it may be the component)"):format(i), 0) end
      raw, err = core.secret_file(path)
    end
    if not raw then error(("component %d: %s"):format(i, tostring(err)), 0) end
    local c, herr = raw:from_hex()
    raw:close()
    if not c then error(("component %d is %s"):format(i, herr), 0) end
    if #c ~= 16 and #c ~= 24 and #c ~= 32 then
      error(("component %d is %d bytes; an AES key needs 16, 24 or 32"):format(i, #c), 0)
    end
    local kcv, kerr = M.component_kcv(s, c)
    if not kcv then
      error(("component %d: the token does not take it as an AES key (%s)"):format(i, tostring(kerr)), 0)
    end
    if not confirm(i, kcv) then error(("component %d (KCV %s) was not confirmed"):format(i, kcv), 0) end
    out[i] = c
  end
  return out
end

-- ------------------------------------------------------------------ writing

local function record(kind, payload) return string.pack(">c1I4", kind, #payload) .. payload end

--- Backs up every (filtered) object of src into path. key: the archive key on src (wrap=true).
--- opts: {filter=predicate, custody={...header facts about the key's custody}, on_item=fn,
--- items=, all_items= (migrate.index's two lists, when the caller has them already);
--- for other formats built on this one (hsm.replicate's token images): kind={magic=,
--- format=}, header={extra header fields, inside the MAC}, trusted=true (key is
--- CKA_TRUSTED: keys with CKA_WRAP_WITH_TRUSTED may travel), seal=fn(tmp_path) (appends
--- more before the file appears), check_seal=fn(tmp_path, parsed) (raises unless it verifies),
--- replace=true (may replace an existing file: --yes)}.
--- Returns {objects=, keys=, blocked=}. The file appears only when complete, read back and
--- authenticated; an existing file is never replaced unless opts.replace.
function M.backup(src, key, path, opts)
  opts = opts or {}
  local kat, why = wrap.kwp(src, "CKF_WRAP")
  if not kat then error("the source cannot make an archive: " .. why, 0) end
  local kwp = kat.mech
  local mac_key = assert(src:generate{type = "GENERIC", bits = 256, token = false,
                                      CKA_EXTRACTABLE = true, CKA_SIGN = true, CKA_VERIFY = true})
  local mac_blob, err = src:wrap(kwp, key, mac_key)
  if not mac_blob then error("cannot wrap the MAC key under the archive key: " .. tostring(err), 0) end
  local items, all = opts.items, opts.all_items
  if not items then items, all = migrate.index(src, opts.filter) end
  local pubs = {}
  for _, it in ipairs(all) do
    if it.a.CKA_CLASS == "CKO_PUBLIC_KEY" then pubs[it.a.CKA_ID or ""] = it.obj end
  end
  local t = {kind = "aes-kwp", strength = wrap.strength(key), trusted = opts.trusted,
             unsafe = key.decrypt and "the archive key can also decrypt (CKA_DECRYPT=true)" or nil}
  local kind = opts.kind or M.ARCHIVE
  local ti = src:module():token_info(src:slot()) or {}
  local header = {format = kind.format, version = VERSION, hsmsh = core.version, time = os.time(),
    algorithms = {wrap = kwp, mac = MAC_MECH, kwp_aligned_only = kat.aligned_only or false},
    source = {label = ti.label, serial = ti.serial, model = ti.model, manufacturer = ti.manufacturer},
    objects = #items, archive_key = {kcv = keys.kcv(key) or M.value_kcv(src, key)},
    custody = opts.custody, mac_key = keys.hex(mac_blob)}
  for k, v in pairs(opts.header or {}) do header[k] = v end
  -- Checked, verified, never over an existing file (hsm.output); the MAC, computed over the
  -- bytes read back, is kept only once they are proven to be the bytes meant (SHA-256).
  local out = output.open(path, {replace = opts.replace, what = kind.name})
  local meant = core.sha256_stream()
  local function put(data) out:write(data); meant:update(data) end
  local ok, res = pcall(function()
    local hj = json.encode(header)
    put(kind.magic .. string.pack(">I2I4", VERSION, #hj) .. hj)
    local sum = {objects = 0, keys = 0, blocked = 0}
    for _, it in ipairs(items) do
      local cls = it.a.CKA_CLASS
      local is_key = cls == "CKO_SECRET_KEY" or cls == "CKO_PRIVATE_KEY"
      local entry = {ref = it.ref, attrs = attrs.to_data(it.a), check = it.check}
      local blob
      if is_key then
        entry.reason = migrate.blocker(it, t, {})
        if not entry.reason then
          local berr
          blob, berr = src:wrap(kwp, key, it.obj)
          if not blob then entry.reason = "wrap failed: " .. tostring(berr) end
        end
        if blob then
          local ev = verify.evidence(src, it.obj, it.a, function(id) return pubs[id] end, true)
          entry.evidence = ev and attrs.to_data(ev) or nil
          entry.blob = #blob
          sum.keys = sum.keys + 1
        else
          sum.blocked = sum.blocked + 1
        end
      end
      put(record("O", json.encode(entry)))
      if blob then put(record("B", blob)) end
      sum.objects = sum.objects + 1
      if opts.on_item then opts.on_item(entry) end
    end
    put(record("Z", json.encode({objects = sum.objects})))
    out:flush()
    -- One pass over the file: its SHA-256 against the bytes meant, and the MAC in the HSM.
    local back = core.sha256_stream()
    local mac = M.mac_file(src, mac_key, out.tmp, nil, nil, function(chunk) back:update(chunk) end)
    if back:final() ~= meant:final() then error("the bytes read back differ from those written", 0) end
    out:write(TRAILER .. string.pack(">I2", #mac) .. mac)
    out:flush()
    if opts.seal then opts.seal(out.tmp) end
    out:commit(function(tmp)
      local a = M.parse(tmp, kind)
      if M.mac_file(src, mac_key, tmp, a.body_end, a.mac) ~= true then error("its MAC does not verify", 0) end
      if opts.check_seal then opts.check_seal(tmp, a) end
    end)
    return sum
  end)
  mac_key:destroy()
  if not ok then
    out:abort()
    error(res, 0)
  end
  return res
end

--- Calls each(chunk) over a file's first `upto` bytes (all of it by default), 64 KiB at a
--- time: files are hashed and MAC'd as they stream, never loaded whole.
function M.stream_file(path, upto, each)
  local f = assert(io.open(path, "rb"))
  local left = upto or f:seek("end")
  f:seek("set", 0)
  while left > 0 do
    local chunk = f:read(math.min(left, 1 << 16))
    if not chunk then f:close(); error(("%s: unexpected end of file"):format(path), 0) end
    each(chunk)
    left = left - #chunk
  end
  f:close()
end

--- HMAC-SHA256 in the HSM over a file's first `upto` bytes (all of it by default), streamed;
--- with expect, verifies it instead. also(chunk), if given, sees each chunk too.
function M.mac_file(s, mac_key, path, upto, expect, also)
  local init = expect and s.verify_init or s.sign_init
  local update = expect and s.verify_update or s.sign_update
  assert(init(s, MAC_MECH, mac_key))
  M.stream_file(path, upto, function(chunk)
    assert(update(s, chunk))
    if also then also(chunk) end
  end)
  if expect then return s:verify_final(expect) end
  return assert(s:sign_final())
end

-- ------------------------------------------------------------------ reading

--- Parses the framing of an archive without trusting it: every length is checked against
--- what is left. Returns {header=, size=, records={{kind=, offset=, len=}...}, tail=} or
--- raises "archive PATH: ..." naming the problem. Reads the records' payloads only for "O"
--- and "Z". kind (default M.ARCHIVE): {magic=, format=, name=, tail= (bytes of the caller's
--- own trailer after the MAC, returned unchecked as tail)}.
function M.parse(path, kind)
  kind = kind or M.ARCHIVE
  local MAGIC, what = kind.magic, kind.name
  local f, err = io.open(path, "rb")
  if not f then error(("cannot read %s %s"):format(what, err), 0) end
  local size = f:seek("end")
  f:seek("set", 0)
  local function bad(msg)
    if io.type(f) == "file" then f:close() end
    error(("%s %s: %s"):format(what, path, msg), 0)
  end
  if size < #MAGIC + 6 + TRAILER_LEN + kind.tail then bad(("too short (%d bytes)"):format(size)) end
  if f:read(#MAGIC) ~= MAGIC then bad(("not an hsmsh %s (bad magic)"):format(what)) end
  local version, hlen = string.unpack(">I2I4", f:read(6))
  if version ~= VERSION then bad(("format version %d is not supported (this hsmsh reads %d)"):format(version, VERSION)) end
  local body_end = size - kind.tail - TRAILER_LEN
  if hlen > MAX_HEADER or #MAGIC + 6 + hlen > body_end then bad("header length out of range") end
  local header, herr = json.decode(f:read(hlen))
  if type(header) ~= "table" or header.format ~= kind.format then bad("bad header: " .. tostring(herr or ("not an " .. what .. " header"))) end
  local recs, pos, ended = {}, #MAGIC + 6 + hlen, false
  while pos < body_end do
    if ended then bad(("data after the end record at byte %d"):format(pos)) end
    if body_end - pos < 5 then bad(("truncated record at byte %d"):format(pos)) end
    local kind, len = string.unpack(">c1I4", f:read(5))
    pos = pos + 5
    if len > MAX_RECORD or len > body_end - pos then bad(("record at byte %d is longer than the file"):format(pos - 5)) end
    local r = {kind = kind, offset = pos, len = len}
    if kind == "O" or kind == "Z" then
      local v, jerr = json.decode(f:read(len))
      if type(v) ~= "table" then bad(("record at byte %d: %s"):format(pos - 5, jerr or "not an object")) end
      r.value = v
      ended = kind == "Z"
    elseif kind == "B" then
      f:seek("cur", len)
    else
      bad(("unknown record type at byte %d"):format(pos - 5))
    end
    pos = pos + len
    recs[#recs + 1] = r
  end
  if not ended then bad("no end record (truncated)") end
  f:seek("set", body_end)
  local tail = f:read(TRAILER_LEN)
  local extra = f:read(kind.tail) or ""
  f:close()
  if tail:sub(1, #TRAILER) ~= TRAILER or string.unpack(">I2", tail, #TRAILER + 1) ~= MAC_LEN then
    bad("no MAC trailer (truncated or not closed)")
  end
  return {path = path, header = header, size = size, body_end = body_end, records = recs,
          mac = tail:sub(#TRAILER + 3), tail = extra, kind = kind}
end

-- The restoring token's AES-KWP (either name is RFC 5649, whichever the archive records).
local function unwrap_mech(s)
  return wrap.kwp_mech(s, "CKF_UNWRAP", "this token cannot restore an archive")
end

--- Opens an archive for restore onto session s with the archive key: parses it, unwraps the
--- MAC key with the archive key and checks the MAC over the whole file, all before anything
--- is written. path may also be what M.parse returned. Returns the parsed archive; raises
--- naming the problem.
function M.open(s, key, path)
  local a = type(path) == "table" and path or M.parse(path)
  path = a.path
  local h = a.header
  local want = h.archive_key and h.archive_key.kcv
  local have = keys.kcv(key) or M.value_kcv(s, key)
  if want and have and want ~= have then
    error(("%s %s was made with the key of KCV %s; this key's KCV is %s"):format(a.kind.name, path, want, have), 0)
  end
  -- The token's own AES-KWP first: a module without one is named as such, not as a wrong key.
  local kwp = unwrap_mech(s)
  local mac_blob = type(h.mac_key) == "string" and h.mac_key:match("^%x+$") and require("hsm").unhex(h.mac_key)
  if not mac_blob then error(("%s %s: bad header (no MAC key)"):format(a.kind.name, path), 0) end
  local mac_key, err = s:unwrap(kwp, key, mac_blob, {CKA_CLASS = "CKO_SECRET_KEY",
    CKA_KEY_TYPE = "CKK_GENERIC_SECRET", CKA_TOKEN = false, CKA_VERIFY = true, CKA_SIGN = false})
  if not mac_key then
    error(("%s %s: its MAC key does not unwrap with this key (%s): wrong key or altered %s"):format(a.kind.name, path, err, a.kind.name), 0)
  end
  local ok, verr = M.mac_file(s, mac_key, path, a.body_end, a.mac)
  mac_key:destroy()
  if ok ~= true then
    error(("%s %s fails its MAC check%s: altered, truncated or made with another key; nothing was written")
      :format(a.kind.name, path, verr and (" (" .. tostring(verr) .. ")") or ""), 0)
  end
  return a
end

--- The objects of an opened archive as migration items; blobs are read when needed.
function M.items(a)
  local items, last = {}, nil
  for _, r in ipairs(a.records) do
    if r.kind == "O" then
      local v = r.value
      last = {ref = v.ref, a = attrs.from_data(v.attrs or {}), check = v.check, blocked = v.reason,
              evidence = v.evidence and attrs.from_data(v.evidence) or nil}
      items[#items + 1] = last
    elseif r.kind == "B" and last then
      local off, len, path = r.offset, r.len, a.path
      last.load_blob = function()
        local f = assert(io.open(path, "rb"))
        f:seek("set", off)
        local b = f:read(len)
        f:close()
        return b
      end
    end
  end
  return items
end

--- Plans the restore of an opened archive onto dst (read-only), like a migration plan.
--- opts: {previous=, capacity=, trusted= (the file's key was CKA_TRUSTED), workers={sessions
--- on dst's token: migrate.apply{workers=N} unwraps the keys in N threads, a session each}}.
function M.plan(dst, key, a, opts)
  opts = opts or {}
  local kat = wrap.kwp(dst, "CKF_UNWRAP")
  local kwp = unwrap_mech(dst)
  local src_quirk = a.header.algorithms and a.header.algorithms.kwp_aligned_only or false
  local t = {kind = "aes-kwp", aligned_only = src_quirk or kat.aligned_only, trusted = opts.trusted,
             same_quirk = src_quirk == (kat.aligned_only or false), workers = opts.workers,
             unwrap = function(blob, tmpl) return dst:unwrap(kwp, key, blob, tmpl) end}
  -- The archive key is a session object: every session of this application sees it.
  function t.unwrap_batch(jobs) return dst:unwrap_parallel(kwp, key, jobs, t.workers or {dst}) end
  return migrate.plan_items(M.items(a), dst, {transport = t, previous = opts.previous,
    capacity = opts.capacity}, {prove = function(it, d_obj)
      return verify.check_evidence(dst, d_obj, it.a, it.evidence)
    end})
end

return M
