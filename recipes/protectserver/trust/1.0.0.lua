-- protectserver/trust 1.0.0: "Establishing trust between ProtectServer 3 HSMs" and "Removing
-- trust" (seed 001, ctident trust / remove): each token of trusting= stores the PIC of each
-- HSM of trusted= as a certificate with CKA_TRUSTED = true, which only its Security Officer
-- may set (the SO PIN: so_pin=file:PATH|prompt, else the URI's PIN). With an owner POC on the
-- trusting token, the peer's PIC and the token's own must chain to it; otherwise the peer's
-- self-signed PIC must verify. Expired, not-yet-valid and non-P-521 certificates are refused.
--   action=trust  trusted= URIs or PIC files (HSM_<serial>.crt, carried from another client);
--                 trusted=all trusting=all: every HSM of the module trusts every other
--   action=remove trusted= URIs, HSM serial numbers, or all
--   action=export trusted= URIs: their PICs (and owner POC) into certs=DIR (ctident fetch-certs),
--                 for the other client of a split run
--   action=list   trusting= URIs or all: each HSM's identity and owner state and its peers
local trust = require("hsm.trust")
local ui = require("hsm.ui")

local function items(text, what)
  local out = require("hsm").split_list(text or "")
  if #out == 0 then error(what .. ": nothing given", 0) end
  return out
end

local function is_uri(x) return x:sub(1, 7) == "pkcs11:" end

-- The trusted HSMs' PICs ({serial=, der=}), from their tokens (read without login) or files;
-- trusted=all: every token of the module that has a PIC.
local function peer_pics(ctx)
  local out = {}
  local all = ctx.params.trusted == "all"
  local list = all and trust.uri_list("all", "trusted") or items(ctx.params.trusted, "trusted")
  for _, x in ipairs(list) do
    if is_uri(x) then
      local s <close> = ctx.token(x, {login = false})
      local id = trust.identity(s)
      if id.pic or not all then
        local der, serial = trust.export(s, "pic")
        out[#out + 1] = {serial = serial, der = der, from = x}
      else
        ctx.say("HSM %s (token %s) has no PIC: not trusted", id.serial, id.label)
      end
    else
      out[#out + 1] = {der = trust.read_der(x), from = x}
    end
  end
  return out
end

return {
  id = "protectserver/trust",
  version = "1.0.0",
  description = "Trust (or stop trusting) HSMs by storing their PICs as CKA_TRUSTED certificates (seed 001)",
  tags = {"trust", "split", "vendor:thales-protectserver"},
  requires = {shell = "0.1"},
  params = {
    action = {type = "enum", values = {"trust", "remove", "export", "list"}, default = "trust", doc = "what to do"},
    trusted = {type = "uris", all = true, default = "", doc = "the HSMs trusted: URIs or PIC files (remove: also serials or all)"},
    trusting = {type = "uris", all = true, default = "", doc = "the tokens that trust them: URIs, comma-separated, or all"},
    so_pin = {type = "pin-source", default = "", doc = "the trusting tokens' SO PIN: file:PATH or prompt (default: the URI's PIN)"},
    certs = {type = "string", default = "", doc = "action=export: where HSM_<serial>.crt goes"},
  },
  examples = {
    "# both tokens hold an identity first (protectserver/self-signed-identity or protectserver/establish-ca)",
    "action=trust trusted='pkcs11:token=PEER?pin-source=file:PINFILE' trusting='pkcs11:token=TOKEN?pin-source=file:PINFILE' so_pin=file:SO_PINFILE --dry-run",
    "action=trust trusted='pkcs11:token=TOKEN?pin-source=file:PINFILE' trusting='pkcs11:token=PEER?pin-source=file:PINFILE' so_pin=file:SO_PINFILE --dry-run",
    "action=list trusting='pkcs11:token=TOKEN?pin-source=file:PINFILE'",
    "# and to stop trusting it",
    "action=remove trusted='pkcs11:token=PEER?pin-source=file:PINFILE' trusting='pkcs11:token=TOKEN?pin-source=file:PINFILE' so_pin=file:SO_PINFILE --dry-run",
  },
  phases = {
    {
      name = "trust",
      plan = function(ctx)
        local p = ctx.params
        if p.action == "list" then return end
        if p.action ~= "export" then ctx.state.trusting = trust.uri_list(p.trusting, "trusting") end
        if p.action == "trust" then ctx.state.peers = peer_pics(ctx) end
      end,
      apply = function(ctx)
        local p, st = ctx.params, ctx.state
        if p.action == "list" then
          local sessions = {}
          for _, uri in ipairs(trust.uri_list(p.trusting ~= "" and p.trusting or "all", "trusting")) do
            sessions[#sessions + 1] = ctx.token(uri, {login = false})
          end
          ctx.print(ui.table(trust.list(sessions), trust.LIST_COLUMNS))
          for _, s in ipairs(sessions) do s:close() end
          return
        end
        if p.action == "export" then
          local dir = p.certs ~= "" and p.certs or trust.cert_store()
          for _, x in ipairs(items(p.trusted, "trusted")) do
            local s <close> = ctx.token(x, {login = false})
            ctx.say("HSM %s: %s", trust.token_facts(s), table.concat(trust.fetch_certs(s, dir), " "))
          end
          return
        end
        local so = p.so_pin ~= "" and p.so_pin or nil
        local rows = {}
        for _, uri in ipairs(st.trusting) do
          local s <close> = ctx.token(uri, {so = true, so_pin = so, write = true})
          local me = trust.token_facts(s)
          if p.action == "trust" and p.trusting == "all" and trust.states(trust.identity(s)) == "none" then
            ctx.say("HSM %s has no identity: it trusts nobody (see protectserver/self-signed-identity)", me)
          elseif p.action == "trust" then
            for _, peer in ipairs(st.peers) do
              if peer.serial ~= me then
                local serial, changed = trust.trust(s, peer.der, {yes = ctx.yes})
                ctx.emit({event = "trust", trusting = me, trusted = serial, changed = changed})
                ctx.say("HSM %s trusts HSM %s%s", me, serial, changed and "" or " (already)")
              end
            end
          else
            for _, x in ipairs(items(p.trusted, "trusted")) do
              local serial = x
              if is_uri(x) then
                local t <close> = ctx.token(x, {login = false})
                serial = trust.token_facts(t)
              end
              for _, gone in ipairs(trust.remove(s, serial)) do
                ctx.emit({event = "untrust", trusting = me, trusted = gone})
                ctx.say("HSM %s no longer trusts HSM %s", me, gone)
              end
            end
          end
          for _, r in ipairs(trust.list({s})) do rows[#rows + 1] = r end
        end
        ctx.print(ui.table(rows, trust.LIST_COLUMNS))
      end,
    },
  },
}
