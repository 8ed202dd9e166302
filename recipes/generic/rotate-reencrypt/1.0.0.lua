-- generic/rotate-reencrypt 1.0.0: for a key that cannot leave its HSM (non-extractable), move
-- the data instead of the key (CloudHSM's advice for hsm1 -> hsm2: "generate a new key on the
-- hsm2 cluster, use the old key from hsm1 to decrypt the data, and then use the new key in
-- hsm2 to re-encrypt the data"). A new AES key with the old key's attributes is generated on
-- the destination; every sealed file (hsm.sealed) of a directory is decrypted with the old
-- key and re-encrypted with the new one chunk by chunk into another directory, journaled per
-- file and verified. The originals are never modified or deleted. Re-running, or
-- `hsmsh resume JOURNAL` after an interruption, finishes the work with no second key.
local reencrypt = require("hsm.reencrypt")

return {
  id = "generic/rotate-reencrypt",
  version = "1.0.0",
  description = "Re-encrypt sealed files from a (non-extractable) key to a new key with the same attributes",
  tags = {"rotation", "cross-hsm", "data"},
  requires = {shell = "0.1", mechanisms = {"CKM_AES_GCM", "CKM_AES_KEY_GEN"}},
  params = {
    from = {type = "uri", doc = "the token holding the old key, e.g. pkcs11:token=blue?pin-value=1234"},
    to = {type = "uri", doc = "the destination token (may be the same token)"},
    key = {type = "string", doc = "label of the old key (exactly one secret AES key)"},
    files = {type = "string", doc = "directory of sealed files (all its regular files)"},
    out = {type = "string", doc = "output directory (made, mode 0700, when missing; must differ from files)"},
    label = {type = "string", required = false,
             doc = "label of the new key (default: the old key's label)"},
  },
  phases = {
    {name = "reencrypt", plan = reencrypt.plan, apply = reencrypt.apply, verify = reencrypt.verify,
     rollback = reencrypt.rollback},
  },
}
