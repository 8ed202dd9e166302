/* repl_print.c - what the REPL shows: the prompt and results through hsm.ui (else lua.c's
 * print), and errors with the source of secret entries withheld. */
#include "repl.h"

/* ----------------------------------------------------------------- hsm.ui hooks */

/* l_ui_hook(name): require("hsm.ui")[name] if it is a function, else nil. A missing
 * module is not an error; a module that fails to load is. */
static int l_ui_hook(lua_State *L)
{
    const char *name = lua_touserdata(L, 1);
    if (lua_getglobal(L, "require") != LUA_TFUNCTION)
        return 0;
    lua_pushliteral(L, "hsm.ui");
    if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
        const char *msg = lua_tostring(L, -1);
        if (msg && strstr(msg, "module 'hsm.ui' not found"))
            return 0;
        return lua_error(L);
    }
    if (!lua_istable(L, -1))
        return 0;
    lua_getfield(L, -1, name);
    return lua_isfunction(L, -1) ? 1 : 0;
}

/* Errors of the hooks themselves: the first is shown, the rest only with --debug. */
static void ui_error(struct repl *r)
{
    if (!r->ui_error_reported || hsm_host_debug)
        hsm_host_report(r->L);
    else
        lua_pop(r->L, 1);
    r->ui_error_reported = 1;
}

/* Pushes hsm.ui[name] and returns 1 when it is a function; pushes nothing otherwise. */
static int ui_hook(struct repl *r, const char *name)
{
    lua_State *L = r->L;
    lua_pushcfunction(L, l_ui_hook);
    lua_pushlightuserdata(L, (void *)name);
    if (hsm_host_pcall(L, 1, 1) != LUA_OK) {
        ui_error(r);
        return 0;
    }
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        return 0;
    }
    return 1;
}

const char *hsm_repl_get_prompt(struct repl *r)
{
    lua_State *L = r->L;
    free(r->prompt);
    r->prompt = NULL;
    if (ui_hook(r, "prompt")) {
        if (hsm_host_pcall(L, 0, 1) != LUA_OK)
            ui_error(r);
        else {
            if (lua_type(L, -1) == LUA_TSTRING)
                r->prompt = strdup(lua_tostring(L, -1));
            lua_pop(L, 1);
        }
    }
    return r->prompt ? r->prompt : PROMPT;
}

/* l_print(...): lua.c's print of results: tostring of each, tab-separated. */
static int l_print(lua_State *L)
{
    int n = lua_gettop(L);
    for (int i = 1; i <= n; i++) {
        size_t len;
        const char *s = luaL_tolstring(L, i, &len);
        if (i > 1)
            fputc('\t', stdout);
        fwrite(s, 1, len, stdout);
        lua_pop(L, 1);
    }
    fputc('\n', stdout);
    fflush(stdout);
    return 0;
}

/* Shows the values above `base`: hsm.ui.show(...) when there is one, else l_print. */
void hsm_repl_print_results(struct repl *r, int base)
{
    lua_State *L = r->L;
    int n = lua_gettop(L) - base;
    if (n <= 0)
        return;
    if (!lua_checkstack(L, n + LUA_MINSTACK)) {
        fprintf(stderr, "%s: too many results to print\n", hsm_progname);
        return;
    }
    if (ui_hook(r, "show")) {
        for (int i = 1; i <= n; i++)
            lua_pushvalue(L, base + i);
        if (hsm_host_pcall(L, n, 0) == LUA_OK)
            return;
        hsm_host_report(L); /* then show them plainly */
    }
    lua_pushcfunction(L, l_print);
    lua_insert(L, base + 1);
    if (hsm_host_pcall(L, n, 0) != LUA_OK)
        hsm_host_report(L);
}

/* Reports the error on top of the stack. For an entry that looks like it carries a secret,
 * the parts of Lua's messages that quote the source ("near '...'", "(constant '...')")
 * are withheld. */
void hsm_repl_report(lua_State *L, int secret)
{
    const char *msg = lua_tostring(L, -1);
    if (!secret || msg == NULL) {
        hsm_host_report(L);
        return;
    }
    fprintf(stderr, "%s: ", hsm_progname);
    for (;;) {
        const char *near = strstr(msg, " near '"), *cons = strstr(msg, "(constant '");
        const char *hit = near && (!cons || near < cons) ? near : cons;
        if (hit == NULL)
            break;
        const char *quote = strchr(hit, '\'') + 1;
        fwrite(msg, 1, (size_t)(quote - msg), stderr);
        fputs("<withheld>'", stderr);
        const char *end = hit == near ? NULL : strstr(quote, "')");
        if (end == NULL) {
            end = strchr(quote, '\n');
            if (end == NULL)
                end = quote + strlen(quote);
            msg = end;
        } else
            msg = end + 1;
    }
    fprintf(stderr, "%s\n", msg);
    fflush(stderr);
    lua_pop(L, 1);
}
