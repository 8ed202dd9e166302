-- protectserver/backup-n-of-m 1.0.0: ProtectServer's "Backup to N of M custodian smart cards
-- and restore" (seed 000): the archive key is split with Shamir's scheme over GF(2^8) into m
-- share files (shares=DIR gets share-1..m), any n of which restore it (2 <= n < m, m >= 3,
-- "N cannot be equal to M"). Fewer than n shares, a duplicate, a share of another set or an
-- altered share is refused, naming it, before anything is written.
local custody = require("hsm.custody")

local params = {
  n = {type = "integer", min = 2, max = 254, required = false, doc = "side=backup: shares needed to restore (2 <= n < m)"},
  m = {type = "integer", min = 3, max = 255, required = false, doc = "side=backup: shares made (m >= 3)"},
}
for k, v in pairs(custody.SHARE_PARAMS) do params[k] = v end

return custody.recipe{
  id = "protectserver/backup-n-of-m", version = "1.0.0", scheme = "shamir",
  description = "ProtectServer N of M custodian backup: the archive key split with Shamir's scheme",
  params = params,
  examples = {
    "# the share files go to DIR (share-1..m, one per custodian; or shares=card:URI,... onto their cards)",
    "side=backup n=2 m=3 file=FILE shares=DIR token='pkcs11:token=TOKEN?pin-source=file:PINFILE' --dry-run",
    "# any n custodians bring their shares",
    "side=restore file=FILE shares=DIR/share-1,DIR/share-3 token='pkcs11:token=NEW_TOKEN?pin-source=file:PINFILE' --dry-run",
  },
}
