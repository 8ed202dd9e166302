-- generic/inventory 1.0.0: every object of a token with its class, type, size, label, ID,
-- flags and KCV or public-key fingerprint. Read-only.
local ui = require("hsm.ui")

return {
  id = "generic/inventory",
  version = "1.0.0",
  description = "List every object of a token with its flags and KCV or fingerprint",
  tags = {"read-only"},
  requires = {shell = "0.1"},
  params = {
    token = {type = "uri", doc = "the token, e.g. pkcs11:token=blue?pin-value=1234"},
  },
  phases = {
    {
      name = "inventory",
      plan = function(ctx)
        local s = ctx.token(ctx.params.token)
        local objects = ctx.must(s:objects())
        local rows = ui.object_rows(objects)
        for _, r in ipairs(rows) do
          r.event, r.check = "object", nil
          r._order = {"event", "class", "key_type", "bits", "label", "id"}
          ctx.emit(r)
          r.check = r.kcv or (r.fingerprint and r.fingerprint:sub(1, 16)) or ""
        end
        ctx.print(ui.table(rows, ui.object_columns))
        ctx.emit({event = "summary", objects = #rows, _order = {"event"}})
        ctx.say("%d objects", #rows)
      end,
    },
  },
}
