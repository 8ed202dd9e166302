-- generic/blue-green 1.0.0: seed 002's blue/green migration and rollback while applications
-- keep running through libhsmsh-route.so. One step per run, in this order:
--   prepare (green built from blue, the last backup kept) -> parity -> canary weight=N (as
--   often as wanted, each with an automatic fallback) -> sync -> write-switch -> sync ->
--   cutover -> (rollback, which may end in split mode) -> decommission; status at any time.
-- Every step can be run again (after kill -9 too); the facts live in STATE and
-- STATE.bluegreen (stdlib/hsm/bluegreen.lua).
local bluegreen = require("hsm.bluegreen")

local STEPS = {"prepare", "parity", "canary", "sync", "write-switch", "cutover", "rollback",
               "decommission", "status"}

local function run_step(ctx)
  local p = ctx.params
  if p.step == "prepare" then
    return bluegreen.prepare(ctx, {state = p.state, blue = p.blue, green = p.green,
                                   source = p.source, backup = p.backup})
  end
  local cut = bluegreen.open(ctx, {state = p.state, blue = p.blue, green = p.green,
                                   pin_source = p.pin_source, read_only = p.step == "status" or p.step == "parity"})
  if p.step == "parity" then bluegreen.parity(ctx, cut)
  elseif p.step == "canary" then
    bluegreen.canary(ctx, cut, {weight = p.weight, watch = p.watch,
                                max_error_rate = bluegreen.error_rate(p.max_error_rate)})
  elseif p.step == "sync" then bluegreen.sync(ctx, cut, p.direction)
  elseif p.step == "write-switch" then bluegreen.write_switch(ctx, cut)
  elseif p.step == "cutover" then bluegreen.cutover(ctx, cut)
  elseif p.step == "rollback" then
    bluegreen.rollback(ctx, cut, {blue_capacity = p.blue_capacity, rollback_window = p.rollback_window})
  elseif p.step == "decommission" then bluegreen.decommission(ctx, cut)
  else bluegreen.status(ctx, cut, {rollback_window = p.rollback_window}) end
end

return {
  id = "generic/blue-green",
  version = "1.0.0",
  description = "Blue/green migration and rollback through libhsmsh-route.so while applications run",
  tags = {"migration", "blue-green", "cross-hsm"},
  requires = {shell = "0.1", mechanisms = {"CKM_AES_KEY_WRAP_PAD"}},
  params = {
    step = {type = "enum", values = STEPS, doc = "the step to run (see the description's order)"},
    state = {type = "string", doc = "the route state file the applications' module reads (made by prepare)"},
    blue = {type = "uri", required = false,
            doc = "blue, the token applications use today, with its PIN (prepare; later: optional, the same token)"},
    green = {type = "uri", required = false, doc = "green, the new token, with its PIN (the same PIN as blue's)"},
    pin_source = {type = "pin-source", required = false,
                  doc = "after prepare, where both sides' PIN comes from (file:PATH or prompt)"},
    source = {type = "enum", values = {"backup", "migrate"}, default = "backup",
              doc = "prepare: fill green by restoring a fresh backup of blue, or by migrating"},
    backup = {type = "string", default = "",
              doc = "prepare: the last-backup file (default STATE.backup); never replaced or deleted"},
    weight = {type = "integer", min = 0, max = 100, default = 10, doc = "canary: green's weight"},
    watch = {type = "integer", min = 1, max = 86400, default = 30, doc = "canary: seconds to watch"},
    max_error_rate = {type = "string", default = "0.01",
                      doc = "canary: how much green's error rate may exceed blue's (a fraction)"},
    direction = {type = "enum", values = {"both", "blue-to-green", "green-to-blue"}, default = "both",
                 doc = "sync: which way"},
    blue_capacity = {type = "integer", min = 1, default = 3300,
                     doc = "rollback: the most keys blue can hold (seed 002: 3,300 for hsm1)"},
    rollback_window = {type = "integer", min = 0, default = 24,
                       doc = "hours after cutover in which a rollback needs no confirmation"},
  },
  examples = {
    "# the applications load libhsmsh-route.so with HSMSH_ROUTE_STATE=STATE; the steps in order",
    "step=prepare state=STATE blue='pkcs11:token=BLUE?pin-source=file:PINFILE' green='pkcs11:token=GREEN?pin-source=file:PINFILE' --dry-run",
    "step=parity state=STATE pin_source=file:PINFILE",
    "step=canary weight=10 watch=SECONDS state=STATE pin_source=file:PINFILE",
    "step=sync state=STATE pin_source=file:PINFILE",
    "step=write-switch state=STATE pin_source=file:PINFILE",
    "step=sync state=STATE pin_source=file:PINFILE",
    "step=cutover state=STATE pin_source=file:PINFILE",
    "# only to go back (green's new keys are carried back to blue), before decommission",
    "step=rollback state=STATE pin_source=file:PINFILE",
    "step=decommission state=STATE pin_source=file:PINFILE",
    "step=status state=STATE pin_source=file:PINFILE --json",
  },
  phases = {
    {
      name = "step",
      plan = function(ctx) if ctx.dry_run then run_step(ctx) end end,
      apply = run_step,
    },
  },
}
