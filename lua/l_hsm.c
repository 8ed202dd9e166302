/* l_hsm.c - placeholder while the bindings are written */
#include <lauxlib.h>
int luaopen_hsm_core(lua_State *L);
int luaopen_hsm_core(lua_State *L) { lua_newtable(L); return 1; }
