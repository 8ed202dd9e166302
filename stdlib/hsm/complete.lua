--- hsm.complete: the words the bash completion offers, made from what the shell carries
--- (the command table of hsm.help, the recipe tables, the route keys of hsm.cli), so the
--- completion cannot drift from the binary. `hsmsh complete WORD... CURRENT` prints one
--- candidate per line, each starting with CURRENT; none means "complete file names".
local recipe = require("hsm.recipe")
local help = require("hsm.help")

local M = {}

local function flags(list)
  local out = {}
  for _, o in ipairs(list) do out[#out + 1] = o[1] end
  return out
end

local function recipe_ids(cur)
  local out, seen = {}, {}
  for _, r in ipairs(recipe.list()) do
    if cur:find("@", 1, true) then out[#out + 1] = r.id .. "@" .. r.version
    elseif not seen[r.id] then seen[r.id] = true; out[#out + 1] = r.id end
  end
  return out
end

--- The values a parameter of a recipe table takes, when they are few: enum values, yes|no.
local function param_values(p)
  if p.type == "enum" then return p.values end
  if p.type == "boolean" then return {"yes", "no"} end
  return nil
end

--- NAME= for every parameter and option not given yet; NAME=VALUE after NAME=.
local function run_words(spec, given, cur)
  local ok, rec = pcall(function() return recipe.load(recipe.find(spec)) end)
  if not ok then rec = {} end
  local params = rec.params or {}
  local name = cur:match("^([%w_%-]+)=")
  if name then
    local values = params[name] and param_values(params[name]) or {}
    local out = {}
    for _, v in ipairs(values) do out[#out + 1] = name .. "=" .. v end
    return out
  end
  local out = {}
  for _, n in ipairs(help.param_names(rec)) do
    if not given[n] then out[#out + 1] = n .. "=" end
  end
  for _, f in ipairs(flags(help.run_options)) do
    if not given[f] then out[#out + 1] = f end
  end
  return out
end

local function route_words(words, cur)
  local keys, values = require("hsm.cli").route_keys, require("hsm.cli").route_values
  if #words == 2 then
    local subs = {}
    for k in pairs(keys) do subs[#subs + 1] = k end
    table.sort(subs)
    return subs
  end
  if #words == 3 then return {} end   -- the state file
  local allowed = keys[words[2]] or {}
  local name = cur:match("^([%w_%-]+)=")
  local out = {}
  if name then
    for _, v in ipairs(allowed[name] and values[name] or {}) do out[#out + 1] = name .. "=" .. v end
    return out
  end
  for k in pairs(allowed) do out[#out + 1] = k .. "=" end
  table.sort(out)
  if words[2] == "status" then out[#out + 1] = "--json" end
  return out
end

--- The candidates for the last of words (the command line after "hsmsh", the word being
--- completed last, maybe ""), those that start with it.
---@param words string[]
function M.candidates(words)
  local i = 1
  while words[i] == "--debug" do i = i + 1 end
  words = table.move(words, i, #words, 1, {})
  local cur, cmd = words[#words] or "", words[1]
  local all
  if #words <= 1 then
    all = {}
    for _, c in ipairs(help.commands) do if c[1] ~= "" then all[#all + 1] = c[1] end end
    for _, f in ipairs(flags(help.global_options)) do all[#all + 1] = f end
  elseif words[#words - 1] == "--journal" or words[#words - 1] == "--dir" then
    all = {}
  elseif cmd == "run" then
    if #words == 2 then all = recipe_ids(cur)
    else
      local given = {}
      for j = 3, #words - 1 do
        given[words[j]:match("^([%w_%-]+)=") or words[j]] = true
      end
      all = run_words(words[2], given, cur)
    end
  elseif cmd == "help" or cmd == "recipes" then
    all = #words == 2 and recipe_ids(cur) or {}
  elseif cmd == "resume" then
    all = #words == 2 and {} or flags(help.resume_options)
  elseif cmd == "lab" then
    all = #words == 2 and {"init"} or {"--dir"}
  elseif cmd == "route" then
    all = route_words(words, cur)
  else
    all = {}
  end
  local out = {}
  for _, w in ipairs(all) do
    if w:sub(1, #cur) == cur then out[#out + 1] = w end
  end
  return out
end

return M
