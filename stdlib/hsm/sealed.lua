--- hsm.sealed: files encrypted under an AES key that stays in an HSM, in chunked AES-GCM so
--- that files of any size stream (the plaintext is in memory one chunk at a time, never
--- whole). The format is in docs/sealed-format.md; in short:
---
---   header  "HSMSEAL1" | version u8 (1) | chunk size u32 | KCV s1 | label s2 | ID s2 | prefix 8
---   chunk   length u32 | ciphertext (length bytes) | GCM tag (16 bytes)      (one or more)
---
--- (big-endian; sN = an N-byte length, then that many bytes). Chunk i (0-based) is
--- AES-GCM under IV = prefix || u32 i with AAD = header || u32 i || u8 final, final = 1 only
--- for the last chunk; every chunk but the last holds exactly `chunk size` bytes, and an
--- empty file is one empty final chunk. So a reordered, dropped, duplicated, truncated or
--- spliced chunk, or an altered header, fails authentication. The header holds only public
--- facts about the key (label, ID, KCV) and a per-file random prefix from C_GenerateRandom.
---
--- Every function returns nil, message[, kind] on failure, the message naming the file and
--- what is wrong; kind is "input" (the file read is bad: not sealed, altered, truncated,
--- another key), "output" (the file written could not be) or "device" (the token refused an
--- operation). Outputs are written to a temporary name in the same directory, fsync'd and
--- renamed only after success; inputs are never written. Messages count chunks from 1.
local core = require("hsm.core")
local keys = require("hsm.keys")
local attrs = require("hsm.attrs")

local M = {}

M.MAGIC = "HSMSEAL1"
M.VERSION = 1
M.DEFAULT_CHUNK = 65536
M.MAX_CHUNK = 1 << 24          -- 16 MiB: bounds what a reader allocates for one chunk
local TAG = 16                 -- GCM tag bytes
local PREFIX = 8               -- nonce prefix bytes; IV = prefix || u32 chunk index
local MAX_CHUNKS = 0xFFFFFFFF  -- the index is a u32: 2^32 - 1 chunks at most

local hex = keys.hex
local pack, unpack = string.pack, string.unpack

local function fail(kind, path, fmt, ...)
  return nil, ("%s: " .. fmt):format(path, ...), kind
end

--- The GCM mechanism of chunk i (0-based) of a file with this header.
local function gcm(hdr, i, final)
  return {"CKM_AES_GCM", iv = hdr.prefix .. pack(">I4", i),
          aad = hdr.bytes .. pack(">I4B", i, final and 1 or 0), tag_bits = TAG * 8}
end

-- The failures of C_Decrypt that mean "this ciphertext does not authenticate": the standard
-- CKR_ENCRYPTED_DATA_INVALID, and what modules answer instead (SoftHSM2 2.6:
-- CKR_GENERAL_ERROR for a wrong tag, also for a ciphertext shorter than the tag).
local AUTH_FAILURE = {CKR_ENCRYPTED_DATA_INVALID = true, CKR_GENERAL_ERROR = true,
                      CKR_ENCRYPTED_DATA_LEN_RANGE = true, CKR_FUNCTION_FAILED = true}

--- The KCV of a key as raw bytes ("" when the module gives none, e.g. an AES key whose
--- CKA_ALLOWED_MECHANISMS leave out ECB and no CKA_CHECK_VALUE).
local function kcv_bytes(key)
  local k = keys.kcv(key)
  return k and core.unhex(k) or ""
end

local function dirname(path)
  local d = path:match("^(.*)/[^/]*$")
  if d == nil then return "." end
  return d == "" and "/" or d
end

local function basename(path) return path:match("([^/]*)$") end

-- ------------------------------------------------------------------ header

--- Reads exactly n bytes: the bytes, or nil and "eof" | an error message.
local function read_exact(f, n)
  if n == 0 then return "" end
  local data, err = f:read(n)
  if err then return nil, err end
  if not data or #data < n then return nil, "eof" end
  return data
