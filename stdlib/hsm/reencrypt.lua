--- hsm.reencrypt: generic/rotate-reencrypt's work (the recipe is its parameters and this):
--- a new AES key with the old key's attributes on the destination, and every sealed file
--- (hsm.sealed) of a directory decrypted with the old key and re-encrypted with the new one
--- into another directory, journaled per file and verified; the originals are never touched.
--- M.plan, M.apply, M.verify and M.rollback are the recipe's phase functions.
local sealed = require("hsm.sealed")
local output = require("hsm.output")
local attrs = require("hsm.attrs")
local ui = require("hsm.ui")
local keys = require("hsm.keys")

local M = {}

-- Attributes the new key may not share with the old one: those the token sets on
-- generation (attrs.FORCED), and CKA_CHECK_VALUE, which is the new key material's own.
local MAY_DIFFER = {CKA_CHECK_VALUE = true}
for k in pairs(attrs.FORCED) do MAY_DIFFER[k] = true end

local function human(n)
  if n < 1024 then return ("%d B"):format(n) end
  local units, v, i = {"KiB", "MiB", "GiB", "TiB"}, n / 1024, 1
  while v >= 1024 and i < #units do v, i = v / 1024, i + 1 end
  return ("%.1f %s"):format(v, units[i])
end

--- What the journal being resumed (ctx.previous) says: the new key it created (unless a
--- rollback destroyed it again), a key generation it began, and the files it finished.
local function journal_facts(ctx)
  local j = {done = {}}
  for _, ev in ipairs(ctx.previous or {}) do
    if ev.event == "key" then
      if ev.step == "begin" then j.key_begin, j.key = ev, nil
      elseif ev.step == "created" then j.key, j.key_begin = ev, nil
      elseif ev.step == "destroyed" then j.key = nil end
    elseif ev.event == "file" then
      if ev.step == "done" then j.done[ev.path] = ev.sha256
      elseif ev.step == "removed" then j.done[ev.path] = nil end
    end
  end
  return j
end

