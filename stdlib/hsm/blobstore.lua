--- hsm.blobstore: keys kept outside the HSM as blobs wrapped under a master key that stays
--- in the HSM (as openCryptoki's EP11 token keeps TOK_OBJ), and their re-encipherment under a
--- new master key (seed 003, pkcsep11_migrate):
---
---   STORE/store.json          {"mk": {label, kcv}, "state": "normal" | "rekey" | "rewrapped", ...}
---   STORE/objects/NAME.json   attributes, check value and the blob (AES-KWP under the MK)
---   STORE/objects.new/        the blobs re-wrapped under the new MK, until activation
---   STORE.backup-TIME/        the copy made (and verified) before a re-encipherment
---
--- Re-wrapping happens inside the HSM: a blob is unwrapped with the old MK into a session
--- object, wrapped with the new MK, and the session object destroyed; no key is ever in clear
--- outside. The current blobs are never rewritten in place: the new ones are written beside
--- them, verified, and swapped in at activation, so a failure or a kill leaves the store as
--- it was until then.
local core = require("hsm.core")
local wrap = require("hsm.wrap")
local json = require("hsm.json")
local keys = require("hsm.keys")
local attrs = require("hsm.attrs")
local exchange = require("hsm.exchange")

local M = {}

local function sh(cmd) return os.execute(cmd) == true end
local function q(p) return "'" .. p:gsub("'", "'\\''") .. "'" end

function M.state(dir)
  if not core.stat(dir .. "/store.json") then
    error(("%s is not a blob store (it has no store.json): a store is made by the applications "
      .. "that keep their keys in it, through hsm.blobstore.create"):format(dir), 0)
  end
  return exchange.read_json(dir .. "/store.json")
end
local function save(dir, st) exchange.write_json(dir .. "/store.json", st) end

local function kcv_of(s, key) return keys.kcv(key) or require("hsm.archive").value_kcv(s, key) end
--- A master key's KCV as the store records it (to prove a key is the one a store names).
M.kcv = kcv_of

--- The master key with this label on the session's token; raises unless exactly one.
function M.master_key(s, label)
  local l = assert(s:find_all({CKA_CLASS = "CKO_SECRET_KEY", CKA_LABEL = label}))
  if #l ~= 1 then error(("%d keys are labelled %s on the token (expected one master key)"):format(#l, label), 0) end
  return l[1]
end

--- Makes an empty store whose blobs will be wrapped under mk.
function M.create(dir, s, mk)
  if not sh("mkdir -p " .. q(dir .. "/objects")) then error("cannot create " .. dir, 0) end
  save(dir, {format = "hsmsh-blobstore", version = 1, state = "normal",
             mk = {label = mk.label, kcv = kcv_of(s, mk)}})
end

--- The names of the objects in the store (or in its objects.new), sorted.
function M.names(dir, sub)
  local out = {}
  for _, f in ipairs(core.listdir(dir .. "/" .. (sub or "objects")) or {}) do
    local n = f.kind == "file" and f.name:match("^(.+)%.json$")
    if n then out[#out + 1] = n end
  end
  table.sort(out)
  return out
end

local function entry_path(dir, name, sub) return ("%s/%s/%s.json"):format(dir, sub or "objects", name) end

--- Wraps a key into the store under the active master key.
function M.put(dir, s, obj, name)
  if not name:match("^[%w_%-%.]+$") then error(("bad object name '%s' (letters, digits, - _ .)"):format(name), 0) end
  local st = M.state(dir)
  local mk = M.master_key(s, st.mk.label)
  local blob, err = s:wrap(wrap.kwp_mech(s, "CKF_WRAP"), mk, obj)
  if not blob then error(("cannot wrap %s under %s: %s"):format(name, st.mk.label, err), 0) end
  local a = attrs.capture(obj)
  exchange.write_json(entry_path(dir, name), {name = name, attrs = attrs.to_data(a),
    check = keys.kcv(obj) or keys.fingerprint(obj), mk_kcv = st.mk.kcv, blob = keys.hex(blob)})
end

local function unwrap_entry(s, mk, e, token)
  local a = attrs.from_data(e.attrs)
  local t = attrs.template(a, "unwrap", attrs.quirks(s))
  t.CKA_TOKEN = token or false
  if not token then t.CKA_EXTRACTABLE = true end   -- a session copy that can be re-wrapped
  return s:unwrap(wrap.kwp_mech(s, "CKF_UNWRAP"), mk, require("hsm").unhex(e.blob), t)
end

--- The stored key as a session object (unwrapped in the HSM with the active master key).
function M.get(dir, s, name)
  local st = M.state(dir)
  local e = exchange.read_json(entry_path(dir, name))
  return unwrap_entry(s, M.master_key(s, st.mk.label), e)
end

-- Checks one entry unwraps under mk to the recorded check value.
local function verify_entry(s, mk, e)
  local obj, err = unwrap_entry(s, mk, e)
  if not obj then return nil, err end
  local got = keys.kcv(obj) or keys.fingerprint(obj)
  obj:destroy()
  if e.check and got and got ~= e.check then return nil, ("check value %s, recorded %s"):format(got, e.check) end
  return true
end

--- Copies the store to STORE.backup-TIME and verifies every blob of the copy under mk.
function M.backup(dir, s, mk)
  local base = ("%s.backup-%s"):format(dir, os.date("!%Y%m%dT%H%M%SZ"))
  local bdir, n = base, 1
  while core.stat(bdir) do n = n + 1; bdir = base .. "-" .. n end   -- never into an old one
  if not sh(("cp -a %s %s"):format(q(dir), q(bdir))) then error("cannot copy the store to " .. bdir, 0) end
  for _, name in ipairs(M.names(bdir)) do
    local ok, err = verify_entry(s, mk, exchange.read_json(entry_path(bdir, name)))
    if not ok then error(("the backup's %s does not unwrap: %s"):format(name, err), 0) end
  end
  return bdir
end

--- Re-enciphers the store from its master key to new_mk. Steps (each recorded in store.json,
--- so a re-run after kill -9 continues where it stopped):
---   backup   copy the store and verify the copy under the old key
---   rewrap   every blob re-wrapped under the new key into objects.new, verified; stop at
---            the first failure, drop objects.new, the store stays on the old key (exit 3)
---   activate objects.new becomes objects and the new key the store's master key
--- opts: {journal=fn, on_item=fn(name, status)}. Returns the state table.
function M.rekey(dir, s, new_mk, opts)
  opts = opts or {}
  local journal = opts.journal or function() end
  local st = M.state(dir)
  local new_kcv = kcv_of(s, new_mk)
  if st.state == "normal" and st.mk.kcv == new_kcv then
    st.already = true          -- a finished run, again: nothing to do
    return st
  end
  if st.state == "normal" then
    local old = M.master_key(s, st.mk.label)
    st.backup = M.backup(dir, s, old)
    journal({event = "step", step = "backup", dir = st.backup})
    st.state, st.new_mk = "rekey", {label = new_mk.label, kcv = new_kcv}
    sh("rm -rf " .. q(dir .. "/objects.new"))
    if not sh("mkdir -p " .. q(dir .. "/objects.new")) then error("cannot create objects.new", 0) end
    save(dir, st)
  elseif st.new_mk and st.new_mk.kcv ~= new_kcv then
    error(("a re-encipherment to %s (KCV %s) is under way; finish or cancel it first")
      :format(st.new_mk.label, st.new_mk.kcv), 0)
  end
  if st.state == "rekey" then
    local old = M.master_key(s, st.mk.label)
    local done = {}
    for _, n in ipairs(M.names(dir, "objects.new")) do done[n] = true end
    for _, name in ipairs(M.names(dir)) do
      if not done[name] then
        local e = exchange.read_json(entry_path(dir, name))
        local obj, err = unwrap_entry(s, old, e)
        local blob
        if obj then
          blob, err = s:wrap(wrap.kwp_mech(s, "CKF_WRAP"), new_mk, obj)
          obj:destroy()
        end
        local ok = blob ~= nil
        if ok then
          e.blob, e.mk_kcv = keys.hex(blob), new_kcv
          ok, err = verify_entry(s, new_mk, e)
        end
        if not ok then
          sh("rm -rf " .. q(dir .. "/objects.new"))
          st.state, st.new_mk = "normal", nil
          save(dir, st)
          journal({event = "step", step = "failed", name = name})
          error(("re-enciphering %s failed (%s); stopped, the store is unchanged on the old key (backup: %s)")
            :format(name, tostring(err), st.backup), 0)
        end
        exchange.write_json(entry_path(dir, name, "objects.new"), e)
        journal({event = "step", step = "rewrapped", name = name})
      end
      if opts.on_item then opts.on_item(name, done[name] and "already" or "rewrapped") end
    end
    st.state = "rewrapped"
    save(dir, st)
  end
  return st
end

--- Makes the re-wrapped blobs and the new key current. After this the old key is no longer
--- needed by the store (destroy it only when the operator confirms).
function M.activate(dir)
  local st = M.state(dir)
  if st.state == "normal" then return st end   -- activated already
  if st.state ~= "rewrapped" then error(("nothing to activate (store state: %s)"):format(st.state), 0) end
  -- Two renames; a kill between them is finished by the next run (each step is checked).
  local cur, new, old = dir .. "/objects", dir .. "/objects.new", dir .. "/objects.old"
  if core.stat(new) then
    if core.stat(cur) then
      sh("rm -rf " .. q(old))
      if not os.rename(cur, old) then error("cannot move objects aside", 0) end
    end
    if not os.rename(new, cur) then error("cannot swap objects.new into place", 0) end
  end
  st.previous_mk, st.mk, st.new_mk, st.state = st.mk, st.new_mk, nil, "normal"
  save(dir, st)
  sh("rm -rf " .. q(old))
  return st
end

--- Drops an unfinished re-encipherment (possible until activation).
function M.cancel(dir)
  local st = M.state(dir)
  if st.state == "normal" then error("no re-encipherment to cancel", 0) end
  sh("rm -rf " .. q(dir .. "/objects.new"))
  st.state, st.new_mk = "normal", nil
  save(dir, st)
  return st
end

return M
