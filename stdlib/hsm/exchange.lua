--- hsm.exchange: the files two halves of a split procedure hand each other (source machine,
--- destination machine): a directory with
---   destination.json   what the destination can do (OAEP hashes, KWP known-answer result)
---   wrapping-key.pem   the destination's RSA wrapping public key
---   manifest.jsonl     a header line, then one line per source object: attributes (no key
---                      material), check value, evidence for the destination's checks, and
---                      for keys the name and SHA-256 of the wrapped blob
---   key-NNNN.bin       one wrapped blob per key
--- Files are written whole under a temporary name, synced, read back, then renamed into place.
local core = require("hsm.core")
local json = require("hsm.json")
local attrs = require("hsm.attrs")
local keys = require("hsm.keys")
local output = require("hsm.output")

local M = {}

--- Writes a file atomically, read back before it takes its name (hsm.output). Exchange files
--- are a split procedure's working files, rewritten when a side runs again. Raises naming it.
function M.write(path, data)
  output.write(path, data, {replace = true, what = "exchange file"})
end

--- Reads a whole file. Raises naming the file.
function M.read(path)
  local f, err = io.open(path, "rb")
  if not f then error(("cannot read %s"):format(err), 0) end
  local data = f:read("a")
  f:close()
  return data
end

--- The exchange directory: made (mode 0700) when missing, and proven writable.
function M.check_dir(dir)
  output.dir(dir, "exchange directory")
  local probe = dir .. "/.hsmsh-probe"
  local ok, err = core.append_synced(probe, "")
  if not ok then error(("exchange directory %s is not writable: %s"):format(dir, err), 0) end
  os.remove(probe)
end

--- Writes a public key (or certificate's key) as a PEM SubjectPublicKeyInfo file.
function M.write_public_pem(path, obj)
  local spki = keys.spki(obj)
  if not spki then error("cannot build the public key of " .. tostring(obj), 0) end
  M.write(path, core.pem_encode("PUBLIC KEY", spki))
end

function M.write_json(path, v) M.write(path, json.encode(v) .. "\n") end

function M.read_json(path)
  local v, err = json.decode(M.read(path))
  if type(v) ~= "table" then error(("%s: %s"):format(path, err or "not a JSON object"), 0) end
  return v
end

--- Writes the manifest: header table, then entries {ref, a, check, strategy, reason, blob,
--- evidence} (blob: the wrapped bytes, written to key-NNNN.bin).
function M.write_manifest(dir, header, entries)
  local lines = {json.encode(header)}
  for n, e in ipairs(entries) do
    local line = {n = n, ref = e.ref, attrs = attrs.to_data(e.a), check = e.check,
                  strategy = e.strategy, reason = e.reason,
                  evidence = e.evidence and attrs.to_data(e.evidence) or nil}
    if e.blob then
      line.blob = ("key-%04d.bin"):format(n)
      line.blob_sha256 = keys.hex(core.sha256(e.blob))
      M.write(dir .. "/" .. line.blob, e.blob)
    end
    lines[#lines + 1] = json.encode(line)
  end
  M.write(dir .. "/manifest.jsonl", table.concat(lines, "\n") .. "\n")
end

--- Reads the manifest back: header, entries {ref, a, check, strategy, reason, evidence,
--- blob}. Every blob is checked against its SHA-256 before anything is used; a bad or
--- missing one raises naming it.
function M.read_manifest(dir)
  local path = dir .. "/manifest.jsonl"
  local header, entries, n = nil, {}, 0
  for line in M.read(path):gmatch("[^\n]+") do
    n = n + 1
    local v, err = json.decode(line)
    if type(v) ~= "table" then error(("%s line %d: %s"):format(path, n, err or "not an object"), 0) end
    if not header then
      if v.format ~= "hsmsh-exchange-1" then error(("%s is not an hsmsh exchange manifest"):format(path), 0) end
      header = v
    else
      local e = {ref = v.ref, a = attrs.from_data(v.attrs or {}), check = v.check,
                 strategy = v.strategy, reason = v.reason,
                 evidence = v.evidence and attrs.from_data(v.evidence) or nil}
      if v.blob then
        if not v.blob:match("^key%-%d+%.bin$") then error(("%s line %d: bad blob name"):format(path, n), 0) end
        e.blob = M.read(dir .. "/" .. v.blob)
        if keys.hex(core.sha256(e.blob)) ~= v.blob_sha256 then
          error(("%s/%s does not match its SHA-256 in the manifest (damaged or replaced)"):format(dir, v.blob), 0)
        end
      end
      entries[#entries + 1] = e
    end
  end
  if not header then error(("%s is empty"):format(path), 0) end
  return header, entries
end

return M
