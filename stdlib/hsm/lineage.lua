--- hsm.lineage: key replication between two tokens of one lineage, CloudHSM CLI's
--- `key replicate` (seed 002): tokens that hold the same blue/green replication key
--- (hsm.bluegreen's prepare makes one on both) copy keys to each other under it, verified
--- as in a migration; tokens that share none are refused.
local migrate = require("hsm.migrate")
local transport = require("hsm.transport")
local ui = require("hsm.ui")

local M = {}

--- CloudHSM CLI's --filter (attr.label=X, attr.id=HEX, attr.key-type=aes|3des|rsa|ec|
--- generic-secret, attr.class=..., joined by spaces or commas) as a migration filter.
local KEY_TYPES = {aes = "AES", ["3des"] = "DES3", rsa = "RSA", ec = "EC", ["generic-secret"] = "GENERIC_SECRET"}
local CLASSES = {["secret-key"] = true, ["private-key"] = true, ["public-key"] = true}
function M.cli_filter(text)
  local out = {}
  for clause in (text or ""):gmatch("[^%s,]+") do
    local k, v = clause:match("^attr%.([%w-]+)=(.+)$")
    if not k then error(("filter %s: give attr.NAME=VALUE (attr.label=, attr.id=, attr.key-type=, attr.class=)"):format(clause), 0) end
    if k == "label" or k == "id" then out[#out + 1] = k .. "=" .. v
    elseif k == "key-type" and KEY_TYPES[v:lower()] then out[#out + 1] = "type=" .. KEY_TYPES[v:lower()]
    elseif k == "class" and CLASSES[v] then out[#out + 1] = "class=" .. v
    else error(("filter attr.%s=%s is not one this recipe knows (label, id, key-type aes|3des|rsa|ec|generic-secret, class)"):format(k, v), 0) end
  end
  if #out == 0 then error("give --filter: attr.label=LABEL (CloudHSM CLI's key replicate filter)", 0) end
  return migrate.filter(table.concat(out, ","))
end

--- The replication keys two tokens share (the same key under the same label, proven by a
--- probe wrap): the lineage CloudHSM requires of clusters made from one backup.
local function shared_lineage(src, dst)
  local function labels(s)
    local set = {}
    for _, k in ipairs(assert(s:find_all({CKA_CLASS = "CKO_SECRET_KEY"}))) do
      local l = k.label or ""
      if l:match("^hsmsh%-bluegreen%-%x+$") then set[l] = true end
    end
    return set
  end
  local a, b = labels(src), labels(dst)
  local names = {}
  for l in pairs(a) do if b[l] then names[#names + 1] = l end end
  table.sort(names)
  for _, l in ipairs(names) do
    local ok, t = pcall(transport.new, src, dst, {kind = "aes-kwp", kek = l})
    if ok then return t, l end
  end
end

--- CloudHSM CLI's `key replicate --filter ... --source-cluster-id --destination-cluster-id`:
--- the matching keys copied from src to dst under a replication key both share, verified
--- as in a migration. Refused when the two are not of one lineage.
function M.replicate(ctx, src, dst, filter)
  local t, label = shared_lineage(src, dst)
  if not t then
    error("key replicate: the source and the destination share no replication key, so they are not of one lineage "
      .. "(CloudHSM replicates only between clusters made from one backup; generic/blue-green step=prepare makes one)", 0)
  end
  local plan = migrate.plan(src, dst, {transport = t, filter = function(a) return a.CKA_LABEL ~= label and filter(a) end})
  local rows = {}
  for _, it in ipairs(plan.items) do rows[#rows + 1] = migrate.row(it) end
  if #rows == 0 then error("key replicate: no key on the source matches the filter", 0) end
  ctx.say("%s", ui.table(rows, migrate.columns))
  migrate.refuse_conflicts(plan)
  if ctx.dry_run then return end
  local sum = migrate.apply_reported(ctx, plan, "replicating", {})
  ctx.say("replicated %d, %d already there, %d blocked, %d failed (replication key %s)", sum.migrated,
    sum.skipped, sum.blocked, sum.failed, label)
  if sum.failed > 0 then ctx.status = 1 end
end

return M
