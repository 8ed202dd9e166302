/* host.c - creates the Lua state: standard libraries, the C core (hsm.core), and every
 * embedded stdlib module in package.preload; protected calls with one-line errors. */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include <lauxlib.h>
#include <lualib.h>

#include "embedded.h"
#include "host.h"

int luaopen_hsm_core(lua_State *L);   /* lua/l_hsm.c */

int hsm_host_debug = 0;
const char *hsm_progname = "hsmsh";

/* ---------------------------------------------------------------- Ctrl-C (as lua.c) */
static lua_State *running_state;
static volatile sig_atomic_t interrupt_armed; /* hook set, not fired yet */

static void stop_hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    interrupt_armed = 0;
    lua_sethook(L, NULL, 0, 0);
    luaL_error(L, "interrupted");
}

static void on_sigint(int sig)
{
    (void)sig;
    /* Only arms a hook: Lua stops at its next instruction; a C_ call in progress finishes. */
    if (running_state) {
        interrupt_armed = 1;
        lua_sethook(running_state, stop_hook, LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT, 1);
    }
}

static int msghandler(lua_State *L)
{
    const char *msg = lua_tostring(L, 1);
    if (msg == NULL) {
        if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
            return 1;
        msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    }
    if (hsm_host_debug)
        luaL_traceback(L, L, msg, 1);
    else
        lua_pushstring(L, msg);
    return 1;
}

int hsm_host_pcall(lua_State *L, int nargs, int nresults)
{
    int base = lua_gettop(L) - nargs;
    lua_pushcfunction(L, msghandler);
    lua_insert(L, base);
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    running_state = L;
    sigaction(SIGINT, &sa, &old);
    int status = lua_pcall(L, nargs, nresults, base);
    sigaction(SIGINT, &old, NULL);
    running_state = NULL;
    if (interrupt_armed) { /* Ctrl-C came as the call ended: it must not stop the next one */
        interrupt_armed = 0;
        lua_sethook(L, NULL, 0, 0);
    }
    lua_remove(L, base);
    return status;
}

void hsm_host_report(lua_State *L)
{
    const char *msg = lua_tostring(L, -1);
    fprintf(stderr, "%s: %s\n", hsm_progname, msg ? msg : "(error object is not a string)");
    fflush(stderr);
    lua_pop(L, 1);
}

/* ------------------------------------------------------------ embedded stdlib */
/* "stdlib/hsm/ui.lua" -> "hsm.ui"; "stdlib/hsm/init.lua" -> "hsm". */
static int module_name(const char *path, char *out, size_t outlen)
{
    const char *p = path + strlen("stdlib/");
    size_t n = strlen(p);
    if (n < 4 || n - 4 >= outlen || strcmp(p + n - 4, ".lua") != 0)
        return -1;
    memcpy(out, p, n - 4);
    out[n - 4] = '\0';
    for (char *c = out; *c; c++)
        if (*c == '/')
            *c = '.';
    n = strlen(out);
    if (n > 5 && strcmp(out + n - 5, ".init") == 0)
        out[n - 5] = '\0';
    return 0;
}

static int load_embedded(lua_State *L)
{
    const struct hsm_embedded *f = lua_touserdata(L, lua_upvalueindex(1));
    char chunkname[256];
    snprintf(chunkname, sizeof chunkname, "@%s", f->path);
    if (luaL_loadbuffer(L, (const char *)f->data, f->len, chunkname) != LUA_OK)
        return lua_error(L);
    lua_pushvalue(L, 1);
    lua_call(L, 1, 1);
    return 1;
}

/* hsm.embedded: list() -> paths of every embedded file; read(path) -> its text or nil. */
static int l_embedded_list(lua_State *L)
{
    lua_newtable(L);
    for (int i = 0; hsm_embedded_files[i].path; i++) {
        lua_pushstring(L, hsm_embedded_files[i].path);
        lua_rawseti(L, -2, i + 1);
    }
    return 1;
}

static int l_embedded_read(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    for (int i = 0; hsm_embedded_files[i].path; i++)
        if (strcmp(hsm_embedded_files[i].path, path) == 0) {
            lua_pushlstring(L, (const char *)hsm_embedded_files[i].data, hsm_embedded_files[i].len);
            return 1;
        }
    lua_pushnil(L);
    return 1;
}

static int luaopen_hsm_embedded(lua_State *L)
{
    static const luaL_Reg fns[] = {{"list", l_embedded_list}, {"read", l_embedded_read}, {NULL, NULL}};
    luaL_newlib(L, fns);
    return 1;
}

lua_State *hsm_host_new(void)
{
    lua_State *L = luaL_newstate();
    if (L == NULL)
        return NULL;
    luaL_openlibs(L);
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
    lua_pushcfunction(L, luaopen_hsm_core);
    lua_setfield(L, -2, "hsm.core");
    lua_pushcfunction(L, luaopen_hsm_embedded);
    lua_setfield(L, -2, "hsm.embedded");
    for (int i = 0; hsm_embedded_files[i].path; i++) {
        char name[128];
        if (strncmp(hsm_embedded_files[i].path, "stdlib/", 7) != 0 ||
            module_name(hsm_embedded_files[i].path, name, sizeof name) != 0)
            continue;
        lua_pushlightuserdata(L, (void *)&hsm_embedded_files[i]);
        lua_pushcclosure(L, load_embedded, 1);
        lua_setfield(L, -2, name);
    }
    lua_pop(L, 1);
    lua_pushboolean(L, hsm_host_debug);
    lua_setglobal(L, "HSMSH_DEBUG");
    /* The REPL and scripts find the API as the global "hsm" (loading it opens no module). */
    lua_getglobal(L, "require");
    lua_pushliteral(L, "hsm");
    if (lua_pcall(L, 1, 1, 0) == LUA_OK)
        lua_setglobal(L, "hsm");
    else
        hsm_host_report(L);
    /* ... and `help` (hsm.guide): help alone prints the guide, help(x) explains x. */
    lua_getglobal(L, "require");
    lua_pushliteral(L, "hsm.guide");
    if (lua_pcall(L, 1, 1, 0) == LUA_OK) {
        lua_getfield(L, -1, "help");
        lua_setglobal(L, "help");
        lua_pop(L, 1);
    } else
        hsm_host_report(L);
    return L;
}

int hsm_host_cli(lua_State *L, const char *fn, int argc, char **argv)
{
    lua_getglobal(L, "require");
    lua_pushliteral(L, "hsm.cli");
    if (hsm_host_pcall(L, 1, 1) != LUA_OK) {
        hsm_host_report(L);
        return 1;
    }
    lua_getfield(L, -1, fn);
    lua_remove(L, -2);
    for (int i = 0; i < argc; i++)
        lua_pushstring(L, argv[i]);
    if (hsm_host_pcall(L, argc, 1) != LUA_OK) {
        hsm_host_report(L);
        return 1;
    }
    int status = lua_isinteger(L, -1) ? (int)lua_tointeger(L, -1) : 0;
    lua_pop(L, 1);
    return status;
}
