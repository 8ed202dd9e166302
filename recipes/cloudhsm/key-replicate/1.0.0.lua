-- cloudhsm/key-replicate 1.0.0: CloudHSM CLI's key replicate (seed 002, "Replicate keys"),
-- on any PKCS#11 module:
--   key replicate --filter attr.label=example-aes-2 \
--     --source-cluster-id cluster-<hsm1> --destination-cluster-id cluster-<hsm2>
-- The keys matching the filter are copied from the source to the destination, each verified
-- as in a migration, under the replication key the two share. CloudHSM replicates only
-- between clusters made from one backup; here the two tokens must share a replication key
-- (generic/blue-green step=prepare makes one on both), else nothing is done.
local lineage = require("hsm.lineage")

return {
  id = "cloudhsm/key-replicate",
  version = "1.0.0",
  description = "CloudHSM CLI key replicate: copy the keys matching a filter between tokens of one lineage",
  tags = {"replication", "blue-green", "cloudhsm"},
  requires = {shell = "0.1", mechanisms = {"CKM_AES_KEY_WRAP_PAD"}},
  params = {
    filter = {type = "string", doc = "CloudHSM CLI's filter: attr.label=LABEL (also attr.id=, attr.key-type=, attr.class=)"},
    source = {type = "uri", doc = "the source token (the source cluster), with its PIN"},
    destination = {type = "uri", doc = "the destination token (the destination cluster), with its PIN"},
  },
  examples = {
    "# the two tokens share a replication key (generic/blue-green step=prepare made it on both)",
    "filter=attr.label=LABEL source='pkcs11:token=SOURCE?pin-source=file:PINFILE' destination='pkcs11:token=DESTINATION?pin-source=file:PINFILE' --dry-run",
  },
  phases = {
    {
      name = "replicate",
      plan = function(ctx)
        local st = ctx.state
        st.filter = lineage.cli_filter(ctx.params.filter)
        st.src = ctx.token(ctx.params.source)
        st.dst = ctx.token(ctx.params.destination, {write = true})
        if ctx.dry_run then lineage.replicate(ctx, st.src, st.dst, st.filter) end
      end,
      apply = function(ctx)
        local st = ctx.state
        lineage.replicate(ctx, st.src, st.dst, st.filter)
      end,
    },
  },
}
