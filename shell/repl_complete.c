/* repl_complete.c - Tab completion: walks tables with raw access only (lua_rawget, lua_next,
 * __index tables), so completing never runs Lua code. */
#include "repl.h"

static const char *const keywords[] = {
    "and", "break", "do", "else", "elseif", "end", "false", "for", "function", "goto", "if",
    "in", "local", "nil", "not", "or", "repeat", "return", "then", "true", "until", "while", NULL};

/* A Lua name (identifier that is not a keyword): what can follow '.' or ':'. */
static int is_name(const char *s, size_t n)
{
    if (n == 0 || !(isalpha((unsigned char)s[0]) || s[0] == '_'))
        return 0;
    for (size_t i = 1; i < n; i++)
        if (!(isalnum((unsigned char)s[i]) || s[i] == '_'))
            return 0;
    for (int i = 0; keywords[i]; i++)
        if (strlen(keywords[i]) == n && memcmp(keywords[i], s, n) == 0)
            return 0;
    return 1;
}


/* ------------------------------------------------------------------- completion */

static lua_State *completion_L;

/* The candidates for the word being completed, full words ("string.format"). */
static struct {
    const char *text;
    size_t stem; /* length of text up to and including its last '.' or ':' */
    char **items;
    int *types;
    size_t n, cap;
} comp;

void hsm_repl_comp_clear(void)
{
    for (size_t i = 0; i < comp.n; i++)
        free(comp.items[i]);
    free(comp.items);
    free(comp.types);
    comp.items = NULL;
    comp.types = NULL;
    comp.n = comp.cap = 0;
}

static void comp_add(const char *key, size_t klen, int type)
{
    if (comp.n == comp.cap) {
        size_t cap = comp.cap ? comp.cap * 2 : 64;
        char **items = realloc(comp.items, cap * sizeof *items);
        if (items == NULL)
            return;
        comp.items = items;
        int *types = realloc(comp.types, cap * sizeof *types);
        if (types == NULL)
            return;
        comp.types = types;
        comp.cap = cap;
    }
    char *s = malloc(comp.stem + klen + 1);
    if (s == NULL)
        return;
    memcpy(s, comp.text, comp.stem);
    memcpy(s + comp.stem, key, klen);
    s[comp.stem + klen] = '\0';
    comp.items[comp.n] = s;
    comp.types[comp.n++] = type;
}

/* Replaces the value on top of the stack by its metatable's __index when that is a table
 * (or, for handles whose __index is a function, such as hsm.Object, their "__methods"
 * table) and returns 1; else leaves the stack as it was and returns 0. A function __index
 * is never called, and lua_getmetatable/lua_rawget run no metamethod. */
static int index_table(lua_State *L)
{
    if (!lua_getmetatable(L, -1))
        return 0;
    lua_pushliteral(L, "__index");
    if (lua_rawget(L, -2) != LUA_TTABLE) {
        lua_pop(L, 1);
        lua_pushliteral(L, "__methods");
        if (lua_rawget(L, -2) != LUA_TTABLE) {
            lua_pop(L, 2);
            return 0;
        }
    }
    lua_replace(L, -3);
    lua_pop(L, 1);
    return 1;
}

/* Pushes obj[key] as found without running code (raw field, then __index tables). */
static void peek_field(lua_State *L, int obj, int key)
{
    int top = lua_gettop(L);
    obj = lua_absindex(L, obj);
    key = lua_absindex(L, key);
    lua_pushvalue(L, obj);
    for (int depth = 0; depth < INDEX_CHAIN_MAX; depth++) {
        if (lua_type(L, -1) == LUA_TTABLE) {
            lua_pushvalue(L, key);
            if (lua_rawget(L, -2) != LUA_TNIL) {
                lua_replace(L, top + 1);
                lua_settop(L, top + 1);
                return;
            }
            lua_pop(L, 1);
        }
        if (!index_table(L))
            break;
    }
    lua_settop(L, top);
    lua_pushnil(L);
}

/* l_complete(): fills `comp` for comp.text. Walks with lua_rawget and lua_next only. */
static int l_complete(lua_State *L)
{
    const char *p = comp.text, *stem_end = comp.text + comp.stem;
    int methods = comp.stem > 0 && stem_end[-1] == ':';
    lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_GLOBALS);
    while (p < stem_end) { /* "a.b.c:" -> globals.a.b.c */
        const char *q = p;
        while (*q != '.' && *q != ':')
            q++;
        if ((*q == ':' && q + 1 != stem_end) || !is_name(p, (size_t)(q - p)))
            return 0;
        lua_pushlstring(L, p, (size_t)(q - p));
        peek_field(L, -2, -1);
        lua_replace(L, -3);
        lua_pop(L, 1);
        p = q + 1;
    }
    const char *partial = stem_end;
    size_t plen = strlen(partial);
    for (int depth = 0; depth < INDEX_CHAIN_MAX; depth++) {
        if (lua_type(L, -1) == LUA_TTABLE) {
            int t = lua_gettop(L);
            lua_pushnil(L);
            while (lua_next(L, t)) {
                size_t klen;
                const char *k;
                int vt = lua_type(L, -1);
                if (lua_type(L, -2) == LUA_TSTRING && (k = lua_tolstring(L, -2, &klen)) &&
                    klen >= plen && memcmp(k, partial, plen) == 0 && is_name(k, klen) &&
                    (!methods || vt == LUA_TFUNCTION))
                    comp_add(k, klen, vt);
                lua_pop(L, 1);
            }
        }
        if (!index_table(L))
            break;
    }
    return 0;
}

