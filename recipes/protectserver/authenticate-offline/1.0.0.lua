-- protectserver/authenticate-offline 1.0.0: "Authenticating ProtectServer 3 HSMs with an
-- offline HSM CA" (seed 001), the CA on client A, the new HSMs on client B, the files carried
-- between them in certs=DIR:
--   side=request (client B): a new PIK on each token of hsms= (PIK-pending) and its CSR,
--                            HSM_<serial>.csr                    (ctident gen-csr)
--   side=sign    (client A): the CA's POK signs every HSM_<serial>.csr in DIR into
--                            HSM_<serial>.crt; the POC is exported as Owner_POC.crt
--                                                               (ctcert c, ctcert x)
--   side=store   (client B): the POC and each HSM's PIC stored on its token, the chain
--                            checked first                      (ctident store-poc, store-pic)
-- side=all does the three in one process (ca= and hsms= both reachable). A CSR whose
-- signature does not verify, a key that is not P-521, or a PIC that does not chain to the
-- POC is refused with nothing stored.
local trust = require("hsm.trust")
local ui = require("hsm.ui")

local function on(ctx, side) return ctx.params.side == "all" or ctx.params.side == side end

local function need(ctx, name)
  if not ctx.params[name] or ctx.params[name] == "" then
    error(("side=%s needs %s="):format(ctx.params.side, name), 0)
  end
  return ctx.params[name]
end

-- The sessions of hsms=, opened once.
local function targets(ctx)
  local st = ctx.state
  if not st.targets then
    st.targets = {}
    for _, uri in ipairs(trust.uri_list(need(ctx, "hsms"), "hsms")) do st.targets[#st.targets + 1] = ctx.token(uri, {write = true}) end
  end
  return st.targets
end

return {
  id = "protectserver/authenticate-offline",
  version = "1.0.0",
  description = "Certify HSMs with an offline HSM CA through CSR and certificate files (seed 001)",
  tags = {"trust", "identity", "split", "vendor:thales-protectserver"},
  requires = {shell = "0.1", mechanisms = {"CKM_EC_KEY_PAIR_GEN", "CKM_ECDSA"}},
  params = {
    side = {type = "enum", values = {"all", "request", "sign", "store"}, default = "all", doc = "which step runs here"},
    ca = {type = "uri", required = false, doc = "side=sign|all: the CA token (made by protectserver/establish-ca)"},
    hsms = {type = "uris", default = "", doc = "side=request|store|all: the tokens to certify (URIs, comma-separated)"},
    certs = {type = "string", default = "", doc = "the directory carried between the clients (default: HSMSH_CERT_STORE or the XDG data dir)"},
  },
  examples = {
    "# one client reaching the CA and the HSMs",
    "side=all ca='pkcs11:token=CA?pin-source=file:PINFILE' hsms='pkcs11:token=HSM?pin-source=file:PINFILE' certs=DIR --dry-run",
    "# or two clients, DIR carried between them: the HSMs' client, the CA's, the HSMs' again",
    "side=request hsms='pkcs11:token=HSM?pin-source=file:PINFILE' certs=DIR --dry-run",
    "side=sign ca='pkcs11:token=CA?pin-source=file:PINFILE' certs=DIR --dry-run",
    "side=store hsms='pkcs11:token=HSM?pin-source=file:PINFILE' certs=DIR --dry-run",
  },
  phases = {
    {
      name = "1-gen-csr",
      plan = function(ctx)
        ctx.state.certs = ctx.params.certs ~= "" and ctx.params.certs or trust.cert_store()
        if on(ctx, "request") or on(ctx, "store") then targets(ctx) end
        if on(ctx, "sign") then ctx.state.ca = ctx.token(need(ctx, "ca")) end
      end,
      apply = function(ctx)
        if not on(ctx, "request") then return false end
        for _, s in ipairs(targets(ctx)) do
          local csr, serial = trust.gen_csr(s, {yes = ctx.yes})
          local path = trust.save_csr(ctx.state.certs, serial, csr)
          ctx.emit({event = "csr", serial = serial, file = path})
          ctx.say("HSM %s: PIK made (PIK-pending); %s", serial, path)
        end
        ctx.print(ui.table(trust.list(targets(ctx)), trust.LIST_COLUMNS))
      end,
    },
    {
      name = "2-sign",
      apply = function(ctx)
        if not on(ctx, "sign") then return false end
        local st = ctx.state
        local files = trust.csr_files(st.certs)
        if #files == 0 then error(("no HSM_<serial>.csr in %s"):format(st.certs), 0) end
        trust.save_poc(st.certs, trust.export(st.ca, "poc"))
        for _, path in ipairs(files) do
          local ok, pic, serial = pcall(trust.sign_csr, st.ca, trust.read_der(path))
          if not ok then error(("%s: %s"):format(path, pic), 0) end
          local out = trust.save_pic(st.certs, serial, pic)
          ctx.emit({event = "signed", serial = serial, file = out})
          ctx.say("HSM %s: CSR signed by the POK; %s", serial, out)
        end
      end,
    },
    {
      name = "3-store",
      apply = function(ctx)
        if not on(ctx, "store") then return false end
        local dir = ctx.state.certs
        local poc = trust.read_der(dir .. "/" .. trust.POC_NAME)
        for _, s in ipairs(targets(ctx)) do
          local serial = trust.token_facts(s)
          local pic = trust.read_der(dir .. "/" .. trust.cert_name(serial))
          trust.store_poc(s, poc, {yes = ctx.yes})
          trust.store_pic(s, pic, {yes = ctx.yes})
          ctx.emit({event = "identity", serial = serial, state = "owner-signed"})
          ctx.say("HSM %s: POC and PIC stored", serial)
        end
      end,
      verify = function(ctx)
        local rows = trust.list(targets(ctx))
        ctx.print(ui.table(rows, trust.LIST_COLUMNS))
        trust.expect(rows, "owner-signed")
      end,
    },
  },
}
