-- cmake/man.lua PAGE: puts `hsmsh help --man` (the RECIPES section, made from the recipe
-- tables) into the man page PAGE between its BEGIN and END RECIPES marks. Run by hsmsh
-- itself: cmake --build build --target man.
local path = assert(arg[1], "usage: hsmsh cmake/man.lua docs/hsmsh.1")
local f = assert(io.open(path, "rb"))
local page = f:read("a")
f:close()
local BEGIN, END = '.\\" BEGIN RECIPES (generated: cmake --build build --target man)\n', '.\\" END RECIPES\n'
local b, e = page:find(BEGIN, 1, true), page:find(END, 1, true)
assert(b and e and b < e, path .. " lacks the BEGIN/END RECIPES marks")
local new = page:sub(1, b - 1) .. BEGIN .. require("hsm.man").recipes() .. "\n" .. page:sub(e)
if new ~= page then
  f = assert(io.open(path, "wb"))
  assert(f:write(new))
  assert(f:close())
end
