-- luna/sks-smk-restore 1.0.0: Luna's "Restore an SKS Master Key (SMK)" (seed 004): the SMK of
-- a container on the backup token is restored onto the SKS token (`partition archive restore
-- -slot N -partition NAME`). CAUTION as the seed says: an SMK already on the token is
-- overwritten (destroyed) — only after explicit confirmation; a container that holds other
-- objects is restored with a warning (only the SMK is restored).
local sks = require("hsm.sks")
local ui = require("hsm.ui")

return {
  id = "luna/sks-smk-restore",
  version = "1.0.0",
  description = "Luna SKS: restore the SMK from a backup container (overwrites only if confirmed)",
  tags = {"restore", "sks", "vendor:thales-luna"},
  requires = {shell = "0.1", mechanisms = {"CKM_AES_KEY_WRAP_PAD", "CKM_RSA_PKCS_OAEP"}},
  params = {
    token = {type = "uri", doc = "the SKS token to restore onto"},
    backup = {type = "uri", doc = "the backup token"},
    container = {type = "string", doc = "the container name (SERIAL_YYYY:MM:DD-HH:MM:SS)"},
    smk = {type = "string", default = "hsmsh-smk", doc = "label of the SMK on the token"},
  },
  phases = {
    {
      name = "restore-smk",
      plan = function(ctx)
        local st = ctx.state
        st.s, st.b = ctx.token(ctx.params.token, {write = true}), ctx.token(ctx.params.backup)
        local _, others = sks.container(st.b, ctx.params.container)
        ctx.say("You are restoring an SKS token. Only the SKS master key (SMK) will be restored.")
        if sks.smk(st.s, ctx.params.smk, false) then ctx.say("CAUTION: the existing SMK will be overwritten.") end
        if others > 0 then ctx.say("The container holds %d other object(s).", others) end
      end,
      apply = function(ctx)
        local st, p = ctx.state, ctx.params
        local function confirm(q) return ctx.yes or ui.confirm(q) == true end
        sks.restore_smk(st.b, p.container, st.s, p.smk, confirm, function(w) ctx.say("WARNING: %s", w) end)
        ctx.emit({event = "restored", container = p.container})
        ctx.say("The SMK was restored from %s and verified.", p.container)
      end,
    },
  },
}
