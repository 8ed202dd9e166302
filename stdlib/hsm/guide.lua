--- hsm.guide: the global `help` of the REPL and of scripts. `help` (or help()) prints a short
--- guide; help(x) explains x: a function of the API, a module, session or object handle (its
--- methods), or a recipe by name. Made from what hsmsh carries, so it cannot drift: the doc
--- comments and ---@param annotations of stdlib/hsm/init.lua, the method tables of the
--- handles, and the recipe tables.
local core = require("hsm.core")

local M = {}

local CLASSES = {["hsm.Module"] = "Module", ["hsm.Session"] = "Session", ["hsm.Object"] = "Object"}

-- The documented functions of init.lua: {where = "hsm"|"Session"|..., name, args, doc, params}.
local documented
local function entries()
  if documented then return documented end
  documented = {}
  local text = require("hsm.embedded").read("stdlib/hsm/init.lua") or ""
  local doc, params = {}, {}
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    local pname, ptype, pdoc = line:match("^%-%-%-@param%s+(%S+)%s+(%S+)%s*(.*)$")
    local where, name, args = line:match("^function%s+([%w_]+)[.:]([%w_]+)%s*%(([^)]*)%)")
    if pname then params[#params + 1] = {name = pname, type = ptype, doc = pdoc}
    elseif line:match("^%-%-%-%s%s") and #params > 0 then   -- a @param's continuation
      params[#params].doc = params[#params].doc .. " " .. line:gsub("^%-%-%-%s*", "")
    elseif line:match("^%-%-%-") and not line:match("^%-%-%-@") then
      doc[#doc + 1] = line:gsub("^%-%-%-%s?", "")
    elseif line:match("^%-%-%-@") then   -- other annotations: kept out of the text
    elseif where then
      documented[#documented + 1] = {where = where == "M" and "hsm" or where, name = name,
                                     args = args, doc = table.concat(doc, " "), params = params}
      doc, params = {}, {}
    elseif not line:match("^%s*%-%-") then
      doc, params = {}, {}
    end
  end
  return documented
end

local function signature(e)
  return e.where == "hsm" and ("hsm.%s(%s)"):format(e.name, e.args) or (":%s(%s)"):format(e.name, e.args)
end

local function first_sentence(doc)
  local s = doc:match("^(.-%.)%s") or doc
  if #s <= 72 then return s end
  return s:sub(1, 72):gsub("%s+%S*$", "") .. " ..."
end

local function describe(e)
  local out = {signature(e)}
  if e.doc ~= "" then out[#out + 1] = "  " .. e.doc end
  for _, p in ipairs(e.params) do
    out[#out + 1] = ("  %s (%s)%s"):format(p.name, p.type, p.doc ~= "" and ": " .. p.doc or "")
  end
  return table.concat(out, "\n")
end

--- The methods of a handle class ("Session" ...), documented ones with their signature.
local function methods(class)
  local full = ("hsm.%s"):format(class)
  local by_name = {}
  for _, e in ipairs(entries()) do if e.where == class then by_name[e.name] = e end end
  local names = {}
  for name in pairs(core.methods(full)) do
    if not name:match("^__") then names[#names + 1] = name end
  end
  table.sort(names)
  local out = {("%s methods (call as handle:name(...)):"):format(class)}
  for _, name in ipairs(names) do
    local e = by_name[name]
    out[#out + 1] = e and ("  %-40s %s"):format(signature(e), first_sentence(e.doc)) or ("  :" .. name .. "(...)")
  end
  return table.concat(out, "\n")
end

--- The guide `help` prints.
function M.text()
  local out = {
    "hsmsh: the global `hsm` is the API; help(x) explains x (a function, a handle, a recipe name).",
    "",
    "  s = hsm.token('pkcs11:token=blue?pin-value=1234')   -- a session on a token, logged in",
    "  s:objects()                                         -- its objects, as a table",
    "  m = s:module(); m:slots(); m:mechanisms(s:slot())   -- the module, its slots and mechanisms",
    "",
    "The API:",
  }
  for _, e in ipairs(entries()) do
    if e.where == "hsm" then out[#out + 1] = ("  %-40s %s"):format(signature(e), first_sentence(e.doc)) end
  end
  out[#out + 1] = ""
  out[#out + 1] = "Handles: help(m), help(s), help(o) list a module's, a session's or an object's methods."
  out[#out + 1] = "Recipes: `hsmsh recipes` lists them; help('generic/migrate') explains one."
  return table.concat(out, "\n")
end

--- help(x) as text.
function M.about(x)
  if x == nil or x == require("hsm") then return M.text() end
  if type(x) == "function" then
    for _, e in ipairs(entries()) do
      if e.where == "hsm" and require("hsm")[e.name] == x then return describe(e) end
    end
    for class in pairs(CLASSES) do
      for name, f in pairs(core.methods(class)) do
        if f == x then
          for _, e in ipairs(entries()) do
            if e.where == CLASSES[class] and e.name == name then return describe(e) end
          end
          return (":%s(...), a method of %s (no documentation)"):format(name, CLASSES[class])
        end
      end
    end
    return "a function that is not part of the hsm API"
  end
  local mt = getmetatable(x)
  local class = type(mt) == "table" and CLASSES[rawget(mt, "__name")]
  if class then return methods(class) end
  if type(x) == "string" then
    for _, e in ipairs(entries()) do
      if e.where == "hsm" and (e.name == x or "hsm." .. e.name == x) then return describe(e) end
    end
    local ok, text = pcall(require("hsm.help").recipe_text, x)
    if ok and text then return text end
    return ("no help for '%s': not a function of the API nor a recipe (%s)"):format(x, tostring(text))
  end
  return ("no help for a %s; try help() for the guide"):format(type(x))
end

--- The global: a callable that shows the guide when printed, so that `help` alone works.
M.help = setmetatable({}, {
  __call = function(_, x) print(M.about(x)) end,
  __tostring = function() return M.text() end,
  __name = "help",
})

return M
