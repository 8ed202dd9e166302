--- hsm.man: the RECIPES section of hsmsh(1) in roff, made from the recipe tables as
--- `hsmsh help RECIPE` is (hsm.help), so the man page cannot drift from the recipes.
--- `hsmsh help --man` prints it; `cmake --build build --target man` puts it into
--- docs/hsmsh.1 between the BEGIN/END RECIPES marks (cmake/man.lua).
local recipe = require("hsm.recipe")
local help = require("hsm.help")

local M = {}

--- Text as roff: backslashes and minus signs escaped, no line taken for a request.
---@param s string
function M.escape(s)
  s = s:gsub("\\", "\\e"):gsub("%-", "\\-")
  return (s:gsub("\n([.'])", "\n\\&%1"):gsub("^([.'])", "\\&%1"))
end

-- One recipe: its description, every parameter, the phases and the examples.
local function section(o, rec)
  local e = M.escape
  o[#o + 1] = (".SS %s %s"):format(e(rec.id), e(rec.version))
  o[#o + 1] = e(rec.description or "")
  for _, name in ipairs(help.param_names(rec)) do
    local row = help.param_row(name, rec.params[name])
    o[#o + 1] = ".TP"
    o[#o + 1] = ("\\fB%s=\\fR (%s, %s)"):format(e(name), e(row.type), e(row.need))
    o[#o + 1] = e(row.doc ~= "" and row.doc or "(no description)")
    if row.values then o[#o + 1] = ".br\nvalues: " .. e(table.concat(row.values, ", ")) end
  end
  local phases = {}
  for _, ph in ipairs(rec.phases or {}) do phases[#phases + 1] = tostring(ph.name) end
  o[#o + 1] = ".PP"
  o[#o + 1] = "Phases: " .. e(table.concat(phases, ", ")) .. "."
  for _, ex in ipairs(help.examples(rec)) do
    o[#o + 1] = ".br"
    o[#o + 1] = ex:sub(1, 1) == "#" and e((ex:sub(2):gsub("^ ", "")))
      or ("Example: \\fB" .. e(ex) .. "\\fR")
  end
end

--- The RECIPES section, one .SS per recipe id (its newest version).
function M.recipes()
  local o = {".SH RECIPES",
    "Generated from the recipe tables (\\fBhsmsh help \\-\\-man\\fR). \\fBhsmsh help\\fR \\fIRECIPE\\fR",
    "prints the same for one recipe, with the notes of its file."}
  local seen = {}
  for _, r in ipairs(recipe.list()) do
    if not seen[r.id] then
      seen[r.id] = true
      section(o, recipe.load(recipe.find(r.id)))
    end
  end
  return table.concat(o, "\n")
end

return M
