-- luna/sks-smk-backup 1.0.0: Luna's "Backup the SKS Master Key (SMK)" (seed 004) on any two
-- PKCS#11 tokens: only the SMK is backed up, into a new container on the backup token named
-- from the source serial and a time stamp (`partition archive backup -slot N`); an existing
-- container is never overwritten. Other objects are not cloned: SKS keys live outside as blobs.
local sks = require("hsm.sks")
local ui = require("hsm.ui")

return {
  id = "luna/sks-smk-backup",
  version = "1.0.0",
  description = "Luna SKS: back the SMK up into a new container on a backup token",
  tags = {"backup", "sks", "vendor:thales-luna"},
  requires = {shell = "0.1", mechanisms = {"CKM_AES_KEY_WRAP_PAD", "CKM_RSA_PKCS_OAEP"}},
  params = {
    token = {type = "uri", doc = "the SKS token (Crypto Officer login)"},
    backup = {type = "uri", doc = "the backup token"},
    smk = {type = "string", default = "hsmsh-smk", doc = "label of the SMK"},
  },
  phases = {
    {
      name = "backup-smk",
      plan = function(ctx)
        local st = ctx.state
        st.s, st.b = ctx.token(ctx.params.token), ctx.token(ctx.params.backup, {write = true})
        st.smk = sks.smk(st.s, ctx.params.smk, false)
        if not st.smk then error(("the token has no SMK labelled %s"):format(ctx.params.smk), 0) end
        ctx.say("You are backing up an SKS token. Only the SKS master key (SMK) will be backed up.")
      end,
      apply = function(ctx)
        local st = ctx.state
        if not ctx.yes and ui.confirm("Proceed?") ~= true then
          error("not backing up without confirmation (--yes)", 0)
        end
        local name = sks.backup_smk(st.s, st.smk, st.b)
        ctx.journal({event = "step", step = "container", name = name})
        ctx.emit({event = "container", name = name})
        ctx.say("Created container %s on the backup token; the SMK was copied and verified.", name)
      end,
    },
  },
}
