-- protectserver/self-signed-identity 1.0.0: "Creating a PIK and self-signed PIC on a
-- ProtectServer 3 HSM" (seed 001, ctident gen-selfsigned), for sites without an HSM CA: an
-- identity key pair (PIK, EC P-521) made on the token and its self-signed certificate (PIC),
-- exported to certs=DIR as HSM_<serial>.crt for the other HSMs to trust
-- (protectserver/trust). An existing identity is replaced only when confirmed (--yes).
local trust = require("hsm.trust")
local ui = require("hsm.ui")

return {
  id = "protectserver/self-signed-identity",
  version = "1.0.0",
  description = "A PIK and a self-signed PIC on a token, exported to the certificate store (seed 001)",
  tags = {"trust", "identity", "vendor:thales-protectserver"},
  requires = {shell = "0.1", mechanisms = {"CKM_EC_KEY_PAIR_GEN", "CKM_ECDSA"}},
  params = {
    token = {type = "uris", doc = "the token(s): URIs, comma-separated"},
    certs = {type = "string", default = "", doc = "where HSM_<serial>.crt goes (default: HSMSH_CERT_STORE or the XDG data dir)"},
  },
  phases = {
    {
      name = "gen-selfsigned",
      plan = function(ctx)
        local p, st = ctx.params, ctx.state
        st.certs = p.certs ~= "" and p.certs or trust.cert_store()
        st.sessions = {}
        for _, uri in ipairs(trust.uri_list(p.token, "token")) do st.sessions[#st.sessions + 1] = ctx.token(uri, {write = true}) end
      end,
      apply = function(ctx)
        local st = ctx.state
        for _, s in ipairs(st.sessions) do
          local pic = trust.gen_selfsigned(s, {yes = ctx.yes})
          local serial = trust.token_facts(s)
          local path = trust.save_pic(st.certs, serial, pic)
          ctx.emit({event = "identity", serial = serial, state = "self-signed", file = path})
          ctx.say("HSM %s: PIK and self-signed PIC made; %s", serial, path)
        end
      end,
      verify = function(ctx)
        local rows = trust.list(ctx.state.sessions)
        ctx.print(ui.table(rows, trust.LIST_COLUMNS))
        trust.expect(rows, "self-signed")
      end,
    },
  },
}
