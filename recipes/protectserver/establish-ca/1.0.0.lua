-- protectserver/establish-ca 1.0.0: "Establishing a ProtectServer 3 HSM as the HSM certificate
-- authority" (seed 001), on any PKCS#11 token:
--   1 gen-owner: an owner key pair (POK, EC P-521) on the CA token and its self-signed CA
--     certificate (POC), exported to the certificate store as Owner_POC.crt (POC-pending)
--   2 gen-key: an identity key (PIK) on the CA token itself and on each token of hsms=, each
--     PIC signed by the POK, the POC and PIC stored on the token, HSM_<serial>.crt exported
-- Overwriting an owner key or an identity asks first (--yes in batch). For an offline CA,
-- leave hsms= empty and certify the others with protectserver/authenticate-offline.
local trust = require("hsm.trust")
local ui = require("hsm.ui")

return {
  id = "protectserver/establish-ca",
  version = "1.0.0",
  description = "Make one token the HSM certificate authority (POK/POC) and certify HSMs (seed 001)",
  tags = {"trust", "identity", "vendor:thales-protectserver"},
  requires = {shell = "0.1", mechanisms = {"CKM_EC_KEY_PAIR_GEN", "CKM_ECDSA"}},
  params = {
    ca = {type = "uri", doc = "the token that becomes the CA"},
    hsms = {type = "uris", all = true, default = "", doc = "other tokens to certify now: URIs, comma-separated, or all (with the CA's PIN source)"},
    certs = {type = "string", default = "", doc = "the client certificate store (default: HSMSH_CERT_STORE or the XDG data dir)"},
  },
  phases = {
    {
      name = "1-gen-owner",
      plan = function(ctx)
        local p = ctx.params
        ctx.state.certs = p.certs ~= "" and p.certs or trust.cert_store()
        ctx.state.hsms = p.hsms ~= "" and trust.uri_list(p.hsms, "hsms", p.ca) or {}
        ctx.state.ca = ctx.token(p.ca, {write = true})
      end,
      apply = function(ctx)
        local st = ctx.state
        local poc = trust.gen_owner(st.ca, {yes = ctx.yes})
        local path = trust.save_poc(st.certs, poc)
        ctx.emit({event = "owner", file = path})
        ctx.say("step 1: POK and POC made on the CA (POC-pending); %s", path)
      end,
    },
    {
      name = "2-gen-key",
      apply = function(ctx)
        local st = ctx.state
        local done = trust.certify(ctx, st.ca, st.hsms, st.certs, true)
        ctx.say("step 2: %d identities signed by the POK", done)
      end,
      verify = function(ctx)
        local sessions = {ctx.state.ca}
        for _, s in ipairs(ctx.state.targets or {}) do sessions[#sessions + 1] = s end
        local rows = trust.list(sessions)
        ctx.print(ui.table(rows, trust.LIST_COLUMNS))
        trust.expect(rows, "owner-signed")
        if rows[1].owner ~= "CA" then error("the CA token is still " .. rows[1].owner, 0) end
      end,
    },
  },
}
