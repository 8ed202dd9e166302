-- protectserver/backup-file 1.0.0: Thales ProtectServer's "Backup to file and restore"
-- (seed 000), on any PKCS#11 module:
--   backup:  ctkmu c -t AES -n AES_WRAP -k 2 -z256   the wrapping key from custodian components
--            ctkmu x -s SLOT -w AES_WRAP FILE [-4]    every object exported to a file
--   restore: ctkmu c ... (the same components)        the same wrapping key on the new token
--            ctkmu i -s SLOT -w AES_WRAP FILE         every object imported
-- Each half runs on its own client machine; only the file and the custodians travel. The
-- wrapping key is made for the run as a session object on each token (nothing is left behind)
-- unless keep_key=true. Objects that cannot be exported (CKA_EXTRACTABLE=false) are listed
-- with the pointer to token replication.
local custody = require("hsm.custody")

return custody.recipe{
  id = "protectserver/backup-file", version = "1.0.0", scheme = "components",
  description = "ProtectServer backup to file and restore, wrapping key from custodian components",
  params = custody.COMPONENT_PARAMS,
  examples = {
    "# client 1: each custodian keeps a component, an AES key's length in hex (64 digits: openssl rand -hex 32)",
    "side=backup components=file:COMPONENT_1,file:COMPONENT_2 file=FILE token='pkcs11:token=TOKEN?pin-source=file:PINFILE' --dry-run",
    "# client 2: the same components, the file carried over",
    "side=restore components=file:COMPONENT_1,file:COMPONENT_2 file=FILE token='pkcs11:token=NEW_TOKEN?pin-source=file:PINFILE' --dry-run",
  },
}
