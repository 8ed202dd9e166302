/* batch.c - non-interactive Lua: "-e CHUNK", "FILE.lua ARGS" and "-" (stdin), with
 * lua.c's arg table. Errors are one line on stderr (a traceback with --debug), exit 1. */
#include <string.h>

#include <lauxlib.h>

#include "host.h"

int hsm_batch_chunk(lua_State *L, const char *chunk)
{
    if (luaL_loadbuffer(L, chunk, strlen(chunk), "=(command line)") != LUA_OK ||
        hsm_host_pcall(L, 0, 0) != LUA_OK) {
        hsm_host_report(L);
        return 1;
    }
    return 0;
}

/* arg[0] = script, arg[1..] = its arguments, arg[-1] ... = what came before (as lua.c). */
static void set_arg_table(lua_State *L, int argc, char **argv, int script_index)
{
    lua_createtable(L, argc - script_index, script_index + 1);
    for (int i = 0; i < argc; i++) {
        lua_pushstring(L, argv[i]);
        lua_rawseti(L, -2, i - script_index);
    }
    lua_setglobal(L, "arg");
}

int hsm_batch_file(lua_State *L, const char *path, int argc, char **argv, int script_index)
{
    set_arg_table(L, argc, argv, script_index < argc ? script_index : argc - 1);
    if (luaL_loadfile(L, path) != LUA_OK) {
        hsm_host_report(L);
        return 1;
    }
    int nargs = 0;
    for (int i = script_index + 1; i < argc; i++, nargs++)
        lua_pushstring(L, argv[i]);
    if (hsm_host_pcall(L, nargs, 0) != LUA_OK) {
        hsm_host_report(L);
        return 1;
    }
    return 0;
}
