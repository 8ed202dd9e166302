-- protectserver/authenticate-online 1.0.0: "Authenticating ProtectServer 3 HSMs with an HSM CA
-- in production" (seed 001): the CA token and the new HSMs are reachable from this client.
-- For each token of hsms=: a new identity key (PIK, EC P-521) made on it, its CSR signed by
-- the CA's owner key (POK) into the PIC, the POC and the PIC stored on the token, and
-- HSM_<serial>.crt exported to the certificate store. An existing PIK/PIC is replaced only
-- when confirmed (--yes in batch).
local trust = require("hsm.trust")
local ui = require("hsm.ui")

return {
  id = "protectserver/authenticate-online",
  version = "1.0.0",
  description = "Certify HSMs with an online HSM CA: PIK on each, PIC signed by the POK (seed 001)",
  tags = {"trust", "identity", "vendor:thales-protectserver"},
  requires = {shell = "0.1", mechanisms = {"CKM_EC_KEY_PAIR_GEN", "CKM_ECDSA"}},
  params = {
    ca = {type = "uri", doc = "the CA token (holds the POK and POC: protectserver/establish-ca)"},
    hsms = {type = "uris", all = true, doc = "the tokens to certify: URIs, comma-separated, or all (with the CA's PIN source)"},
    certs = {type = "string", default = "", doc = "the client certificate store (default: HSMSH_CERT_STORE or the XDG data dir)"},
  },
  phases = {
    {
      name = "gen-key",
      plan = function(ctx)
        local p, st = ctx.params, ctx.state
        st.certs = p.certs ~= "" and p.certs or trust.cert_store()
        st.hsms = trust.uri_list(p.hsms, "hsms", p.ca)
        st.ca = ctx.token(p.ca, {write = true})
        local id = trust.identity(st.ca)
        if not (id.pok and id.poc) then
          error(("token %s has no owner key and POC: run protectserver/establish-ca first"):format(id.label), 0)
        end
      end,
      apply = function(ctx)
        local st = ctx.state
        trust.save_poc(st.certs, trust.identity(st.ca).poc)
        ctx.say("%d identities signed by the POK", trust.certify(ctx, st.ca, st.hsms, st.certs, false))
      end,
      verify = function(ctx)
        local rows = trust.list(ctx.state.targets)
        ctx.print(ui.table(rows, trust.LIST_COLUMNS))
        trust.expect(rows, "owner-signed")
      end,
    },
  },
}
