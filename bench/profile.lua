-- bench/profile.lua - where hsmsh's generic/migrate spends its time (profiling, not a test).
--
--   hsmsh bench/profile.lua OUT run generic/migrate from=... to=... [--json] [--journal J]
--
-- Wraps the stdlib functions the migration goes through (no source file is changed: the
-- wrappers replace table fields at run time) with wall-clock timers, runs the command as
-- `hsmsh run` would, and writes to OUT ("-" = stderr) one line per wrapped function:
--   name calls inclusive_s exclusive_s
-- Exclusive time is inclusive time minus the time of wrapped functions called from inside,
-- so the exclusive column adds up to the run's wall time (the "(rest)" line is what no
-- wrapper covers: recipe plumbing, JSON output, Lua bookkeeping in unwrapped functions).
local core = require("hsm.core")
local keys = require("hsm.keys")
local attrs = require("hsm.attrs")
local wrap = require("hsm.wrap")
local migrate = require("hsm.migrate")
local transport = require("hsm.transport")
local verify = require("hsm.verify")
local hsm = require("hsm")
local cli = require("hsm.cli")

local out_path = arg[1]
if not out_path or arg[2] ~= "run" then
  io.stderr:write("usage: hsmsh bench/profile.lua OUT run RECIPE [name=value ...] [options]\n")
  os.exit(2)
end

local now = core.now
local stats, order = {}, {}
local stack = {}   -- children time of each active call

local function wrapfn(tbl, field, name)
  local f = tbl[field]
  assert(type(f) == "function", name .. " is not a function")
  local st = stats[name]
  if not st then
    st = {calls = 0, incl = 0, excl = 0}
    stats[name] = st
    order[#order + 1] = name
  end
  tbl[field] = function(...)
    local t0 = now()
    stack[#stack + 1] = 0
    local res = table.pack(pcall(f, ...))
    local dt = now() - t0
    local children = table.remove(stack)
    st.calls, st.incl, st.excl = st.calls + 1, st.incl + dt, st.excl + dt - children
    if #stack > 0 then stack[#stack] = stack[#stack] + dt end
    if not res[1] then error(res[2], 0) end
    return table.unpack(res, 2, res.n)
  end
end

-- The recipe's steps (stdlib functions looked up through their module table at call time).
wrapfn(hsm, "token", "hsm.token (load, login)")
wrapfn(transport, "new", "transport.new (RSA pair, KAT, self-test)")
wrapfn(migrate, "plan", "migrate.plan")
wrapfn(migrate, "fingerprint", "migrate.fingerprint (source, before/after)")
wrapfn(migrate, "apply", "migrate.apply")
wrapfn(verify, "functional", "verify.functional (encrypt/decrypt check)")
wrapfn(wrap, "rsa_aes_wrap", "wrap.rsa_aes_wrap")
wrapfn(wrap, "rsa_aes_unwrap", "wrap.rsa_aes_unwrap")
wrapfn(wrap, "mechanisms", "wrap.mechanisms (mechanism list)")
wrapfn(wrap, "kat", "wrap.kat")
wrapfn(keys, "kcv", "keys.kcv")
wrapfn(keys, "fingerprint", "keys.fingerprint")
wrapfn(attrs, "capture", "attrs.capture (obj:attrs)")
wrapfn(attrs, "diff", "attrs.diff")
wrapfn(attrs, "template", "attrs.template")
wrapfn(attrs, "quirks", "attrs.quirks")
wrapfn(core, "append_synced", "core.append_synced (journal, fsync)")
wrapfn(core, "sha256", "core.sha256")
-- The PKCS#11 calls made through methods (obj.key_type-style reads are C and stay in callers).
local Session, Object = core.methods("hsm.Session"), core.methods("hsm.Object")
for _, m in ipairs({"find_all", "wrap", "unwrap", "generate_key", "encrypt", "decrypt", "random",
                    "create"}) do
  if type(Session[m]) == "function" then wrapfn(Session, m, "Session:" .. m) end
end
for _, m in ipairs({"attrs", "get", "set", "destroy"}) do
  if type(Object[m]) == "function" then wrapfn(Object, m, "Object:" .. m) end
end

local t0 = now()
local status = cli.run(table.unpack(arg, 3))
local wall = now() - t0

local f = out_path == "-" and io.stderr or assert(io.open(out_path, "w"))
local covered = 0
for _, name in ipairs(order) do
  local st = stats[name]
  if st.calls > 0 then
    f:write(("%s\t%d\t%.6f\t%.6f\n"):format(name, st.calls, st.incl, st.excl))
    covered = covered + st.excl
  end
end
f:write(("(rest)\t1\t%.6f\t%.6f\n"):format(wall - covered, wall - covered))
f:write(("(wall)\t1\t%.6f\t%.6f\n"):format(wall, wall))
if f ~= io.stderr then f:close() end
os.exit(status)
