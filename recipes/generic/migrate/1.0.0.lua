-- generic/migrate 1.0.0: copy every (filtered) object of one token to another by wrap/unwrap,
-- attributes kept, each key verified; the source is never written. Re-running, or
-- `hsmsh resume JOURNAL` after an interruption, finishes the work with nothing lost or doubled.
local migrate = require("hsm.migrate")
local transport = require("hsm.transport")
local ui = require("hsm.ui")

local function setup(ctx)
  local st = ctx.state
  if st.plan then return st end
  local p = ctx.params
  st.src, st.dst = ctx.token(p.from), ctx.token(p.to, {write = true})
  st.filter = migrate.filter(p.filter)
  if ctx.previous and not ctx.dry_run then
    -- Resuming: a killed run's half-made session objects on the destination, when proven.
    local removed, left = migrate.clear_ghosts(ctx, st.dst, st.src)
    if removed > 0 then ctx.say("removed %d session object(s) a killed run left behind", removed) end
    if left > 0 then
      ctx.say("left %d session object(s) whose key cannot be proven one this run had in flight " ..
        "(SoftHSM2 keeps a killed process's half-made object as a file; remove it with " ..
        "pkcs11-tool once you know whose it is)", left)
    end
  end
  st.transport = transport.new(st.src, st.dst, {kind = p.transport, kek = p.kek,
                                                    keep = p.keep_transport and not ctx.dry_run})
  ctx.defer(st.transport.close)   -- dry runs and failures included
  if p.workers > 1 then
    -- One destination session per unwrapping thread (sessions share the token's login).
    local list = {}
    for i = 1, p.workers do
      list[i] = i == 1 and st.dst or assert(st.dst:module():open(st.dst:slot()))
    end
    st.transport.workers = list
  end
  st.plan = migrate.plan(st.src, st.dst, {filter = st.filter, transport = st.transport,
    capacity = p.capacity, fips = p.fips, previous = ctx.previous})
  return st
end

return {
  id = "generic/migrate",
  version = "1.0.0",
  description = "Migrate keys and objects between tokens by wrap/unwrap, verified and resumable",
  tags = {"migration", "cross-hsm"},
  requires = {shell = "0.1", mechanisms = {"CKM_RSA_PKCS_OAEP", "CKM_AES_KEY_WRAP_PAD"}},
  params = {
    from = {type = "uri", doc = "the source token, e.g. pkcs11:token=blue?pin-value=1234"},
    to = {type = "uri", doc = "the destination token"},
    filter = {type = "string", default = "",
              doc = "which objects: label=GLOB,id=HEX,class=secret-key|private-key|...,type=AES"},
    transport = {type = "enum", values = {"auto", "rsa-aes", "aes-kwp", "rsa-oaep"}, default = "auto",
                 doc = "how keys travel; auto = aes-kwp with kek=, else rsa-aes"},
    kek = {type = "string", required = false,
           doc = "label of an AES key-encryption key present on both tokens (transport=aes-kwp)"},
    capacity = {type = "integer", min = 0, required = false, doc = "the destination's key limit"},
    fips = {type = "boolean", default = false, doc = "the destination is in FIPS mode (no 3DES)"},
    keep_transport = {type = "boolean", default = false,
                      doc = "keep the run's RSA transport pair on the destination (token objects)"},
    workers = {type = "integer", min = 1, max = 32, default = 1,
               doc = "destination sessions unwrapping in parallel threads (keys are still verified one by one)"},
  },
  phases = {
    {
      name = "plan",
      plan = function(ctx)
        local st = setup(ctx)
        st.source_before = migrate.fingerprint(st.plan.all_src)
        local rows = {}
        for _, it in ipairs(st.plan.items) do
          local r = migrate.row(it)
          rows[#rows + 1] = r
          if ctx.dry_run then
            r.event, r._order = "plan", {"event", "class", "key_type", "label", "id", "strategy"}
            ctx.emit(r)
          end
        end
        if ctx.dry_run or not ctx.json then
          ctx.say("transport: %s%s", st.transport.name,
            #st.transport.notes > 0 and ("\nnote: " .. table.concat(st.transport.notes, "\nnote: ")) or "")
          ctx.say("%s", ui.table(rows, migrate.columns))
        end
        local c = st.plan.counts
        ctx.say("plan: %d to wrap, %d to copy, %d already there, %d blocked, %d conflicts%s",
          c.wrap or 0, c.copy or 0, c.skip or 0, c.blocked or 0, c.conflict or 0,
          c.unproven and (", %d left in place (not provably the interrupted run's)"):format(c.unproven) or "")
        migrate.refuse_conflicts(st.plan)
      end,
    },
    {
      name = "migrate",
      apply = function(ctx)
        local st = setup(ctx)
        local resumed = false
        for _, ev in ipairs(ctx.previous or {}) do resumed = resumed or ev.event == "destination" end
        local ok, sum = pcall(migrate.apply_reported, ctx, st.plan, "migrating",
                              {workers = ctx.params.workers, resumed = resumed})
        st.transport.close()   -- the run's transport objects go whatever happened
        if not ok then error(sum, 0) end
        st.summary = sum
        ctx.say("%d migrated, %d skipped (already there), %d blocked, %d failed%s",
          sum.migrated, sum.skipped, sum.blocked, sum.failed,
          sum.removed and (", %d half-made object(s) of the interrupted run removed"):format(sum.removed) or "")
      end,
      -- No rollback: keys already migrated stay (verified copies, listed in the journal), and
      -- apply removes the run's transport objects itself; a failure exits 1.
      verify = function(ctx)
        local st = ctx.state
        local ok, after = pcall(migrate.fingerprint, st.src)
        if not ok then
          error("could not re-read the source to prove it unchanged (" .. tostring(after)
            .. "); the migrated keys stay on the destination", 0)
        end
        if after ~= st.source_before then
          error("the source token changed during the migration (its attribute fingerprint differs)", 0)
        end
      end,
    },
  },
}
