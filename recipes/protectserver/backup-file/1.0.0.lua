-- protectserver/backup-file 1.0.0: Thales ProtectServer's "Backup to file and restore"
-- (seed 000), on any PKCS#11 module:
--   backup:  ctkmu c -t AES -n AES_WRAP -k 2 -z256   the wrapping key from custodian components
--            ctkmu x -s SLOT -w AES_WRAP FILE [-4]    every object exported to a file
--   restore: ctkmu c ... (the same components)        the same wrapping key on the new token
--            ctkmu i -s SLOT -w AES_WRAP FILE         every object imported
-- Each half runs on its own client machine; only the file and the custodians travel. The
-- wrapping key is made for the run as a session object on each token (nothing is left behind)
-- unless keep_key=true. Objects that cannot be exported (CKA_EXTRACTABLE=false) are listed
-- with the pointer to token replication.
local archive = require("hsm.archive")
local migrate = require("hsm.migrate")
local ui = require("hsm.ui")

local USAGE = {W = "CKA_WRAP", U = "CKA_UNWRAP", S = "CKA_SIGN", V = "CKA_VERIFY",
               E = "CKA_ENCRYPT", D = "CKA_DECRYPT"}

local function components(ctx, s)
  local p = ctx.params
  local sources = {}
  for src in p.components:gmatch("[^,]+") do sources[#sources + 1] = src end
  if #sources < 1 then error("components: give one or more of file:PATH or prompt, comma-separated", 0) end
  local expected = {}
  for kcv in (p.kcvs or ""):gmatch("[^,]+") do expected[#expected + 1] = kcv:lower() end
  if #expected > 0 and #expected ~= #sources then
    error(("kcvs lists %d check values for %d components"):format(#expected, #sources), 0)
  end
  return archive.read_components(s, sources, function(i, kcv)
    ctx.say("Component %d KCV : %s", i, kcv:upper())
    if expected[i] then
      if expected[i] ~= kcv then
        error(("component %d has KCV %s, the custodian's record says %s"):format(i, kcv:upper(), expected[i]:upper()), 0)
      end
      return true
    end
    if ctx.yes then return true end
    local answer = ui.confirm("Is this correct?")
    if answer == nil then
      error(("component %d (KCV %s): confirm it with kcvs=... or --yes"):format(i, kcv:upper()), 0)
    end
    return answer
  end)
end

local function wrapping_key(ctx, s)
  local p = ctx.params
  local extra = {}
  for c in p.key_attributes:gmatch(".") do
    if not USAGE[c] then error(("key_attributes: '%s' is not one of W U S V E D"):format(c), 0) end
    extra[USAGE[c]] = true
  end
  local comps = components(ctx, s)
  local key, kcv = archive.key_from_components(s, comps, {label = p.key_label, token = p.keep_key,
                                                          attrs = extra})
  for _, c in ipairs(comps) do c:close() end
  ctx.say("Key '%s' KCV : %s", p.key_label, (kcv or "?"):upper())
  return key, #comps
end

return {
  id = "protectserver/backup-file",
  version = "1.0.0",
  description = "ProtectServer backup to file and restore, wrapping key from custodian components",
  tags = {"backup", "archive", "split", "vendor:thales-protectserver"},
  requires = {shell = "0.1", mechanisms = {"CKM_AES_KEY_WRAP_PAD", "CKM_SHA256_HMAC"}},
  params = {
    side = {type = "enum", values = {"backup", "restore"}, doc = "which half runs here"},
    token = {type = "uri", doc = "the token backed up (side=backup) or restored onto (side=restore)"},
    file = {type = "string", doc = "the archive file"},
    components = {type = "string", doc = "the wrapping key's components: file:PATH or prompt, comma-separated"},
    kcvs = {type = "string", required = false, doc = "the components' check values as the custodians recorded them"},
    key_label = {type = "string", default = "AES_WRAP", doc = "label of the wrapping key"},
    key_attributes = {type = "string", default = "WU", doc = "usage of the wrapping key: W U S V (E D make it unsafe)"},
    keep_key = {type = "boolean", default = false, doc = "keep the wrapping key on the token (ctkmu c does)"},
    filter = {type = "string", default = "", doc = "which objects to back up: label=GLOB,id=HEX,class=,type="},
  },
  phases = {
    {
      name = "preflight",
      plan = function(ctx)
        local p, st = ctx.params, ctx.state
        st.s = ctx.token(p.token)
        if p.side == "backup" then
          st.filter = migrate.filter(p.filter)
          local items = migrate.index(st.s, st.filter)
          local rows, blocked = {}, 0
          for _, it in ipairs(items) do
            local cls = it.a.CKA_CLASS
            if (cls == "CKO_SECRET_KEY" or cls == "CKO_PRIVATE_KEY") then
              it.reason = migrate.blocker(it, {kind = "aes-kwp"}, {})
            end
            it.strategy = it.reason and "blocked" or "export"
            if it.reason then blocked = blocked + 1 end
            rows[#rows + 1] = migrate.row(it)
          end
          ctx.say("%s", ui.table(rows, migrate.columns))
          ctx.say("%d objects, %d cannot be exported", #items, blocked)
        else
          st.parsed = archive.parse(p.file)
          local h = st.parsed.header
          ctx.say("archive of token %s (serial %s), %d objects, made %s by hsmsh %s",
            tostring(h.source and h.source.label), tostring(h.source and h.source.serial),
            h.objects or 0, os.date("!%Y-%m-%d %H:%M UTC", h.time or 0), tostring(h.hsmsh))
        end
      end,
    },
    {
      name = "backup",
      apply = function(ctx)
        local p, st = ctx.params, ctx.state
        if p.side ~= "backup" then return false end
        local key, n = wrapping_key(ctx, st.s)
        local sum = archive.backup(st.s, key, p.file, {filter = st.filter,
          custody = {scheme = "components", components = n},
          on_item = function(e)
            ctx.emit({event = "object", ref = e.ref, status = e.reason and "blocked" or "exported",
                      reason = e.reason, _order = {"event", "ref", "status"}})
          end})
        if not p.keep_key then key:destroy() end
        ctx.emit({event = "summary", objects = sum.objects, keys = sum.keys, blocked = sum.blocked,
                  _order = {"event", "objects", "keys", "blocked"}})
        ctx.say("wrote %s: %d objects (%d keys wrapped, %d not exportable)", p.file, sum.objects,
                sum.keys, sum.blocked)
      end,
    },
    {
      name = "restore",
      apply = function(ctx)
        local p, st = ctx.params, ctx.state
        if p.side ~= "restore" then return false end
        local key = wrapping_key(ctx, st.s)
        local a = archive.open(st.s, key, p.file)      -- the whole file is checked first
        local plan = archive.plan(st.s, key, a, {previous = ctx.previous})
        if plan.conflicts > 0 then
          error(("%d conflict(s): the token holds different objects under the same class, ID and label; nothing was written")
            :format(plan.conflicts), 0)
        end
        local bar = ctx.progress(#plan.items, "restoring")
        local sum = migrate.apply(plan, {journal = ctx.journal, on_item = function(ev)
          bar.tick()
          ev.event, ev._order, ev.ref = "key", {"event", "label", "id", "status", "reason", "kcv"}, nil
          ctx.emit(ev)
          if ev.status == "failed" then ctx.say("FAILED %s/%s: %s", ev.label, ev.id, ev.reason) end
        end})
        bar.done()
        if not p.keep_key then key:destroy() end
        sum.event, sum._order = "summary", {"event", "migrated", "skipped", "blocked", "failed"}
        ctx.emit(sum)
        ctx.say("restored %d objects, %d already there, %d blocked (not exported or not restorable), %d failed",
          sum.migrated, sum.skipped, sum.blocked, sum.failed)
        if sum.failed > 0 then ctx.status = 1 end
      end,
    },
  },
}
