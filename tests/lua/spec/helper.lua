-- Shared by the specs: fresh tokens on the run's SoftHSM2 (SOFTHSM2_CONF set by run.sh).
local core = require("hsm.core")
local lab = require("hsm.lab")

local H = {}
H.pin = lab.user_pin

--- A new token with a unique label; returns its URI (with pin-value) and label.
local n = 0
function H.new_token(prefix)
  n = n + 1
  local label = ("%s-%d-%d"):format(prefix or "t", os.time() % 100000, n)
  local m = assert(core.load(nil))
  lab.ensure_token(m, label)
  return ("pkcs11:token=%s?pin-value=%s"):format(label, H.pin), label
end

return H
