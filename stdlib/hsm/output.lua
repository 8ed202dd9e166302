--- hsm.output: the files a run hands to the operator (archives, images, exchange files, the
--- routing state; shares and sealed files have checked writers of their own, hsm.Secret's
--- write and hsm.sealed). Each is written under a temporary name beside its own; every write, the
--- sync and the close are checked; the file is re-read and verified (its MAC, signature or
--- content) before it takes its name; and it never takes the name of an existing file unless
--- the operator said so (--yes): a share set or an image already handed out is never
--- invalidated silently. Shares are never replaced at all (they are written O_EXCL).
local core = require("hsm.core")

local M = {}

local CHUNK = 1 << 16

--- Whether a run may replace existing outputs: --yes.
function M.may_replace(ctx) return ctx ~= nil and ctx.yes == true end

--- Raises, before any work is done, when path exists and may not be replaced.
---@param what string  what the file is, for the message ("archive", "share 2")
function M.check_new(path, replace, what)
  local st = core.stat(path)
  if not st then return end
  if st.kind == "dir" then error(("%s %s is a directory"):format(what, path), 0) end
  if not replace then
    error(("%s %s already exists; it is never replaced without --yes: move it away or name " ..
      "another file"):format(what, path), 0)
  end
end

--- Makes an output directory and its missing parents, mode 0700. Raises naming it.
function M.dir(path, what)
  local st = core.stat(path)
  if st and st.kind ~= "dir" then error(("%s %s exists and is not a directory"):format(what, path), 0) end
  if st then return end
  local ok, err = core.mkdir(path, tonumber("700", 8))
  if not ok then error(("cannot create %s %s: %s"):format(what, path, err), 0) end
end

--- A checked writer for path. opts: replace (may take an existing name), what (for messages),
--- mode (the file's mode, set before it takes its name; default 0600 from hsmsh's umask).
--- w:write(data) raises on the first failed write (w:flush() pushes what is buffered onto
--- w.tmp, to read it back or append to it); w:commit(verify) flushes, syncs, calls
--- verify(tmp) (which raises when the re-read file is not what was meant), then renames;
--- w:abort() removes the temporary file. Messages name the file and the system's reason.
function M.open(path, opts)
  opts = opts or {}
  local what = opts.what or "file"
  M.check_new(path, opts.replace, what)
  local tmp = path .. ".tmp"
  os.remove(tmp)
  local buf, n = {}, 0
  local w = {path = path, tmp = tmp}
  local function fail(err)
    os.remove(tmp)
    error(("cannot write %s %s: %s; nothing was kept"):format(what, path, err), 0)
  end
  function w:flush()   -- what was written so far, onto the temporary file
    if n == 0 then return end
    local ok, err = core.append_synced(tmp, table.concat(buf), false)
    buf, n = {}, 0
    if not ok then fail(err) end
  end
  -- The file is made now, so that a directory that cannot take it fails before any work.
  local ok, err = core.append_synced(tmp, "", false)
  if ok and opts.mode then ok, err = core.chmod(tmp, opts.mode) end
  if not ok then fail(err) end
  function w:write(data)
    buf[#buf + 1] = data
    n = n + #data
    if n >= CHUNK then self:flush() end
  end
  function w:commit(verify)
    self:flush()
    local synced, serr = core.fsync(tmp)
    if not synced then fail(serr) end
    if verify then
      local vok, verr = pcall(verify, tmp)
      if not vok then fail("read back, it does not verify: " .. tostring(verr)) end
    end
    local moved, merr
    if opts.replace then moved, merr = os.rename(tmp, path) else moved, merr = core.rename_new(tmp, path) end
    if not moved then fail(merr) end
    core.fsync(path:match("^(.*)/[^/]*$") or ".")   -- the rename itself
  end
  function w:abort() os.remove(tmp) end
  return w
end

--- Writes data whole to path (checked, verified by reading it back, renamed into place).
function M.write(path, data, opts)
  local w = M.open(path, opts)
  w:write(data)
  w:commit(function(tmp)
    local f = assert(io.open(tmp, "rb"))
    local back = f:read("a")
    f:close()
    if back ~= data then error(("%d bytes read back, %d written"):format(#(back or ""), #data), 0) end
  end)
end

return M