end

--- Parses the header at the start of an open file: {version=, chunk=, kcv=, label=, id=,
--- prefix=, bytes=} (kcv, id, prefix raw; bytes = the header as written, for the AAD).
local function read_header(f, path)
  local function need(n, what)
    local d, err = read_exact(f, n)
    if d then return d end
    if err == "eof" then error({msg = ("truncated header (in the %s)"):format(what)}) end
    error({msg = ("cannot read: %s"):format(err)})
  end
  local ok, res = pcall(function()
    local magic, rerr = f:read(8)
    if rerr then error({msg = ("cannot read: %s"):format(rerr)}) end
    magic = magic or ""
    if magic == "" then error({msg = "empty (not a sealed file)"}) end
    if magic ~= M.MAGIC:sub(1, #magic) then error({msg = "not a sealed file (bad magic)"}) end
    if #magic < 8 then error({msg = "truncated header (in the magic)"}) end
    local fixed = need(5, "version and chunk size")
    local version, chunk = unpack(">BI4", fixed)
    if version ~= M.VERSION then
      error({msg = ("unsupported format version %d (this hsmsh reads version %d)"):format(
        version, M.VERSION)})
    end
    if chunk < 1 or chunk > M.MAX_CHUNK then
      error({msg = ("bad chunk size %d in the header (1..%d)"):format(chunk, M.MAX_CHUNK)})
    end
    local parts = {magic, fixed}
    local function field(lenbytes, what)
      local lb = need(lenbytes, what .. " length")
      local n = unpack(lenbytes == 1 and ">B" or ">I2", lb)
      local v = need(n, what)
      parts[#parts + 1] = lb .. v
      return v
    end
    local kcv, label, id = field(1, "KCV"), field(2, "label"), field(2, "ID")
    local prefix = need(PREFIX, "nonce prefix")
    parts[#parts + 1] = prefix
    return {version = version, chunk = chunk, kcv = kcv, label = label, id = id,
            prefix = prefix, bytes = table.concat(parts)}
  end)
  if ok then return res end
  if type(res) == "table" then return fail("input", path, "%s", res.msg) end
  error(res, 0)
end

local function build_header(chunk, kcv, label, id, prefix)
  local bytes = pack(">c8BI4s1s2s2c8", M.MAGIC, M.VERSION, chunk, kcv, label, id, prefix)
  return {version = M.VERSION, chunk = chunk, kcv = kcv, label = label, id = id,
          prefix = prefix, bytes = bytes}
end

--- Describes a key for messages: "kcv 1a2b3c (label 'x', id 0102)".
local function key_words(kcv, label, id)
  return ("kcv %s (label '%s', id %s)"):format(kcv ~= "" and hex(kcv) or "none", label,
    id ~= "" and hex(id) or "none")
end

--- Refuses a header that names another key than `key` (by KCV, when both have one).
local function check_key(hdr, key, path)
  local have = kcv_bytes(key)
  if hdr.kcv ~= "" and have ~= "" and hdr.kcv ~= have then
    return fail("input", path, "sealed under key %s, not under the key given, %s",
      key_words(hdr.kcv, hdr.label, hdr.id), key_words(have, key.label or "", key.id or ""))
  end
  return true
end

-- ------------------------------------------------------------------ files

--- Opens a sealed file for reading and parses its header: f, hdr | nil, message, kind.
local function open_input(path)
  local f, err = io.open(path, "rb")
  if not f then return fail("input", path, "cannot open: %s", (err:gsub("^.-: ", ""))) end
  local hdr, herr, kind = read_header(f, path)
  if not hdr then f:close() return nil, herr, kind end
  return f, hdr
end

--- Reads chunk i (0-based) of an open sealed file: the record's ciphertext and tag, and
--- whether it is the last record of the file | nil, message, kind.
local function read_chunk(f, hdr, i, path)
  local lb, err = read_exact(f, 4)
  if not lb then
    if err ~= "eof" then return fail("input", path, "cannot read: %s", err) end
    if i == 0 then return fail("input", path, "truncated after the header (no chunks)") end
    return fail("input", path, "truncated in chunk %d (its length field)", i + 1)
  end
  local len = unpack(">I4", lb)
  if len > hdr.chunk then
    return fail("input", path, "chunk %d claims %d bytes, more than the chunk size %d",
      i + 1, len, hdr.chunk)
  end
  local body, berr = read_exact(f, len + TAG)
  if not body then
    if berr ~= "eof" then return fail("input", path, "cannot read: %s", berr) end
    return fail("input", path, "truncated in chunk %d", i + 1)
  end
  local at_eof = f:read(0) == nil
  return body, at_eof
end

--- Decrypts one chunk; when it does not authenticate, tries the other final flag to tell a
--- truncated file, or data after the end, from an altered chunk.
local function open_chunk(s, key, hdr, i, body, final, path)
  local pt, err, code = s:decrypt(gcm(hdr, i, final), key, body)
  if pt then return pt end
  if not AUTH_FAILURE[code] then
    return fail("device", path, "chunk %d: cannot decrypt: %s", i + 1, err)
  end
  if s:decrypt(gcm(hdr, i, not final), key, body) then
    if final then
      return fail("input", path, "truncated after chunk %d (it is not the last chunk)", i + 1)
    end
    return fail("input", path, "data after the final chunk %d", i + 1)
  end
  return fail("input", path, "chunk %d fails authentication (altered, reordered, spliced or "
    .. "sealed under another key; %s)", i + 1, code or err)
end

--- A temporary output next to out_path, renamed into place by commit() and removed by
--- abort(). Refuses to write over in_path.
local function open_output(s, out_path, in_path)
  if in_path then
    local a, b = core.stat(in_path), core.stat(out_path)
    if out_path == in_path or (a and b and a.dev == b.dev and a.ino == b.ino) then
      return fail("output", out_path, "is the input file; refusing to write over it")
    end
  end
  local dir = dirname(out_path)
  local r, rerr = s:random(6)
  if not r then return fail("device", out_path, "C_GenerateRandom for a temporary name: %s", rerr) end
  local tmp = ("%s/.%s.%s.tmp"):format(dir, basename(out_path), hex(r))   -- see TEMPORARY
  local f, err = io.open(tmp, "wb")
  if not f then return fail("output", out_path, "cannot create %s", err) end
  f:setvbuf("full", 1 << 20)
  local w = {tmp = tmp}
  function w.write(...)
    local ok, werr = f:write(...)
    if not ok then error({kind = "output", msg = ("%s: cannot write: %s"):format(tmp, werr)}) end
  end
  function w.abort()
    if f then f:close(); f = nil end
    os.remove(tmp)
  end
  function w.commit()
    local ok, err2 = f:close()
    f = nil
    if not ok then w.abort() return fail("output", out_path, "cannot write %s: %s", tmp, err2) end
    local synced, serr = core.fsync(tmp)
    if not synced then w.abort() return fail("output", out_path, "cannot sync: %s", serr) end
    local moved, merr = os.rename(tmp, out_path)
    if not moved then w.abort() return fail("output", out_path, "cannot rename %s: %s", tmp, merr) end
    core.fsync(dir)   -- the rename itself; some file systems cannot sync a directory
    return true
  end
  return w
end

--- Runs body(w) with an output w; commits on success, removes the temporary file on any
--- failure (returned or raised). body returns a result or nil, message, kind; it may raise
--- {kind=, msg=} for an I/O failure.
local function with_output(s, out_path, in_path, body)
  local w, err, kind = open_output(s, out_path, in_path)
  if not w then return nil, err, kind end
  local ok, res, berr, bkind = pcall(body, w)
  if not ok then
    w.abort()
    if type(res) == "table" and res.msg then return nil, res.msg, res.kind end
    error(res, 0)
  end
  if not res then w.abort() return nil, berr, bkind end
  local done, cerr, ckind = w.commit()
  if not done then return nil, cerr, ckind end
  return res
end

--- Streams the chunks of an open sealed file through fn(i, plaintext, final) (i 0-based),
--- hashing the plaintext: {bytes=, chunks=, sha256=<hex>} | nil, message, kind.
local function each_plain(s, key, f, hdr, path, fn)
  local ok, cerr, ckind = check_key(hdr, key, path)
  if not ok then return nil, cerr, ckind end
  local sha = core.sha256_stream()
  local i, bytes = 0, 0
  while true do
    local body, at_eof, kind = read_chunk(f, hdr, i, path)
    if not body then return nil, at_eof, kind end
    local pt, err, ekind = open_chunk(s, key, hdr, i, body, at_eof, path)
    if not pt then return nil, err, ekind end
    sha:update(pt)
    bytes = bytes + #pt
    local r, ferr, fkind = fn(i, pt, at_eof)
    if r == nil and ferr then return nil, ferr, fkind end
    i = i + 1
    if at_eof then break end
  end
  return {bytes = bytes, chunks = i, sha256 = hex(sha:final())}
end

-- ------------------------------------------------------------------ public API

--- Encrypts the file in_path under key (an AES hsm.Object with CKA_ENCRYPT on session s)
--- into out_path. opts: {chunk = 65536}. Returns {bytes=, chunks=, sha256=<hex of the
--- plaintext>} | nil, message, kind.
---@param s userdata hsm.Session
---@param key userdata hsm.Object
function M.seal(s, key, in_path, out_path, opts)
  local chunk = (opts or {}).chunk or M.DEFAULT_CHUNK
  if math.type(chunk) ~= "integer" or chunk < 1 or chunk > M.MAX_CHUNK then
    error(("seal: chunk must be an integer in 1..%d"):format(M.MAX_CHUNK), 2)
  end
  local prefix, rerr = s:random(PREFIX)
  if not prefix then return fail("device", out_path, "C_GenerateRandom: %s", rerr) end
  local hdr = build_header(chunk, kcv_bytes(key), key.label or "", key.id or "", prefix)
  local inf, ierr = io.open(in_path, "rb")
  if not inf then return fail("input", in_path, "cannot open: %s", (ierr:gsub("^.-: ", ""))) end
  local res, err, kind = with_output(s, out_path, in_path, function(w)
    w.write(hdr.bytes)
    local sha, i, bytes = core.sha256_stream(), 0, 0
    local function read()
      local d, e = inf:read(chunk)
      if e then error({kind = "input", msg = ("%s: cannot read: %s"):format(in_path, e)}) end
      return d
    end
    local cur = read() or ""       -- an empty file is one empty final chunk
    repeat
      local nxt = read()           -- one chunk of look-ahead tells the last chunk
      local final = nxt == nil
      if i > MAX_CHUNKS then return fail("input", in_path, "too many chunks for chunk size %d", chunk) end
      local ct, cerr = s:encrypt(gcm(hdr, i, final), key, cur)
      if not ct then return fail("device", in_path, "chunk %d: cannot encrypt: %s", i + 1, cerr) end
      sha:update(cur)
      w.write(pack(">I4", #cur), ct)
      bytes, i, cur = bytes + #cur, i + 1, nxt
    until final
    return {bytes = bytes, chunks = i, sha256 = hex(sha:final())}
  end)
  inf:close()
  return res, err, kind
end

--- Decrypts the sealed file in_path with key into out_path (plaintext; written to a
--- temporary name, renamed when every chunk has authenticated). Without out_path it only
--- checks: every chunk authenticates, nothing is written. Returns {bytes=, chunks=,
--- sha256=<hex of the plaintext>} | nil, message, kind.
function M.open(s, key, in_path, out_path)
  local f, hdr, kind = open_input(in_path)
  if not f then return nil, hdr, kind end
  local res, err, ekind
  if out_path then
    res, err, ekind = with_output(s, out_path, in_path, function(w)
      return each_plain(s, key, f, hdr, in_path, function(_, pt) w.write(pt) end)
    end)
  else
    res, err, ekind = each_plain(s, key, f, hdr, in_path, function() end)
  end
  f:close()
  return res, err, ekind
end

--- Checks that every chunk of a sealed file authenticates under key: {bytes=, chunks=,
--- sha256=} | nil, message, kind. Writes nothing.
function M.verify(s, key, path) return M.open(s, key, path, nil) end

--- Re-encrypts a sealed file from old_key (on old_s) to new_key (on new_s), chunk by chunk:
--- each chunk is decrypted with the old key and encrypted with the new one, with the same
--- chunking and a fresh nonce prefix. Returns {bytes=, chunks=, sha256=<hex of the
--- plaintext>} | nil, message, kind. The input is never written.
function M.reseal(old_s, old_key, new_s, new_key, in_path, out_path)
  local f, hdr, kind = open_input(in_path)
  if not f then return nil, hdr, kind end
  local prefix, rerr = new_s:random(PREFIX)
  if not prefix then
    f:close()
    return fail("device", out_path, "C_GenerateRandom: %s", rerr)
  end
  local nh = build_header(hdr.chunk, kcv_bytes(new_key), new_key.label or "", new_key.id or "",
    prefix)
  local res, err, ekind = with_output(new_s, out_path, in_path, function(w)
    w.write(nh.bytes)
    return each_plain(old_s, old_key, f, hdr, in_path, function(i, pt, final)
      local ct, cerr = new_s:encrypt(gcm(nh, i, final), new_key, pt)
      if not ct then return fail("device", out_path, "chunk %d: cannot encrypt: %s", i + 1, cerr) end
      w.write(pack(">I4", #pt), ct)
      return true
    end)
  end)
  f:close()
  return res, err, ekind
end

--- The header of a sealed file, without a key: {version=, chunk=, label=, id=<hex>,
--- kcv=<hex>, prefix=<hex>, header_bytes=, size=<file bytes>, chunks=<count the size
--- implies>} | nil, message, kind.
function M.inspect(path)
  local f, hdr, kind = open_input(path)
  if not f then return nil, hdr, kind end
  local size = f:seek("end")
  f:close()
  local body = size - #hdr.bytes
  local per = hdr.chunk + 4 + TAG
  return {version = hdr.version, chunk = hdr.chunk, label = hdr.label, id = hex(hdr.id),
          kcv = hex(hdr.kcv), prefix = hex(hdr.prefix), header_bytes = #hdr.bytes,
          size = size, chunks = math.max(1, (body + per - 1) // per)}
end

--- The entries of a directory, sorted by name: {{name=, path=, kind="file"|"dir"|"link"|
--- "other", size=, mtime=}, ...} | nil, message. Links are not followed.
function M.list(dir)
  local list, err = core.listdir(dir)
  if not list then return nil, err end
  for _, e in ipairs(list) do e.path = (dir:sub(-1) == "/" and dir or dir .. "/") .. e.name end
  return list
end

-- The name of an output being written: ".NAME.<12 hex digits>.tmp" next to NAME.
local TEMPORARY = "^%.(.+)%.%x%x%x%x%x%x%x%x%x%x%x%x%.tmp$"

--- The temporary files in a directory that a process killed while writing an output left
--- behind: {{name=, path=, of=<the output's name>}, ...} | nil, message.
function M.temporaries(dir)
  local list, err = M.list(dir)
  if not list then return nil, err end
  local out = {}
  for _, e in ipairs(list) do
    local of = e.kind == "file" and e.name:match(TEMPORARY)
    if of then out[#out + 1] = {name = e.name, path = e.path, of = of} end
  end
  return out
end

--- Removes one such temporary file (and nothing else). true | nil, message.
function M.remove_temporary(path)
  if not basename(path):match(TEMPORARY) then
    return nil, ("%s: not a temporary file of hsm.sealed"):format(path)
  end
  local ok, err = os.remove(path)
  if not ok then return nil, err end
  return true
end

--- {kind=, size=, dev=, ino=, mtime=} of a path (links followed) | nil, message.
M.stat = core.stat

--- Removes a sealed file (one whose header parses); refuses anything else, so a recipe
--- can clean up its own outputs and nothing more. true | nil, message.
function M.remove(path)
  local f, err = open_input(path)
  if not f then return nil, err end
  f:close()
  local ok, rerr = os.remove(path)
  if not ok then return nil, rerr end
  return true
end

-- ------------------------------------------------------------------ new keys

-- Never left out of a generation template: what the key is, where it lives, who may read
-- it, its name, and what re-encryption needs of it.
local ESSENTIAL = {CKA_CLASS = true, CKA_KEY_TYPE = true, CKA_VALUE_LEN = true, CKA_TOKEN = true,
                   CKA_PRIVATE = true, CKA_SENSITIVE = true, CKA_EXTRACTABLE = true,
                   CKA_LABEL = true, CKA_ID = true, CKA_ENCRYPT = true, CKA_DECRYPT = true}
-- What C_GenerateKey answers for a template attribute it will not take.
local REFUSED = {CKR_ATTRIBUTE_READ_ONLY = true, CKR_ATTRIBUTE_TYPE_INVALID = true,
                 CKR_ATTRIBUTE_VALUE_INVALID = true, CKR_TEMPLATE_INCONSISTENT = true}

--- The template that generates a key like a captured one (attrs.capture): attrs.template
--- "create" plus overrides ({CKA_LABEL = ...}).
function M.template_like(captured, overrides)
  local t = attrs.template(captured, "create")
  for k, v in pairs(overrides or {}) do t[k] = v end
  return t
end

--- Generates, with CKM_AES_KEY_GEN on session s, a key with the attributes of a captured
--- one (plus overrides). Attributes the module refuses at generation are found with session-
--- object probes (made and destroyed again) and left out, never the ESSENTIAL ones. Returns
--- the key and the sorted names left out | nil, message.
function M.generate_like(s, captured, overrides)
  local full = M.template_like(captured, overrides)
  local mech = "CKM_AES_KEY_GEN"
  local function probe(t)
    local p = {}
    for k, v in pairs(t) do p[k] = v end
    p.CKA_TOKEN = false
    local k, err, code = s:generate_key(mech, p)
    if not k then return false, err, code end
    k:destroy()
    return true
  end
  local t, dropped = full, {}
  local ok, err, code = probe(full)
  if not ok then
    if not REFUSED[code] then return nil, ("C_GenerateKey (probe): %s"):format(err) end
    -- Leave optional attributes out one by one until the module accepts, then put back
    -- every one it accepts after all: what remains left out is what it refuses.
    local optional = {}
    for name in pairs(full) do if not ESSENTIAL[name] then optional[#optional + 1] = name end end
    table.sort(optional)
    t = {}
    for k, v in pairs(full) do t[k] = v end
    local removed = {}
    for _, name in ipairs(optional) do
      t[name] = nil
      removed[#removed + 1] = name
      if probe(t) then ok = true break end
    end
    if not ok then
      return nil, ("the module refuses to generate this key even with only its essential "
        .. "attributes (%s)"):format(err)
    end
    for _, name in ipairs(removed) do
      t[name] = full[name]
      if not probe(t) then t[name] = nil; dropped[#dropped + 1] = name end
    end
  end
  local key, gerr = s:generate_key(mech, t)
  if not key then return nil, ("C_GenerateKey: %s"):format(gerr) end
  return key, dropped
end

return M
