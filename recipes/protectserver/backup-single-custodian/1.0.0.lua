-- protectserver/backup-single-custodian 1.0.0: ProtectServer's "Backup to single-custodian
-- smart card and restore" (seed 000). The custodian's wrapping key is made from components
-- (ctkmu c); the objects go to the archive file (the smart card) under an archive key that is
-- generated in the HSM and travels inside the archive wrapped under the custodian's key
-- (ctkmu x -w KEY -c READER). Restore: the same components, then ctkmu i.
local custody = require("hsm.custody")

return custody.recipe{
  id = "protectserver/backup-single-custodian", version = "1.0.0", scheme = "single",
  description = "ProtectServer single-custodian backup: archive key under the custodian's wrapping key",
  params = custody.COMPONENT_PARAMS,
  examples = {
    "# client 1: each custodian keeps a component, an AES key's length in hex (64 digits: openssl rand -hex 32)",
    "side=backup components=file:COMPONENT_1,file:COMPONENT_2 file=FILE token='pkcs11:token=TOKEN?pin-source=file:PINFILE' --dry-run",
    "# client 2: the same components, the file carried over",
    "side=restore components=file:COMPONENT_1,file:COMPONENT_2 file=FILE token='pkcs11:token=NEW_TOKEN?pin-source=file:PINFILE' --dry-run",
  },
}