--- The secret AES keys labelled `label` on session s, each as {key=, kcv=}; and how many
--- other objects carry the label. A failed search is an error, never "no keys".
local function aes_keys(s, label)
  local list, err = s:find_all({CKA_LABEL = label})
  if not list then error(("cannot search for '%s': %s"):format(label, err), 0) end
  local out, others = {}, 0
  for _, o in ipairs(list) do
    if o.class == "CKO_SECRET_KEY" and o.key_type == "CKK_AES" then
      out[#out + 1] = {key = o, kcv = o:kcv() or ""}
    else
      others = others + 1
    end
  end
  return out, others
end

local function kcv_list(cands)
  local t = {}
  for _, c in ipairs(cands) do t[#t + 1] = c.kcv ~= "" and c.kcv or "none" end
  return table.concat(t, ", ")
end

--- Is `k` a key this recipe could have made from the captured attributes? (For a key a
--- generation may have left behind when it failed or was interrupted.)
local function like(k, captured, label)
  if not k:kcv() then return false end
  for _, d in ipairs(attrs.diff(captured, k:attrs())) do
    if not MAY_DIFFER[d.name] and not (d.name == "CKA_LABEL" and d.to == label) then return false end
  end
  return true
end

--- Everything the phases share, found once, read-only: both tokens, the old key, the files
--- and what will happen to each, and the new key if an earlier run made it.
local function setup(ctx)
  local st = ctx.state
  if st.files then return st end
  local p = ctx.params
  local j = journal_facts(ctx)
  st.journal = j

  -- The directories.
  local fi, ferr = sealed.stat(p.files)
  if not fi then error(("files=%s: %s"):format(p.files, (ferr:gsub("^.*: ", ""))), 0) end
  if fi.kind ~= "dir" then error(("files=%s is not a directory"):format(p.files), 0) end
  local oi = sealed.stat(p.out)
  st.out_missing = oi == nil   -- made (0700) when the work starts; a dry run makes nothing
  if oi and oi.kind ~= "dir" then error(("out=%s is not a directory"):format(p.out), 0) end
  if oi and oi.dev == fi.dev and oi.ino == fi.ino then
    error(("out=%s is the files directory; the outputs must go to another one"):format(p.out), 0)
  end
  local entries = ctx.must(sealed.list(p.files))
  local files, ignored, input_kcv = {}, {}, {}
  for _, e in ipairs(entries) do
    if e.kind == "file" then
      local f = {name = e.name, path = e.path, size = e.size, mtime = e.mtime,
                 out = (p.out:sub(-1) == "/" and p.out or p.out .. "/") .. e.name}
      f.header, f.problem = sealed.inspect(f.path)
      if f.header then input_kcv[f.header.kcv] = true end
      files[#files + 1] = f
    else
      ignored[#ignored + 1] = ("%s (%s)"):format(e.name, e.kind)
    end
  end
  if #files == 0 then error(("files=%s holds no regular files"):format(p.files), 0) end
  st.files, st.ignored = files, ignored

  -- Which key earlier runs re-encrypted to: the journal says, and so do the headers of
  -- outputs already in out/ (a KCV that input files carry is the old key's, not a hint).
  local hints, hint_list = {}, {}
  local function hint(kcv, from)
    if kcv and kcv ~= "" and not input_kcv[kcv] and not hints[kcv] then
      hints[kcv] = from
      hint_list[#hint_list + 1] = kcv
    end
  end
  if j.key then hint(j.key.kcv, "journal") end
  for _, f in ipairs(files) do
    local o = sealed.stat(f.out)
    if o and o.kind == "file" then
      f.existing = sealed.inspect(f.out)
      if f.existing then hint(f.existing.kcv, "output") end
    elseif o then
      f.problem = ("%s exists and is not a regular file"):format(f.out)
    end
  end
  if #hint_list > 1 then
    table.sort(hint_list)
    error(("%s holds files sealed under different keys (kcv %s) (or the journal names another); "
      .. "re-encrypt into an empty directory"):format(p.out, table.concat(hint_list, ", ")), 0)
  end

  -- The old key: exactly one secret AES key with that label, not counting the new key of an
  -- earlier run of this rotation on the same token under the same label.
  st.src, st.dst = ctx.token(p.from), ctx.token(p.to, {write = true})
  local cands, others = aes_keys(st.src, p.key)
  local old, excluded = {}, nil
  for _, c in ipairs(cands) do
    if hints[c.kcv] then excluded = c else old[#old + 1] = c end
  end
  if #old == 0 then
    if excluded then
      error(("the only AES key labelled '%s' is the new key of an earlier run (kcv %s)"):format(
        p.key, excluded.kcv), 0)
    end
    error(("no secret AES key labelled '%s' on %s%s"):format(p.key, p.from:match("^[^?]*"),
      others > 0 and (" (%d other object(s) carry that label)"):format(others) or ""), 0)
  elseif #old > 1 then
    error(("%d secret AES keys are labelled '%s' (kcv %s); the label must name exactly one"):format(
      #old, p.key, kcv_list(old)), 0)
  end
  st.old, st.old_kcv = old[1].key, old[1].kcv
  local usable
  for _, f in ipairs(files) do
    if f.header and (f.header.kcv == st.old_kcv or f.header.kcv == "" or st.old_kcv == "") then
      usable = true
    end
  end
  if not usable then
    error(("none of the %d file(s) in %s is sealed under '%s' (kcv %s) (first: %s); nothing was "
      .. "written"):format(#files, p.files, p.key, st.old_kcv, files[1].problem
      or ("sealed under kcv %s"):format(files[1].header.kcv)), 0)
  end
  st.captured = attrs.capture(st.old)
  local cap = st.captured
  if cap.CKA_DECRYPT ~= true then
    error(("key '%s' has CKA_DECRYPT=false: it cannot decrypt the files"):format(p.key), 0)
  end
  if cap.CKA_ENCRYPT ~= true then
    error(("key '%s' has CKA_ENCRYPT=false: a new key with the same attributes could not "
      .. "re-encrypt the files"):format(p.key), 0)
  end
  local allowed = cap.CKA_ALLOWED_MECHANISMS
  if type(allowed) == "table" and #allowed > 0 then
    local gcm = false
    for _, m in ipairs(allowed) do gcm = gcm or m == "CKM_AES_GCM" end
    if not gcm then
      error(("key '%s' does not allow CKM_AES_GCM (CKA_ALLOWED_MECHANISMS)"):format(p.key), 0)
    end
  end
  st.label = p.label or cap.CKA_LABEL or ""

  -- The new key, if an earlier run made it.
  local kcv = hint_list[1]
  if kcv then
    local found
    for _, c in ipairs((aes_keys(st.dst, st.label))) do
      if c.kcv == kcv then found = c.key end
    end
    if found then
      st.new, st.new_from = found, hints[kcv] == "journal" and "the journal" or "the outputs in out/"
    elseif hints[kcv] == "output" then
      error(("%s holds files sealed under key kcv %s, but the destination has no AES key "
        .. "labelled '%s' with that KCV"):format(p.out, kcv, st.label), 0)
    else
      st.note_key = ("the key the journal names (kcv %s) is gone from the destination; a new "
        .. "one will be generated"):format(kcv)
    end
  elseif j.key_begin then
    -- A generation began and was not journaled as done: look for what it may have made.
    local before = {}
    for _, k in ipairs(j.key_begin.existing or {}) do before[k] = true end
    local made = {}
    for _, c in ipairs((aes_keys(st.dst, st.label))) do
      if not before[c.kcv] and c.kcv ~= st.old_kcv and like(c.key, cap, st.label) then
        made[#made + 1] = c
      end
    end
    if #made > 1 then
      error(("the interrupted run may have made any of %d keys labelled '%s' (kcv %s); "
        .. "destroy the extra ones"):format(#made, st.label, kcv_list(made)), 0)
    end
    if made[1] then st.new, st.new_from = made[1].key, "the interrupted generation" end
  end
  if not st.new then
    local clash = {}
    for _, c in ipairs((aes_keys(st.dst, st.label))) do
      if c.kcv ~= st.old_kcv then clash[#clash + 1] = c end
    end
    if #clash > 0 then
      error(("the destination already holds %d AES key(s) labelled '%s' (kcv %s) that no file in "
        .. "%s uses: pass label= for another label, or `hsmsh resume` the journal of the run "
        .. "that made it"):format(#clash, st.label, kcv_list(clash), p.out), 0)
    end
  end

  -- What happens to each file.
  local new_kcv = st.new and st.new:kcv()
  for _, f in ipairs(files) do
    if f.problem then
      f.action = "refuse"
    elseif f.header.kcv ~= "" and st.old_kcv ~= "" and f.header.kcv ~= st.old_kcv then
      f.action, f.problem = "refuse", ("%s: sealed under key kcv %s (label '%s'), not under '%s' "
        .. "(kcv %s)"):format(f.path, f.header.kcv, f.header.label, p.key, st.old_kcv)
    elseif f.existing or sealed.stat(f.out) then
      if new_kcv and f.existing and f.existing.kcv == new_kcv then
        f.action = "check"
      else
        f.action, f.problem = "refuse", ("%s exists and is not sealed under the new key; move it "
          .. "away to re-encrypt %s"):format(f.out, f.name)
      end
    else
      f.action = "re-encrypt"
    end
  end
  return st
end

local ACTION_TEXT = {["re-encrypt"] = "re-encrypt", check = "skip if the output verifies",
                     refuse = "fail"}

--- The file's problem without its leading path (the table names the file already).
local function short(f)
  return f.problem and (f.problem:gsub("^" .. f.path:gsub("%p", "%%%0") .. ": ", "")) or ""
end

--- Re-encrypts (or checks) one file: status, reason, plaintext bytes (nil when it failed).
local function do_file(ctx, st, f)
  if f.action == "refuse" then return "failed", f.problem end
  if f.action == "check" then
    -- Written by an earlier run: it must open with the new key to the plaintext the journal
    -- recorded for it, or (no journal entry) to the plaintext of the original.
    local got, err = sealed.verify(st.dst, st.new, f.out)
    if not got then
      return "failed", ("%s exists but does not open with the new key (%s); move it away to "
        .. "re-encrypt"):format(f.out, err)
    end
    local want = st.journal.done[f.path]
    if not want then
      local orig, oerr = sealed.verify(st.src, st.old, f.path)
      if not orig then return "failed", oerr end
      want = orig.sha256
    end
    if got.sha256 ~= want then
      return "failed", ("%s exists under the new key but holds other data than %s"):format(
        f.out, f.path)
    end
    f.sha256 = got.sha256
    return "skipped", nil, got.bytes
  end
  ctx.journal({event = "file", path = f.path, out = f.out, step = "begin"})
  local res, err, kind = sealed.reseal(st.src, st.old, st.dst, st.new, f.path, f.out)
  if not res then
    -- A bad input fails its file; a token or output that fails would fail every file: stop
    -- (the runner rolls back what this run wrote).
    if kind ~= "input" then error(err, 0) end
    return "failed", err
  end
  st.written[#st.written + 1] = f
  local check, cerr = sealed.verify(st.dst, st.new, f.out)
  if not check or check.sha256 ~= res.sha256 then
    ctx.must(sealed.remove(f.out))
    table.remove(st.written)
    return "failed", ("%s does not verify after re-encryption: %s"):format(f.out,
      cerr or "the plaintext differs")
  end
  f.sha256 = res.sha256
  ctx.journal({event = "file", path = f.path, out = f.out, step = "done", sha256 = res.sha256,
               bytes = res.bytes})
  return "reencrypted", nil, res.bytes
end

--- Reads everything (both tokens, the old key, the files) and prints the plan; refuses
--- when no file can be re-encrypted.
function M.plan(ctx)
  local st = setup(ctx)
  local p, cap = ctx.params, st.captured
  ctx.say("old key: '%s' id %s kcv %s, AES-%d, %s, %s", cap.CKA_LABEL or "",
    keys.hex(cap.CKA_ID or ""), st.old_kcv, (cap.CKA_VALUE_LEN or 0) * 8,
    cap.CKA_EXTRACTABLE and "extractable" or "non-extractable",
    cap.CKA_SENSITIVE and "sensitive" or "not sensitive")
  if cap.CKA_EXTRACTABLE then
    ctx.say("note: this key is extractable: generic/migrate can move the key itself and "
      .. "leave the data as it is; re-encrypting anyway")
  end
  if st.note_key then ctx.say("note: %s", st.note_key) end
  if st.new then
    ctx.say("new key: '%s' kcv %s on the destination, made by an earlier run (found "
      .. "through %s)", st.label, st.new:kcv(), st.new_from)
  else
    ctx.say("new key: to be generated on the destination: '%s', the old key's attributes",
      st.label)
  end
  for _, name in ipairs(st.ignored) do ctx.say("ignored: %s: not a regular file", name) end
  local rows, total, counts = {}, 0, {}
  for _, f in ipairs(st.files) do
    total = total + f.size
    counts[f.action] = (counts[f.action] or 0) + 1
    rows[#rows + 1] = {name = f.name, size = human(f.size),
                       chunks = f.header and f.header.chunks or "",
                       action = ACTION_TEXT[f.action], reason = short(f)}
    if ctx.dry_run then
      ctx.emit({event = "plan", path = f.path, out = f.out, size = f.size,
                action = f.action, reason = f.problem,
                _order = {"event", "path", "size", "action"}})
    end
  end
  ctx.say("%s", ui.table(rows, {{"name", "FILE"}, {"size", "SIZE"}, {"chunks", "CHUNKS"},
                                {"action", "ACTION"}, {"reason", "REASON"}}))
  ctx.say("plan: %d file(s), %s, from %s to %s: %d to re-encrypt, %d to check, %d to fail",
    #st.files, human(total), p.files, p.out, counts["re-encrypt"] or 0, counts.check or 0,
    counts.refuse or 0)
  if st.out_missing then ctx.say("out=%s does not exist yet: it will be made (mode 0700)", p.out) end
  if (counts.refuse or 0) == #st.files then
    error(("none of the %d file(s) in %s can be re-encrypted (first: %s); nothing was "
      .. "written"):format(#st.files, p.files, st.files[1].problem), 0)
  end
end

--- Makes the new key (once: a resume finds it) and re-encrypts or checks every file.
function M.apply(ctx)
  local st = setup(ctx)
  st.written = {}
  if st.out_missing then output.dir(ctx.params.out, "output directory") end
  if not st.new then
    local existing = {}
    for _, c in ipairs((aes_keys(st.dst, st.label))) do existing[#existing + 1] = c.kcv end
    ctx.journal({event = "key", step = "begin", label = st.label, existing = existing})
    local key, dropped = sealed.generate_like(st.dst, st.captured, {CKA_LABEL = st.label})
    if not key then
      error(("cannot generate the new key: %s (resume the journal to look for a key the "
        .. "failed generation may have left)"):format(dropped), 0)
    end
    st.new, st.created_now = key, true
    local kcv = key:kcv()
    ctx.journal({event = "key", step = "created", label = st.label,
                 id = keys.hex(key.id or ""), kcv = kcv, dropped = dropped})
    ctx.emit({event = "key", status = "created", label = st.label, kcv = kcv,
              dropped = dropped, _order = {"event", "status", "label", "kcv"}})
    ctx.say("generated the new key '%s' kcv %s%s", st.label, kcv, #dropped > 0
      and (" (the module refused, and the key lacks: %s)"):format(table.concat(dropped, ", "))
      or "")
  else
    ctx.emit({event = "key", status = "reused", label = st.label, kcv = st.new:kcv(),
              _order = {"event", "status", "label", "kcv"}})
  end
  -- The new key keeps the old key's attributes (invariant 5); the report says what differs.
  for _, d in ipairs(attrs.diff(st.captured, st.new:attrs())) do
    if not MAY_DIFFER[d.name] and not (d.name == "CKA_LABEL" and d.to == st.label) then
      ctx.say("note: the new key's %s is %s (the old key's: %s)", d.name,
        attrs.show(d.to), attrs.show(d.from))
    end
  end

  -- Temporary files of a run that was killed while writing an output: never complete.
  local mine = {}
  for _, f in ipairs(st.files) do mine[f.name] = true end
  for _, t in ipairs(ctx.must(sealed.temporaries(ctx.params.out))) do
    if mine[t.of] then
      ctx.must(sealed.remove_temporary(t.path))
      ctx.say("removed %s, left by an interrupted run", t.path)
    end
  end

  local bar = ctx.progress(#st.files, "re-encrypting")
  local sum = {reencrypted = 0, skipped = 0, failed = 0}
  for _, f in ipairs(st.files) do
    local status, reason, bytes = do_file(ctx, st, f)
    f.status = status
    sum[status] = sum[status] + 1
    ctx.emit({event = "file", path = f.path, status = status, bytes = bytes, reason = reason,
              _order = {"event", "path", "status", "bytes", "reason"}})
    if status == "failed" then ctx.say("FAILED %s: %s", f.name, reason)
    else ctx.say("%s %s (%s)", status, f.name, human(bytes)) end
    bar.tick()
  end
  bar.done()
  ctx.emit({event = "summary", reencrypted = sum.reencrypted, skipped = sum.skipped,
            failed = sum.failed, _order = {"event", "reencrypted", "skipped", "failed"}})
  ctx.say("%d re-encrypted, %d skipped (already done), %d failed", sum.reencrypted,
    sum.skipped, sum.failed)
  if sum.failed > 0 then ctx.status = 1 end
end

--- Every output opens with the new key to the recorded plaintext; the originals unchanged.
function M.verify(ctx)
  local st = ctx.state
  local n = 0
  for _, f in ipairs(st.files) do
    if f.status == "reencrypted" or f.status == "skipped" then
      local got, err = sealed.verify(st.dst, st.new, f.out)
      if not got then error(("verify: %s"):format(err), 0) end
      if got.sha256 ~= f.sha256 then
        error(("verify: %s no longer holds the plaintext of %s"):format(f.out, f.path), 0)
      end
      n = n + 1
    end
    local now = sealed.stat(f.path)
    if not now or now.size ~= f.size or now.mtime ~= f.mtime then
      error(("verify: the original %s changed during the run"):format(f.path), 0)
    end
  end
  ctx.say("verified: %d output(s) open with the new key (kcv %s); originals unchanged", n,
    st.new:kcv())
end

--- Removes the outputs this run wrote, and the new key if this run made it.
function M.rollback(ctx)
  local st = ctx.state
  for i = #(st.written or {}), 1, -1 do
    local f = st.written[i]
    ctx.must(sealed.remove(f.out))
    ctx.journal({event = "file", path = f.path, out = f.out, step = "removed"})
  end
  -- The new key goes only if this run generated it. A key found from an earlier run
  -- stays: that run's outputs (kept: they are not this run's to remove) can be read
  -- with that key alone, and a resume must find it again.
  if st.created_now and st.new then
    local kcv = st.new:kcv()
    ctx.must(st.new:destroy())
    ctx.journal({event = "key", step = "destroyed", label = st.label, kcv = kcv})
  end
end

return M
