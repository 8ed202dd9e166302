--- hsm.cli: the subcommands of the command line (run, resume, recipes, lab).
--- Each returns the exit status: 0 ok, 1 error, 2 usage.
local recipe = require("hsm.recipe")

local M = {}

local function usage(msg)
  io.stderr:write("hsmsh: ", msg, "\n(see hsmsh --help)\n")
  return 2
end

--- hsmsh run RECIPE[@VERSION] [name=value ...] [--dry-run] [--yes] [--json] [--wait] [--journal FILE]
function M.run(spec, ...)
  if not spec or spec:sub(1, 1) == "-" then return usage("run needs a recipe name") end
  local opts, assigns = {}, {}
  local args = table.pack(...)
  local i = 1
  while i <= args.n do
    local a = args[i]
    if a == "--help" or a == "-h" then return M.help(spec)
    elseif a == "--dry-run" then opts.dry_run = true
    elseif a == "--yes" then opts.yes = true
    elseif a == "--json" then opts.json = true
    elseif a == "--wait" then opts.wait = true
    elseif a == "--journal" then
      i = i + 1
      if not args[i] then return usage("--journal needs a file") end
      opts.journal = args[i]
    elseif a:sub(1, 2) == "--" then return usage(("unknown option '%s' for run"):format(a))
    else
      local k, v = a:match("^([%w_%-]+)=(.*)$")
      -- (the argument is not shown: a PIN typed on its own would be echoed)
      if not k then return usage(("argument %d after the recipe is not name=value"):format(i)) end
      assigns[k] = v
    end
    i = i + 1
  end
  local rec = recipe.load(recipe.find(spec))
  opts.params = recipe.params(rec, assigns)
  return recipe.run(rec, opts)
end

--- hsmsh recipes [RECIPE]: the list, or with RECIPE its help
function M.recipes(...)
  if select("#", ...) == 1 then return M.help(...) end
  if select("#", ...) > 1 then return usage("recipes takes at most one recipe name") end
  local rows = {}
  for _, r in ipairs(recipe.list()) do
    local rec = recipe.load(r)
    rows[#rows + 1] = {id = r.id, version = r.version, description = rec.description}
  end
  print(require("hsm.ui").table(rows, {{"id", "RECIPE"}, {"version", "VERSION"},
                                       {"description", "DESCRIPTION"}}))
  return 0
end

--- hsmsh resume JOURNAL [--json] [--yes] [--wait]: runs the journal's recipe again with its
--- parameters; the recipe finds what the interrupted run did and finishes the rest.
function M.resume(path, ...)
  if not path or path:sub(1, 1) == "-" then return usage("resume needs a journal file") end
  local opts = {}
  for _, a in ipairs({...}) do
    if a == "--json" then opts.json = true
    elseif a == "--yes" then opts.yes = true
    elseif a == "--wait" then opts.wait = true
    else return usage(("unknown argument '%s' for resume (--json, --yes, --wait)"):format(a)) end
  end
  local events, start = recipe.read_journal(path)
  local rec = recipe.load(recipe.find(start.recipe .. "@" .. tostring(start.version)))
  if rec.sha256 ~= start.sha256 then
    io.stderr:write(("hsmsh: %s@%s is not the recipe that wrote %s (sha256 %s, journal %s); "
      .. "not resuming\n"):format(rec.id, rec.version, path, rec.sha256:sub(1, 12),
      tostring(start.sha256):sub(1, 12)))
    return 1
  end
  local last = events[#events]
  if last.event == "end" and last.status == 0 then
    io.stderr:write("hsmsh: that run finished; running it again to confirm (changes nothing)\n")
  end
  local assigns = {}
  for k, v in pairs(start.params or {}) do assigns[k] = tostring(v) end
  opts.params = recipe.params(rec, assigns)
  opts.journal, opts.previous = path, events
  return recipe.run(rec, opts)
end

--- hsmsh help [RECIPE]: the commands, or one recipe's help (generated from its table).
--- An unknown recipe is a usage error naming the closest one.
function M.help(spec, ...)
  local help = require("hsm.help")
  if select("#", ...) > 0 then return usage("help takes at most one recipe name") end
  if not spec then
    print(help.usage_text())
    return 0
  end
  local ok, text = pcall(help.recipe_text, spec)
  if not ok then return usage(tostring(text)) end
  print(text)
  return 0
end

--- hsmsh lab init [--dir DIR]
function M.lab(sub, ...)
  if sub ~= "init" then return usage("lab knows one command: lab init [--dir DIR]") end
  local args, dir = table.pack(...), nil
  local i = 1
  while i <= args.n do
    if args[i] == "--dir" and args[i + 1] then dir = args[i + 1]; i = i + 2
    else return usage(("unknown option '%s' for lab init"):format(args[i])) end
  end
  require("hsm.lab").init(dir)
  return 0
end

return M
