-- protectserver/token-replication 1.0.0: "Migrating keys using token replication" (seed 000),
-- on any PKCS#11 token:
--   prerequisite  the destination's user and SO PINs are the source's (checked by logging in
--                 to the destination with the source's PINs)
--   1 trust       mutual trust between the two HSMs (ptk7tokmigration gen/getid/trust): both
--                 need an identity (protectserver/self-signed-identity or establish-ca); in
--                 one process the recipe stores each PIC on the other token as trusted
--   2 image       the source token's image bound to the destination (ctkmu xt -S <serial>):
--                 keys wrapped under a transport key only that HSM can derive, signed by the
--                 source's identity key; CKA_WRAP_WITH_TRUSTED keys travel under a transport
--                 key the SO marks CKA_TRUSTED
--   3 import      the image checked whole (destination, signer, signature, replay, MAC) and
--                 imported, every key verified (ptk7tokmigration it)
--   4 compare     source and destination listed side by side
-- One process: from= and to=. Two clients: side=source from= dest_cert=HSM_<serial>.crt
-- image=FILE, then side=destination to= image=FILE (mutual trust first: protectserver/trust).
-- Keys that are not extractable cannot leave through PKCS#11; the plan names them and points
-- to generic/rotate-reencrypt.
local replicate = require("hsm.replicate")
local trust = require("hsm.trust")
local archive = require("hsm.archive")
local migrate = require("hsm.migrate")
local hsm = require("hsm")
local ui = require("hsm.ui")

local function on(ctx, side) return ctx.params.side == "both" or ctx.params.side == side end

local function need(ctx, name)
  local v = ctx.params[name]
  if not v or v == "" then error(("side=%s needs %s="):format(ctx.params.side, name), 0) end
  return v
end

local function so_pin(ctx)
  return hsm.pin(nil, need(ctx, "so_pin"))
end

return {
  id = "protectserver/token-replication",
  version = "1.0.0",
  description = "Replicate a token onto another HSM through a signed image bound to it (seed 000)",
  tags = {"migration", "replication", "cross-hsm", "split", "vendor:thales-protectserver"},
  requires = {shell = "0.1", mechanisms = {"CKM_ECDH1_DERIVE", "CKM_ECDSA", "CKM_AES_KEY_WRAP_PAD"}},
  params = {
    side = {type = "enum", values = {"both", "source", "destination"}, default = "both", doc = "which half runs here"},
    from = {type = "uri", default = "", doc = "the source token (URI with the user PIN)"},
    to = {type = "uri", default = "", doc = "the destination token (URI; its PIN must be the source's)"},
    so_pin = {type = "pin-source", default = "", doc = "the source's SO PIN (file:PATH or prompt): the PIN rule, trust, CKA_WRAP_WITH_TRUSTED keys"},
    image = {type = "string", default = "token.img", doc = "the image file"},
    dest_cert = {type = "string", default = "", doc = "side=source: the destination's PIC (HSM_<serial>.crt)"},
    filter = {type = "string", default = "", doc = "which source objects: label=GLOB,id=HEX,class=,type="},
  },
  examples = {
    "# first: an identity on both tokens and mutual trust (protectserver/self-signed-identity, protectserver/trust)",
    "side=both from='pkcs11:token=FROM?pin-source=file:PINFILE' to='pkcs11:token=TO?pin-source=file:PINFILE' so_pin=file:SO_PINFILE --dry-run",
    "# or on two clients, the image carried between them (DEST_CERT: the destination's HSM_<serial>.crt)",
    "side=source from='pkcs11:token=FROM?pin-source=file:PINFILE' dest_cert=DEST_CERT image=FILE so_pin=file:SO_PINFILE --dry-run",
    "side=destination to='pkcs11:token=TO?pin-source=file:PINFILE' image=FILE --dry-run",
  },
  phases = {
    {
      name = "1-trust",
      plan = function(ctx)
        local p = ctx.params
        if on(ctx, "source") then trust.uri_list(need(ctx, "from"), "from") end
        if on(ctx, "destination") then trust.uri_list(need(ctx, "to"), "to") end
        if p.side == "source" then need(ctx, "dest_cert") end
        migrate.filter(p.filter)
      end,
      apply = function(ctx)
        local p = ctx.params
        if p.side ~= "both" then return false end
        -- The PIN rule, then each HSM trusts the other (SO sessions, before any user login).
        local dst <close> = ctx.token(p.to, {login = false})
        local user_pin, so = hsm.pin(p.from), p.so_pin ~= "" and so_pin(ctx) or nil
        if not so then error("so_pin= is needed: the PIN rule and trust need the source's SO PIN", 0) end
        replicate.check_pins(dst, user_pin, so)
        user_pin:close(); so:close()
        local pics = {}
        for _, uri in ipairs({p.from, p.to}) do
          local s <close> = ctx.token(uri, {login = false})
          pics[#pics + 1] = {trust.export(s, "pic")}
        end
        for i, uri in ipairs({p.from, p.to}) do
          local s <close> = ctx.token(uri, {so = true, so_pin = p.so_pin ~= "" and p.so_pin or nil})
          local serial, changed = trust.trust(s, pics[3 - i][1], {yes = ctx.yes})
          ctx.say("step 1: HSM %s trusts HSM %s%s", pics[i][2], serial, changed and "" or " (already)")
        end
      end,
    },
    {
      name = "2-image",
      apply = function(ctx)
        local p, st = ctx.params, ctx.state
        if not on(ctx, "source") then return false end
        local src = ctx.token(p.from)
        st.src = src
        local t
        if p.so_pin ~= "" then
          local so, user = so_pin(ctx), hsm.pin(p.from)
          t = replicate.trusted_transport(src, so, user)
          so:close(); user:close()
        end
        local dest_pic
        if p.side == "both" then
          local d <close> = ctx.token(p.to, {login = false})
          dest_pic = trust.export(d, "pic")
        else
          dest_pic = trust.read_der(p.dest_cert)
        end
        local filter = migrate.filter(p.filter)
        local sum, h = replicate.make(src, dest_pic, p.image, {transport = t, filter = filter,
          on_item = function(e)
            ctx.emit({event = "object", ref = e.ref, status = e.reason and "blocked" or "exported",
                      reason = e.reason, _order = {"event", "ref", "status"}})
            if e.reason then ctx.say("  blocked %s: %s", e.ref, e.reason) end
          end})
        if t then t:destroy() end
        ctx.emit({event = "image", file = p.image, objects = sum.objects, keys = sum.keys, blocked = sum.blocked,
                  destination = h.destination.serial, _order = {"event", "file", "objects", "keys", "blocked"}})
        ctx.say("step 2: image %s for HSM %s: %d objects (%d keys wrapped, %d blocked)", p.image,
                h.destination.serial, sum.objects, sum.keys, sum.blocked)
      end,
    },
    {
      name = "3-import",
      apply = function(ctx)
        local p, st = ctx.params, ctx.state
        if not on(ctx, "destination") then return false end
        if p.side == "destination" then
          -- The PIN rule: the PINs given here are the source's; they must open the destination.
          local d <close> = ctx.token(p.to, {login = false})
          local user = hsm.pin(p.to)
          local so = p.so_pin ~= "" and so_pin(ctx) or nil
          replicate.check_pins(d, user, so)
          user:close()
          if so then so:close() end
        end
        local dst = ctx.token(p.to, {write = true})
        st.dst = dst
        local img = replicate.open(dst, p.image)          -- every check before the first write
        st.img = img
        local plan = replicate.plan(dst, img, {previous = ctx.previous})
        migrate.refuse_conflicts(plan)
        st.blocked = {}
        for _, it in ipairs(plan.items) do
          if it.strategy == "blocked" then st.blocked[it.ref] = it.reason or "blocked" end
        end
        local ok, sum = pcall(migrate.apply_reported, ctx, plan, "importing")
        img.key:destroy()
        if not ok then error(sum, 0) end
        ctx.say("step 3: imported %d objects, %d already there, %d blocked, %d failed",
          sum.migrated, sum.skipped, sum.blocked, sum.failed)
      end,
    },
    {
      name = "4-compare",
      apply = function(ctx)
        local p, st = ctx.params, ctx.state
        if not on(ctx, "destination") then return false end
        local source
        if p.side == "both" then
          source = migrate.index(st.src, migrate.filter(p.filter))
        else
          source = archive.items(st.img.archive)
        end
        local rows, mismatches = replicate.compare(source, st.dst, st.blocked)
        ctx.print(ui.table(rows, replicate.COMPARE_COLUMNS))
        for _, r in ipairs(rows) do
          ctx.emit({event = "compare", ref = r.ref, source = r.source, destination = r.destination,
                    attributes = r.attributes, _order = {"event", "ref"}})
        end
        if mismatches > 0 then
          ctx.say("step 4: %d of %d objects differ", mismatches, #rows)
          ctx.status = 1
        else
          ctx.say("step 4: the destination matches the source (%d objects; blocked ones stay on the source only)", #rows)
        end
      end,
    },
  },
}
