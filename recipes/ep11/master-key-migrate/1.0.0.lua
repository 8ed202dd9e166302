-- ep11/master-key-migrate 1.0.0: IBM's EP11 master-key migration (seed 003, pkcsep11_migrate)
-- on a blob store (hsm.blobstore): keys kept outside the HSM, wrapped under a master key that
-- the HSM holds, re-enciphered under a new master key without ever being in clear.
--   1 the new master key is on the token         (the TKE's "submit and commit"; label new=)
--   3 back up the store                          (and verify the copy under the old key)
--   4 re-encipher every blob inside the HSM      (stop at the first failure: store unchanged)
--   5 activate the new master key                (the new blobs become the store's)
--   then delete the old master key               (only with destroy_old=true and confirmation)
-- A kill -9 at any point: run it again (or `hsmsh resume JOURNAL`) and it continues from the
-- step the store records. action=cancel drops an unfinished re-encipherment before step 5.
local blobstore = require("hsm.blobstore")
local ui = require("hsm.ui")

return {
  id = "ep11/master-key-migrate",
  version = "1.0.0",
  description = "EP11 master-key migration: re-encipher a blob store under a new master key",
  tags = {"master-key", "re-encipherment", "vendor:ibm-ep11"},
  requires = {shell = "0.1", mechanisms = {"CKM_AES_KEY_WRAP_PAD"}},
  params = {
    token = {type = "uri", doc = "the token holding both master keys"},
    store = {type = "string", doc = "the blob store directory"},
    new = {type = "string", required = false, doc = "label of the new master key (action=migrate)"},
    action = {type = "enum", values = {"migrate", "cancel", "status"}, default = "migrate",
              doc = "migrate (steps 3-5), cancel (before activation), status"},
    destroy_old = {type = "boolean", default = false,
                   doc = "after activation, destroy the old master key (asks, or --yes)"},
  },
  examples = {
    "# the store as it stands",
    "action=status store=STORE token='pkcs11:token=TOKEN?pin-source=file:PINFILE'",
    "# the new master key is on the token first (the TKE's submit and commit): an AES key labelled NEW_MK that may wrap and unwrap",
    "action=migrate new=NEW_MK store=STORE token='pkcs11:token=TOKEN?pin-source=file:PINFILE' --dry-run",
    "# once nothing needs the old master key any more",
    "action=migrate new=NEW_MK destroy_old=yes store=STORE token='pkcs11:token=TOKEN?pin-source=file:PINFILE' --dry-run",
  },
  phases = {
    {
      name = "preflight",
      plan = function(ctx)
        local p, st = ctx.params, ctx.state
        st.s = ctx.token(p.token, {write = p.action ~= "status"})
        local store = blobstore.state(p.store)
        local n = #blobstore.names(p.store)
        ctx.say("store %s: %d blobs under %s (KCV %s), state %s%s", p.store, n, store.mk.label,
          store.mk.kcv or "?", store.state, store.new_mk and (", re-enciphering to " .. store.new_mk.label) or "")
        ctx.emit({event = "store", blobs = n, master_key = store.mk.label, state = store.state})
        blobstore.master_key(st.s, store.mk.label)        -- the current key must be there
        if p.action == "migrate" then
          if not p.new then error("action=migrate needs new=LABEL (the new master key on the token)", 0) end
          st.new = blobstore.master_key(st.s, p.new)
        end
      end,
    },
    {
      name = "3-4-backup-and-reencipher",
      apply = function(ctx)
        local p, st = ctx.params, ctx.state
        if p.action == "cancel" then
          blobstore.cancel(p.store)
          ctx.say("re-encipherment cancelled; the store stays on its master key")
          return false
        end
        if p.action ~= "migrate" then return false end
        local bar = ctx.progress(#blobstore.names(p.store), "re-enciphering")
        local s = blobstore.rekey(p.store, st.s, st.new, {journal = ctx.journal, on_item = function(name, how)
          bar.tick()
          ctx.emit({event = "blob", name = name, status = how})
        end})
        bar.done()
        if s.already then
          ctx.say("the store is already on %s; nothing to re-encipher", s.mk.label)
          return false
        end
        ctx.say("step 3: backup %s (verified); step 4: every blob re-enciphered and verified", s.backup)
      end,
    },
    {
      name = "5-activate",
      apply = function(ctx)
        local p = ctx.params
        if p.action ~= "migrate" then return false end
        local s = blobstore.activate(p.store)
        ctx.say("step 5: %s (KCV %s) is the store's master key", s.mk.label, s.mk.kcv)
        ctx.emit({event = "activated", master_key = s.mk.label, kcv = s.mk.kcv})
      end,
    },
    {
      name = "delete-old-master-key",
      apply = function(ctx)
        local p, st = ctx.params, ctx.state
        if p.action ~= "migrate" then return false end
        local prev = blobstore.state(p.store).previous_mk
        if not prev then return false end
        if not p.destroy_old then
          ctx.say("the old master key %s is kept; destroy it with destroy_old=true once the store is checked", prev.label)
          return false
        end
        -- A run killed after the destruction, resumed or run again: nothing left to destroy.
        local left = ctx.must(st.s:find_all({CKA_CLASS = "CKO_SECRET_KEY", CKA_LABEL = prev.label}))
        if #left == 0 then
          ctx.say("the old master key %s is already destroyed", prev.label)
          return false
        end
        -- Only the key the store was on: the label alone proves nothing.
        local old = blobstore.master_key(st.s, prev.label)
        local kcv = blobstore.kcv(st.s, old)
        if kcv ~= prev.kcv then
          error(("the key labelled %s has KCV %s, not %s, the store's old master key: not destroyed")
            :format(prev.label, tostring(kcv), prev.kcv), 0)
        end
        if not ctx.yes and ui.confirm(("Destroy the old master key %s (KCV %s)?"):format(prev.label, prev.kcv)) ~= true then
          error(("not destroying %s without confirmation (--yes)"):format(prev.label), 0)
        end
        old:destroy()
        ctx.say("destroyed the old master key %s", prev.label)
      end,
    },
  },
}