static char *next_match(const char *text, int state)
{
    static size_t i;
    (void)text;
    if (state == 0)
        i = 0;
    return i < comp.n ? strdup(comp.items[i++]) : NULL;
}

/* Lists candidates by their last part ("format", not "string.format"). */
static void display_matches(char **matches, int n, int max)
{
    char **shown = malloc(((size_t)n + 2) * sizeof *shown);
    if (shown == NULL)
        return;
    (void)max;
    int longest = 0;
    size_t cut = comp.stem;
    shown[0] = strlen(matches[0]) >= cut ? matches[0] + cut : matches[0];
    for (int i = 1; i <= n; i++) {
        shown[i] = strlen(matches[i]) >= cut ? matches[i] + cut : matches[i];
        int len = (int)strlen(shown[i]);
        if (len > longest)
            longest = len;
    }
    shown[n + 1] = NULL;
    rl_display_match_list(shown, n, longest);
    rl_forced_update_display();
    free(shown);
}

static char **complete(const char *text, int start, int end)
{
    (void)start;
    (void)end;
    rl_attempted_completion_over = 1; /* never fall back to file names */
    rl_completion_display_matches_hook = NULL;
    hsm_repl_comp_clear();
    comp.text = text;
    const char *sep = NULL;
    for (const char *p = text; *p; p++)
        if (*p == '.' || *p == ':')
            sep = p;
    comp.stem = sep ? (size_t)(sep - text) + 1 : 0;

    lua_State *L = completion_L;
    int top = lua_gettop(L);
    lua_pushcfunction(L, l_complete);
    if (hsm_host_pcall(L, 0, 0) != LUA_OK && hsm_host_debug)
        hsm_host_report(L);
    lua_settop(L, top);
    if (comp.stem == 0)
        for (int i = 0; keywords[i]; i++)
            if (strncmp(keywords[i], text, strlen(text)) == 0)
                comp_add(keywords[i], strlen(keywords[i]), LUA_TNONE);
    if (comp.n == 0)
        return NULL;

    int unique = 1;
    for (size_t i = 1; i < comp.n && unique; i++)
        unique = strcmp(comp.items[i], comp.items[0]) == 0;
    if (unique) /* table -> "string.", function -> "f(", object -> "s" (then '.' or ':') */
        rl_completion_append_character = comp.types[0] == LUA_TTABLE      ? '.'
                                          : comp.types[0] == LUA_TFUNCTION ? '('
                                          : comp.types[0] == LUA_TUSERDATA ? '\0'
                                                                           : ' ';
    if (comp.n < (size_t)rl_completion_query_items) /* else readline asks first */
        rl_completion_display_matches_hook = display_matches;
    return rl_completion_matches(text, next_match);
}

/* Tab: indents when only blanks precede the cursor, else completes. */
static int complete_or_indent(int count, int key)
{
    for (int i = 0; i < rl_point; i++)
        if (!isspace((unsigned char)rl_line_buffer[i])) {
            if (rl_last_func == complete_or_indent)
                rl_last_func = rl_complete; /* so a second Tab lists the candidates */
            return rl_complete(count, key);
        }
    return rl_insert_text("\t") == 1 ? 0 : 1;
}

/* '.' and ':' are parts of a word so "string.fo" and "s:cl" complete as a whole. */
static char word_breaks[] = " \t\n\"'`\\~!@#$%^&*()-=+[]{}|;,<>/?";

void hsm_repl_readline_setup(lua_State *L)
{
    completion_L = L;
    rl_readline_name = "hsmsh"; /* $if hsmsh in ~/.inputrc */
    rl_catch_signals = 0;       /* hsm_repl_read_line handles SIGINT, SIGWINCH, SIGTERM, SIGHUP */
    rl_catch_sigwinch = 0;
    rl_change_environment = 0; /* no LINES/COLUMNS in the Lua environment */
    rl_attempted_completion_function = complete;
    rl_basic_word_break_characters = word_breaks;
    rl_completer_word_break_characters = word_breaks;
    rl_add_defun("hsmsh-complete-or-indent", complete_or_indent, '\t'); /* ~/.inputrc may rebind */
}
