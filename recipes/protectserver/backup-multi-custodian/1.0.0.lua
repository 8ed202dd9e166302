-- protectserver/backup-multi-custodian 1.0.0: ProtectServer's "Backup to multiple-custodian
-- smart cards and restore" (seed 000), the standard key-splitting scheme: the archive key is
-- split into m shares (XOR), one file per custodian (shares=DIR gets share-1..m, each
-- optionally passphrase-protected); restore needs every one (shares=PATH,PATH,...).
local custody = require("hsm.custody")

local params = {m = {type = "integer", min = 2, max = 255, required = false, doc = "side=backup: number of custodians (at least 2)"}}
for k, v in pairs(custody.SHARE_PARAMS) do params[k] = v end

return custody.recipe{
  id = "protectserver/backup-multi-custodian", version = "1.0.0", scheme = "xor",
  description = "ProtectServer multiple-custodian backup: the archive key split M of M",
  params = params,
  examples = {
    "# the share files go to DIR (share-1..m, one per custodian; or shares=card:URI,... onto their cards)",
    "side=backup m=3 file=FILE shares=DIR token='pkcs11:token=TOKEN?pin-source=file:PINFILE' --dry-run",
    "# every custodian brings their share",
    "side=restore file=FILE shares=DIR/share-1,DIR/share-2,DIR/share-3 token='pkcs11:token=NEW_TOKEN?pin-source=file:PINFILE' --dry-run",
  },
}
