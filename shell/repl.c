/* repl.c - placeholder */
#include "host.h"
int hsm_repl(lua_State *L) { (void)L; return 0; }
