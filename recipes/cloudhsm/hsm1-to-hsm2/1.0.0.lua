-- cloudhsm/hsm1-to-hsm2 1.0.0: seed 002's three ways of moving an hsm1.medium cluster to
-- hsm2m.medium, step for step, on any PKCS#11 module, with the applications on
-- libhsmsh-route.so (state=) throughout:
--  option=customer-triggered  step=migrate: the route in limited-write mode (writes refused
--      and counted, as hsm1 is during AWS's migration), a backup of hsm1 restored onto hsm2,
--      parity, then hsm2 serves and takes writes; step=rollback within the window.
--  option=customer-managed    step=migrate: writes stopped (limited-write: the downtime), the
--      latest backup restored onto hsm2, clients switched to hsm2; step=monitor watches
--      hsm2's error rate; step=rollback points back at hsm1; step=decommission when satisfied
--      (the last backup is kept, as CloudHSM keeps a cluster's last backup).
--  option=high-availability   the blue/green steps of generic/blue-green (prepare, parity,
--      canary, sync, write-switch, cutover, rollback, decommission, status) with hsm1's and
--      hsm2's capacities (3,300 and 16,666 keys) and fips= for 3DES.
-- status works with every option.
local bluegreen = require("hsm.bluegreen")

local OPTION_STEPS = {
  ["customer-triggered"] = {migrate = true, rollback = true, status = true},
  ["customer-managed"] = {migrate = true, monitor = true, rollback = true, decommission = true, status = true},
  ["high-availability"] = {prepare = true, parity = true, canary = true, sync = true, ["write-switch"] = true,
                           cutover = true, rollback = true, decommission = true, status = true},
}
local STEPS = {"migrate", "monitor", "prepare", "parity", "canary", "sync", "write-switch", "cutover",
               "rollback", "decommission", "status"}

local function run_step(ctx)
  local p = ctx.params
  if not OPTION_STEPS[p.option][p.step] then
    local ok = {}
    for _, s in ipairs(STEPS) do if OPTION_STEPS[p.option][s] then ok[#ok + 1] = s end end
    error(("option=%s has no step %s (its steps: %s)"):format(p.option, p.step, table.concat(ok, ", ")), 0)
  end
  local prep = {state = p.state, blue = p.hsm1, green = p.hsm2, backup = p.backup,
                green_capacity = p.hsm2_capacity, fips = p.fips}
  local cut
  if p.step == "migrate" or p.step == "prepare" then
    prep.source = p.step == "migrate" and "backup" or p.source
    prep.mode = p.step == "migrate" and "limited-write" or nil
    cut = bluegreen.prepare(ctx, prep)
    if p.step == "prepare" or ctx.dry_run then return end
  end
  cut = cut or bluegreen.open(ctx, {state = p.state, blue = p.hsm1, green = p.hsm2, pin_source = p.pin_source,
                                     read_only = p.step == "status" or p.step == "parity" or p.step == "monitor"})
  local s = p.step
  if s == "migrate" then
    bluegreen.parity(ctx, cut)
    bluegreen.switch(ctx, cut, {weights = "0/100", write = "green", mode = "normal"}, "migrate")
    ctx.say("hsm2 serves every operation and takes every write; roll back with step=rollback within %d h", p.rollback_window)
  elseif s == "monitor" then
    local d, why = bluegreen.watch(ctx, cut, nil, p.watch, bluegreen.error_rate(p.max_error_rate))
    if why then error(("monitor: %s; consider step=rollback"):format(why), 0) end
    ctx.say("hsm2 over %d s: %d operations, %d errors", p.watch, d.green.ops, d.green.errors)
  elseif s == "parity" then bluegreen.parity(ctx, cut)
  elseif s == "canary" then
    bluegreen.canary(ctx, cut, {weight = p.weight, watch = p.watch, max_error_rate = bluegreen.error_rate(p.max_error_rate)})
  elseif s == "sync" then bluegreen.sync(ctx, cut, p.direction)
  elseif s == "write-switch" then bluegreen.write_switch(ctx, cut)
  elseif s == "cutover" then bluegreen.cutover(ctx, cut)
  elseif s == "rollback" then
    bluegreen.rollback(ctx, cut, {blue_capacity = p.hsm1_capacity, rollback_window = p.rollback_window})
  elseif s == "decommission" then bluegreen.decommission(ctx, cut)
  else bluegreen.status(ctx, cut, {rollback_window = p.rollback_window}) end
end

return {
  id = "cloudhsm/hsm1-to-hsm2",
  version = "1.0.0",
  description = "CloudHSM hsm1 to hsm2: customer triggered, customer managed, or high availability (blue/green)",
  tags = {"migration", "blue-green", "cloudhsm"},
  requires = {shell = "0.1", mechanisms = {"CKM_AES_KEY_WRAP_PAD"}},
  params = {
    option = {type = "enum", values = {"customer-triggered", "customer-managed", "high-availability"},
              doc = "which of seed 002's procedures"},
    step = {type = "enum", values = STEPS, doc = "the step (each option has its own; see the description)"},
    state = {type = "string", doc = "the route state file the applications' libhsmsh-route.so reads"},
    hsm1 = {type = "uri", required = false, doc = "hsm1, the cluster applications use today (blue), with its PIN"},
    hsm2 = {type = "uri", required = false, doc = "hsm2, the new cluster (green), with its PIN (the same PIN)"},
    pin_source = {type = "pin-source", required = false, doc = "after migrate/prepare, where the PIN comes from"},
    source = {type = "enum", values = {"backup", "migrate"}, default = "backup",
              doc = "high-availability prepare: hsm2 from a backup of hsm1, or by migration"},
    backup = {type = "string", default = "", doc = "the last-backup file (default STATE.backup), never deleted"},
    fips = {type = "boolean", default = true, doc = "hsm2 runs in FIPS mode: no 3DES (a backup holding 3DES is refused)"},
    hsm1_capacity = {type = "integer", min = 1, default = 3300, doc = "the most keys hsm1 holds (rollback)"},
    hsm2_capacity = {type = "integer", min = 1, default = 16666, doc = "the most keys hsm2 holds"},
    weight = {type = "integer", min = 0, max = 100, default = 10, doc = "canary: hsm2's weight"},
    watch = {type = "integer", min = 1, max = 86400, default = 30, doc = "canary, monitor: seconds to watch"},
    max_error_rate = {type = "string", default = "0.01", doc = "canary, monitor: how much hsm2's error rate may exceed hsm1's"},
    direction = {type = "enum", values = {"both", "blue-to-green", "green-to-blue"}, default = "both",
                 doc = "sync: which way (blue = hsm1, green = hsm2)"},
    rollback_window = {type = "integer", min = 0, default = 24,
                       doc = "hours after the switch in which a rollback needs no confirmation"},
  },
  examples = {
    "# the applications load libhsmsh-route.so with HSMSH_ROUTE_STATE=STATE; fips=false: hsm2 is not in FIPS mode (3DES keys move too)",
    "# option=customer-triggered: the migration; a rollback within rollback_window hours if needed",
    "option=customer-triggered step=migrate state=STATE hsm1='pkcs11:token=HSM1?pin-source=file:PINFILE' hsm2='pkcs11:token=HSM2?pin-source=file:PINFILE' fips=false --dry-run",
    "option=customer-triggered step=rollback state=STATE pin_source=file:PINFILE",
    "# option=customer-managed: the migration, watching hsm2, a rollback if needed, the end",
    "option=customer-managed step=migrate state=STATE hsm1='pkcs11:token=HSM1?pin-source=file:PINFILE' hsm2='pkcs11:token=HSM2?pin-source=file:PINFILE' fips=false --dry-run",
    "option=customer-managed step=monitor watch=SECONDS state=STATE pin_source=file:PINFILE",
    "option=customer-managed step=rollback state=STATE pin_source=file:PINFILE",
    "option=customer-managed step=decommission state=STATE pin_source=file:PINFILE",
    "# option=high-availability: the steps of generic/blue-green",
    "option=high-availability step=prepare state=STATE hsm1='pkcs11:token=HSM1?pin-source=file:PINFILE' hsm2='pkcs11:token=HSM2?pin-source=file:PINFILE' fips=false --dry-run",
    "option=high-availability step=parity state=STATE pin_source=file:PINFILE",
    "option=high-availability step=canary weight=10 watch=SECONDS state=STATE pin_source=file:PINFILE",
    "option=high-availability step=sync state=STATE pin_source=file:PINFILE",
    "option=high-availability step=write-switch state=STATE pin_source=file:PINFILE",
    "option=high-availability step=sync state=STATE pin_source=file:PINFILE",
    "option=high-availability step=cutover state=STATE pin_source=file:PINFILE",
    "option=high-availability step=decommission state=STATE pin_source=file:PINFILE",
    "option=high-availability step=status state=STATE pin_source=file:PINFILE --json",
  },
  phases = {
    {
      name = "step",
      plan = function(ctx) if ctx.dry_run then run_step(ctx) end end,
      apply = run_step,
    },
  },
}
