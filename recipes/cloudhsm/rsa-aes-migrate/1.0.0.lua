-- cloudhsm/rsa-aes-migrate 1.0.0: AWS CloudHSM's procedure for moving exportable keys between
-- clusters with RSA-AES key wrap (seed 002, "How to migrate 3DES keys from a FIPS to a
-- non-FIPS AWS CloudHSM cluster"), step for step, on any PKCS#11 module:
--   1 generate the RSA wrapping key pair on the destination
--   2 export its public key as a PEM file          (3: the operator carries the file over)
--   4 import the public key into the source
--   5 wrap each key with RSA-AES to a file          (6: the operator carries the files back)
--   7 unwrap each key on the destination with the source's attributes
--   8 set the attributes the unwrap could not, then test 3DES/AES keys by cross-encryption
-- One process (side=both, both tokens reachable) or two machines through the directory dir=:
--   side=destination step=prepare, then side=source, then side=destination step=finish.
local migrate = require("hsm.migrate")
local transport = require("hsm.transport")
local verify = require("hsm.verify")
local wrap = require("hsm.wrap")
local keys = require("hsm.keys")
local exchange = require("hsm.exchange")
local ui = require("hsm.ui")

local function on(ctx, side, step)
  local p = ctx.params
  if p.side == "both" then return true end
  return p.side == side and (step == nil or p.step == step)
end

local function need(ctx, name)
  if not ctx.params[name] then
    error(("side=%s needs %s=URI"):format(ctx.params.side, name), 0)
  end
  ctx.state[name] = ctx.state[name] or ctx.token(ctx.params[name], {write = name == "to"})
  return ctx.state[name]
end

-- The destination's wrapping pair, found by label (a finish step runs in a new process).
local function find_pair(dst, p)
  local pubs = assert(dst:find_all({CKA_CLASS = "CKO_PUBLIC_KEY", CKA_LABEL = p.wrapping_label}))
  local privs = assert(dst:find_all({CKA_CLASS = "CKO_PRIVATE_KEY", CKA_LABEL = p.unwrapping_label}))
  if #pubs > 1 or #privs > 1 then
    error(("the destination has %d keys labelled %s and %d labelled %s (expected one each)")
      :format(#pubs, p.wrapping_label, #privs, p.unwrapping_label), 0)
  end
  return pubs[1], privs[1]
end

local function state(ctx)
  local st = ctx.state
  if not st.checked then
    exchange.check_dir(ctx.params.dir)
    st.checked = true
  end
  return st
end

return {
  id = "cloudhsm/rsa-aes-migrate",
  version = "1.0.0",
  description = "CloudHSM's RSA-AES key migration (seed 002 steps 1-8), one process or two machines",
  tags = {"migration", "cross-hsm", "split", "vendor:aws-cloudhsm"},
  requires = {shell = "0.1", mechanisms = {"CKM_RSA_PKCS_OAEP", "CKM_AES_KEY_WRAP_PAD"}},
  params = {
    side = {type = "enum", values = {"both", "source", "destination"}, default = "both",
            doc = "which half runs here"},
    step = {type = "enum", values = {"prepare", "finish"}, default = "prepare",
            doc = "for side=destination: prepare (steps 1-2) or finish (steps 7-8)"},
    from = {type = "uri", required = false, doc = "the source token (side=both|source)"},
    to = {type = "uri", required = false, doc = "the destination token (side=both|destination)"},
    dir = {type = "string", doc = "the exchange directory carried between the machines"},
    filter = {type = "string", default = "", doc = "which source objects: label=GLOB,id=HEX,class=,type="},
    wrapping_label = {type = "string", default = "rsa-wrapping-key", doc = "label of the public key (step 1)"},
    unwrapping_label = {type = "string", default = "rsa-unwrapping-key", doc = "label of the private key"},
    bits = {type = "integer", min = 2048, max = 8192, default = 2048, doc = "RSA modulus size of the wrapping pair"},
    keep_wrapping_key = {type = "boolean", default = false,
                         doc = "keep the destination's wrapping pair after step 8"},
  },
  examples = {
    "# one process reaching both tokens",
    "side=both dir=DIR from='pkcs11:token=FROM?pin-source=file:PINFILE' to='pkcs11:token=TO?pin-source=file:PINFILE' --dry-run",
    "# or two machines, DIR carried between them: the destination, the source, the destination again",
    "side=destination step=prepare dir=DIR to='pkcs11:token=TO?pin-source=file:PINFILE' --dry-run",
    "side=source dir=DIR from='pkcs11:token=FROM?pin-source=file:PINFILE' --dry-run",
    "side=destination step=finish dir=DIR to='pkcs11:token=TO?pin-source=file:PINFILE' --dry-run",
  },
  phases = {
    {
      name = "1-generate-wrapping-pair",
      plan = function(ctx)
        if on(ctx, "destination", "prepare") then need(ctx, "to"); state(ctx) end
      end,
      apply = function(ctx)
        if not on(ctx, "destination", "prepare") then return false end
        local p, st = ctx.params, state(ctx)
        local dst = need(ctx, "to")
        local pub, priv = find_pair(dst, p)
        if pub and priv then
          ctx.say("step 1: the destination already has %s / %s; using them", p.wrapping_label, p.unwrapping_label)
        elseif pub or priv then
          error(("the destination has only one half of the wrapping pair (%s); remove it or choose other labels")
            :format(pub and p.wrapping_label or p.unwrapping_label), 0)
        else
          pub, priv = transport.pair(dst, {bits = p.bits, token = true, label = p.wrapping_label})
          priv:set({CKA_LABEL = p.unwrapping_label})
          st.made_pair = true
          ctx.journal({event = "step", step = "wrapping-pair", label = p.wrapping_label})
          ctx.say("step 1: generated RSA-%d %s / %s on the destination", p.bits, p.wrapping_label, p.unwrapping_label)
        end
        -- What the destination can unwrap, for the source to choose (it cannot ask later).
        local hashes = {}
        for _, h in ipairs({"sha256", "sha1"}) do
          local probe = assert(dst:generate{type = "AES", bits = 128, token = false,
                                            CKA_EXTRACTABLE = true, CKA_ENCRYPT = true})
          local blob = wrap.rsa_aes_wrap(dst, pub, probe, {hash = h})
          local back = blob and wrap.rsa_aes_unwrap(dst, priv, blob, {CKA_CLASS = "CKO_SECRET_KEY",
            CKA_KEY_TYPE = "CKK_AES", CKA_TOKEN = false, CKA_ENCRYPT = true}, {hash = h})
          if back and keys.kcv(back) == keys.kcv(probe) then hashes[#hashes + 1] = h end
          if back then back:destroy() end
          probe:destroy()
        end
        if #hashes == 0 then error("the destination cannot unwrap RSA-AES with SHA-1 or SHA-256 OAEP", 0) end
        local kat = wrap.kat(dst, "CKM_AES_KEY_WRAP_PAD")
        if not kat.ok then error("the destination fails the AES-KWP known-answer test: " .. kat.detail, 0) end
        exchange.write_json(p.dir .. "/destination.json", {hashes = hashes,
          kwp_aligned_only = kat.aligned_only or false, kwp_detail = kat.detail})
      end,
      rollback = function(ctx)
        local st = ctx.state
        if st.made_pair then
          local pub, priv = find_pair(need(ctx, "to"), ctx.params)
          if pub then pub:destroy() end
          if priv then priv:destroy() end
        end
      end,
    },
    {
      name = "2-export-public-key",
      apply = function(ctx)
        if not on(ctx, "destination", "prepare") then return false end
        local p = ctx.params
        local pub = find_pair(need(ctx, "to"), p)
        exchange.write_public_pem(p.dir .. "/wrapping-key.pem", pub)
        ctx.say("step 2: wrote %s/wrapping-key.pem (step 3: carry %s to the source machine)", p.dir, p.dir)
      end,
    },
    {
      name = "4-5-import-and-wrap",
      plan = function(ctx)
        if not on(ctx, "source") then return end
        local p, st = ctx.params, state(ctx)
        local src = need(ctx, "from")
        if ctx.dry_run and p.side == "both" then
          return ctx.say("steps 4-5 are planned after steps 1-2 have run (a dry run stops here)")
        end
        st.dest = exchange.read_json(p.dir .. "/destination.json")
        st.pem = exchange.read(p.dir .. "/wrapping-key.pem")
        local kat = wrap.kat(src, "CKM_AES_KEY_WRAP_PAD")
        if not kat.ok then error("the source fails the AES-KWP known-answer test: " .. kat.detail, 0) end
        st.hash = nil
        for _, h in ipairs(st.dest.hashes or {}) do
          if h == "sha256" or h == "sha1" then st.hash = st.hash or h end
        end
        local t = {kind = "rsa-aes", strength = 256, aligned_only = kat.aligned_only or st.dest.kwp_aligned_only,
                   same_quirk = (kat.aligned_only or false) == (st.dest.kwp_aligned_only or false)}
        local items, all = migrate.index(src, migrate.filter(p.filter))
        local pubs = {}
        for _, it in ipairs(all) do
          if it.a.CKA_CLASS == "CKO_PUBLIC_KEY" then pubs[it.a.CKA_ID or ""] = it.obj end
        end
        st.pub_of = function(id) return pubs[id] end
        local rows = {}
        for _, it in ipairs(items) do
          local cls = it.a.CKA_CLASS
          local is_key = cls == "CKO_SECRET_KEY" or cls == "CKO_PRIVATE_KEY"
          it.reason = is_key and migrate.blocker(it, t, {}) or nil
          it.strategy = it.reason and "blocked" or is_key and "wrap" or "copy"
          rows[#rows + 1] = migrate.row(it)
        end
        st.items = items
        ctx.say("%s", ui.table(rows, migrate.columns))
      end,
      apply = function(ctx)
        if not on(ctx, "source") then return false end
        local p, st = ctx.params, ctx.state
        local src = need(ctx, "from")
        if not st.hash then error("the destination can unwrap neither SHA-256 nor SHA-1 OAEP", 0) end
        -- Step 4: a session object, so the source token itself is not changed.
        local spub = assert(wrap.import_public(src, st.pem, p.wrapping_label))
        ctx.say("step 4: imported %s into the source (session object)", p.wrapping_label)
        local wrapped, bar = 0, ctx.progress(#st.items, "wrapping")
        for _, it in ipairs(st.items) do
          if it.strategy == "wrap" then
            local blob, err = wrap.rsa_aes_wrap(src, spub, it.obj, {hash = st.hash})
            if blob then
              it.blob, wrapped = blob, wrapped + 1
              it.evidence = verify.evidence(src, it.obj, it.a, st.pub_of)
            else
              it.strategy, it.reason = "blocked", "wrap failed: " .. tostring(err)
            end
          end
          bar.tick()
        end
        bar.done()
        spub:destroy()
        local ti = src:module():token_info(src:slot()) or {}
        exchange.write_manifest(p.dir, {format = "hsmsh-exchange-1", recipe = "cloudhsm/rsa-aes-migrate",
          hash = st.hash, source = {label = ti.label, serial = ti.serial, model = ti.model},
          time = os.time()}, st.items)
        ctx.say("step 5: wrapped %d keys (RSA-AES, OAEP-%s) into %s (step 6: carry it back)", wrapped,
          st.hash:upper(), p.dir)
      end,
    },
    {
      name = "7-8-unwrap-set-attributes-and-test",
      plan = function(ctx)
        if not on(ctx, "destination", "finish") or ctx.dry_run and ctx.params.side == "both" then return end
        local p, st = ctx.params, state(ctx)
        local dst = need(ctx, "to")
        local header, entries = exchange.read_manifest(p.dir)   -- every blob checked first
        local _, priv = find_pair(dst, p)
        if not priv then error(("the destination has no %s (run step=prepare first)"):format(p.unwrapping_label), 0) end
        local items = {}
        for _, e in ipairs(entries) do
          items[#items + 1] = {ref = e.ref, a = e.a, check = e.check, blob = e.blob, evidence = e.evidence,
                               blocked = e.strategy == "blocked" and e.reason or nil}
        end
        local t = {kind = "rsa-aes", unwrap = function(blob, tmpl)
          return wrap.rsa_aes_unwrap(dst, priv, blob, tmpl, {hash = header.hash})
        end}
        st.plan = migrate.plan_items(items, dst, {transport = t, previous = ctx.previous},
          {prove = function(it, d_obj) return verify.check_evidence(dst, d_obj, it.a, it.evidence) end})
        local rows = {}
        for _, it in ipairs(st.plan.items) do rows[#rows + 1] = migrate.row(it) end
        ctx.say("%s", ui.table(rows, migrate.columns))
        migrate.refuse_conflicts(st.plan)
      end,
      apply = function(ctx)
        if not on(ctx, "destination", "finish") then return false end
        local st = ctx.state
        local plan = st.plan
        local sum = migrate.apply_reported(ctx, plan, "unwrapping")
        st.summary = sum
        ctx.say("steps 7-8: %d unwrapped and tested, %d already there, %d blocked, %d failed",
          sum.migrated, sum.skipped, sum.blocked, sum.failed)
      end,
    },
    {
      name = "cleanup",
      apply = function(ctx)
        if not on(ctx, "destination", "finish") or ctx.params.keep_wrapping_key then return false end
        local st = ctx.state
        if st.summary and st.summary.failed > 0 then
          ctx.say("keeping the wrapping pair: some keys failed (run the finish step again)")
          return
        end
        local pub, priv = find_pair(need(ctx, "to"), ctx.params)
        if pub then pub:destroy() end
        if priv then priv:destroy() end
        ctx.say("removed the wrapping pair from the destination")
      end,
    },
  },
}
