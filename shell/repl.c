/* repl.c - the interactive REPL on GNU readline, with lua.c's semantics: a line is first
 * tried as "return <line>", then as a statement; an incomplete chunk continues on ">> ".
 * Results go to hsm.ui.show when that module has one (else tab-separated tostring), the
 * prompt comes from hsm.ui.prompt (else "hsmsh> "). History lives in a 0600 file and never
 * holds an entry that looks like it carries a secret. Tab completion walks tables with raw
 * access only, so completing never runs Lua code.
 *
 * readline runs in callback mode: we wait in ppoll() with our own SIGINT handler, so Ctrl-C
 * at the prompt clears the line, and while Lua runs hsm_host_pcall's handler stops it. */
#include "repl.h"

/* ------------------------------------------------------------------ small helpers */

/* Frees a string that may hold something typed at the prompt, wiping it first. */
void hsm_repl_wipe_free(char *s)
{
    if (s) {
        explicit_bzero(s, strlen(s));
        free(s);
    }
}

/* A growable text that wipes what it drops (an entry may carry a PIN). */
struct text {
    char *s;
    size_t len, cap;
};

static int text_add(struct text *t, const char *s, size_t n)
{
    if (t->len + n + 1 > t->cap) {
        size_t cap = (t->len + n + 1) * 2;
        char *p = malloc(cap);
        if (p == NULL)
            return -1;
        if (t->s) {
            memcpy(p, t->s, t->len);
            explicit_bzero(t->s, t->cap);
            free(t->s);
        }
        t->s = p;
        t->cap = cap;
    }
    memcpy(t->s + t->len, s, n);
    t->len += n;
    t->s[t->len] = '\0';
    return 0;
}

static void text_wipe(struct text *t)
{
    if (t->s) {
        explicit_bzero(t->s, t->cap);
        free(t->s);
    }
    t->s = NULL;
    t->len = t->cap = 0;
}

int hsm_repl_is_blank(const char *s)
{
    for (; *s; s++)
        if (!isspace((unsigned char)*s))
            return 0;
    return 1;
}


/* ---------------------------------------------------------------- the REPL loop */

/* lua.c: a syntax error that ends at <eof> means "keep reading". */
static int incomplete(lua_State *L, int status)
{
    static const char mark[] = "<eof>";
    size_t len;
    const char *msg;
    if (status != LUA_ERRSYNTAX || (msg = lua_tolstring(L, -1, &len)) == NULL)
        return 0;
    return len >= sizeof mark - 1 && strcmp(msg + len - (sizeof mark - 1), mark) == 0;
}

/* Reads, compiles, runs and shows one entry. Returns 0 to go on, -1 at end of input. */
static int do_entry(struct repl *r)
{
    lua_State *L = r->L;
    struct text entry = {0};
    char *line;
    int eof = 0;
    int rc = hsm_repl_read_line(hsm_repl_get_prompt(r), &line);
    if (rc == LINE_EOF)
        fputc('\n', stdout); /* leave the shell's prompt on a line of its own */
    if (rc != LINE_OK)
        return rc == LINE_EOF ? -1 : 0;
    rc = text_add(&entry, line, strlen(line));
    hsm_repl_wipe_free(line);
    if (rc != 0) {
        fprintf(stderr, "%s: out of memory\n", hsm_progname);
        return 0;
    }

    /* First as an expression ("=expr" too, as Lua 5.3 allowed), then as a statement. */
    struct text ret = {0};
    const char *expr = entry.s[0] == '=' ? entry.s + 1 : entry.s;
    int status = LUA_ERRMEM;
    if (text_add(&ret, "return ", 7) == 0 && text_add(&ret, expr, strlen(expr)) == 0 &&
        text_add(&ret, ";", 1) == 0)
        status = luaL_loadbuffer(L, ret.s, ret.len, CHUNKNAME);
    else
        lua_pushnil(L);
    text_wipe(&ret);
    if (status != LUA_OK) {
        lua_pop(L, 1);
        for (;;) {
            status = luaL_loadbuffer(L, entry.s, entry.len, CHUNKNAME);
            if (!incomplete(L, status))
                break;
            rc = hsm_repl_read_line(PROMPT2, &line);
            if (rc == LINE_INTR) { /* Ctrl-C drops the whole entry */
                lua_pop(L, 1);
                text_wipe(&entry);
                return 0;
            }
            if (rc == LINE_EOF) { /* hsm_repl_report the incomplete chunk, then leave */
                fputc('\n', stdout);
                eof = 1;
                break;
            }
            lua_pop(L, 1);
            rc = text_add(&entry, "\n", 1) == 0 ? text_add(&entry, line, strlen(line)) : -1;
            hsm_repl_wipe_free(line);
            if (rc != 0) {
                fprintf(stderr, "%s: out of memory\n", hsm_progname);
                text_wipe(&entry);
                return 0;
            }
        }
    }

    int secret = hsm_repl_is_secret_entry(entry.s);
    hsm_repl_history_add(r, entry.s);
    text_wipe(&entry);
    if (status == LUA_OK) {
        int base = lua_gettop(L) - 1;
        status = hsm_host_pcall(L, 0, LUA_MULTRET);
        if (status == LUA_OK)
            hsm_repl_print_results(r, base);
    }
    if (status != LUA_OK)
        hsm_repl_report(L, secret);
    return eof ? -1 : 0;
}


int hsm_repl(lua_State *L)
{
    struct repl r = {.L = L};
    struct sigaction saved[NCAUGHT];
    hsm_repl_readline_setup(L);
    hsm_repl_history_init(&r);
    hsm_repl_signals_install(saved);
    printf("hsmsh %s (%s)  Tab completes, Ctrl-D exits\n", HSMSH_VERSION, LUA_RELEASE);
    for (;;) {
        int top = lua_gettop(L);
        int rc = do_entry(&r);
        lua_settop(L, top);
        if (rc < 0)
            break;
    }
    fflush(stdout);
    if (r.history_entries > HISTORY_MAX)
        hsm_repl_history_sync(&r, 0); /* trim the file to the last HISTORY_MAX entries */
    hsm_repl_signals_restore(saved);
    hsm_repl_comp_clear();
    clear_history();
    free(r.prompt);
    free(r.history);
    return 0;
}
