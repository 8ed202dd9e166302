/* repl.c - the interactive REPL on GNU readline, with lua.c's semantics: a line is first
 * tried as "return <line>", then as a statement; an incomplete chunk continues on ">> ".
 * Results go to hsm.ui.show when that module has one (else tab-separated tostring), the
 * prompt comes from hsm.ui.prompt (else "hsmsh> "). History lives in a 0600 file and never
 * holds an entry that looks like it carries a secret. Tab completion walks tables with raw
 * access only, so completing never runs Lua code.
 *
 * readline runs in callback mode: we wait in ppoll() with our own SIGINT handler, so Ctrl-C
 * at the prompt clears the line, and while Lua runs hsm_host_pcall's handler stops it. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <readline/history.h>
#include <readline/readline.h>

#include <lauxlib.h>

#include "host.h"

#define PROMPT "hsmsh> "
#define PROMPT2 ">> "
#define CHUNKNAME "=stdin"
#define HISTORY_MAX 1000
#define INDEX_CHAIN_MAX 32 /* __index tables followed by completion */

enum { LINE_OK, LINE_EOF, LINE_INTR };

/* ------------------------------------------------------------------ small helpers */

/* Frees a string that may hold something typed at the prompt, wiping it first. */
static void wipe_free(char *s)
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

static int is_blank(const char *s)
{
    for (; *s; s++)
        if (!isspace((unsigned char)*s))
            return 0;
    return 1;
}

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

/* ------------------------------------------------------------- the secret predicate */

static int word_start(const char *s, const char *at)
{
    if (at == s)
        return 1;
    unsigned char prev = (unsigned char)at[-1];
    return !isalpha(prev) || (islower(prev) && isupper((unsigned char)at[0])); /* keyShare */
}

static int word_end(char c)
{
    return !isalpha((unsigned char)c) || isupper((unsigned char)c); /* share1, shareCount */
}

/* Whether a history entry may carry a secret: such an entry is never kept, neither in
 * the history file nor in readline's in-memory history. Case-insensitive, and broad on
 * purpose (a false positive only costs a history entry):
 *   - anywhere: "pin-value", "pin_value", "secret", "passphrase", "password", "component";
 *   - "pin" followed by optional blanks and "=" (pin=, pin =, so_pin = ...);
 *   - ':' or '.' then "login" as a whole word (s:login("1234"), s:login"1234", x.login(...));
 *   - "share" or "shares" as a whole word: letters on either side make another word
 *     ("shared", "timeshare" are innocent) unless it is a camelCase boundary ("keyShare");
 *     digits, '_' and punctuation are boundaries ("share1", "n_shares", "hsm.shares"). */
static int is_secret_entry(const char *s)
{
    static const char *const anywhere[] = {"pin-value", "pin_value", "secret", "passphrase",
                                           "password", "component", NULL};
    for (int i = 0; anywhere[i]; i++)
        if (strcasestr(s, anywhere[i]))
            return 1;
    for (const char *p = s; (p = strcasestr(p, "pin")); p += 3) {
        const char *q = p + 3;
        while (*q == ' ' || *q == '\t')
            q++;
        if (*q == '=')
            return 1;
    }
    for (const char *p = s; (p = strcasestr(p, "login")); p += 5) {
        const char *q = p;
        while (q > s && (q[-1] == ' ' || q[-1] == '\t'))
            q--;
        if (q > s && (q[-1] == ':' || q[-1] == '.') && !(isalnum((unsigned char)p[5]) || p[5] == '_'))
            return 1;
    }
    for (const char *p = s; (p = strcasestr(p, "share")); p += 5) {
        if (!word_start(s, p))
            continue;
        if (word_end(p[5]) || ((p[5] == 's' || p[5] == 'S') && word_end(p[6])))
            return 1;
    }
    return 0;
}

/* ----------------------------------------------------------------------- history */

struct repl {
    lua_State *L;
    char *history; /* the history file, or NULL when history is not saved */
    size_t history_entries; /* entries in the file as far as we know */
    char *prompt;           /* the last prompt from hsm.ui.prompt */
    int ui_error_reported;
};

/* $HSMSH_HISTORY (empty: no file), else $XDG_STATE_HOME/hsmsh/history, else
 * ~/.local/state/hsmsh/history. */
static char *history_path(void)
{
    const char *p = getenv("HSMSH_HISTORY");
    char *out = NULL;
    if (p)
        return p[0] ? strdup(p) : NULL;
    const char *state = getenv("XDG_STATE_HOME");
    if (state && state[0] == '/') /* the XDG spec ignores relative paths */
        return asprintf(&out, "%s/hsmsh/history", state) < 0 ? NULL : out;
    const char *home = getenv("HOME");
    if (home == NULL || home[0] != '/') {
        struct passwd *pw = getpwuid(getuid());
        home = pw ? pw->pw_dir : NULL;
    }
    if (home == NULL)
        return NULL;
    return asprintf(&out, "%s/.local/state/hsmsh/history", home) < 0 ? NULL : out;
}

/* mkdir -p of the file's directory, each missing directory made 0700. */
static int make_parents(const char *path)
{
    char *p = strdup(path);
    if (p == NULL)
        return -1;
    for (char *s = strchr(p + 1, '/'); s; s = strchr(s + 1, '/')) {
        *s = '\0';
        if (mkdir(p, 0700) != 0 && errno != EEXIST) {
            free(p);
            return -1;
        }
        *s = '/';
    }
    free(p);
    return 0;
}

/* Opens the history file (never through a symlink) and makes its mode 0600. Returns -1
 * with errno set, or -2 when the path is not a regular file (e.g. /dev/null: no history). */
static int history_open(const char *path, int flags)
{
    int fd = open(path, flags | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK, 0600);
    if (fd < 0)
        return -1;
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return -2;
    }
    if ((st.st_mode & 07777) != 0600 && fchmod(fd, 0600) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    return fd;
}

static void history_disable(struct repl *r, const char *what)
{
    if (what)
        fprintf(stderr, "%s: history file %s: %s (history is not saved)\n", hsm_progname, r->history,
                what);
    free(r->history);
    r->history = NULL;
}

/* The file holds one entry per line; '\\' and newlines inside an entry are escaped, so a
 * multi-line entry stays one entry. */
static char *history_encode(const char *s)
{
    char *out = malloc(2 * strlen(s) + 2), *o = out;
    if (out == NULL)
        return NULL;
    for (; *s; s++) {
        if (*s == '\\' || *s == '\n' || *s == '\r') {
            *o++ = '\\';
            *o++ = *s == '\\' ? '\\' : *s == '\n' ? 'n' : 'r';
        } else
            *o++ = *s;
    }
    *o++ = '\n';
    *o = '\0';
    return out;
}

static void history_decode(char *s)
{
    char *o = s;
    for (; *s; s++) {
        if (*s == '\\' && (s[1] == '\\' || s[1] == 'n' || s[1] == 'r')) {
            s++;
            *o++ = *s == '\\' ? '\\' : *s == 'n' ? '\n' : '\r';
        } else
            *o++ = *s;
    }
    *o = '\0';
}

/* Rewrites the file with `n` encoded lines from ring[first...] (atomically, 0600). */
static int history_rewrite(const char *path, char **ring, size_t first, size_t n)
{
    char *tmp = NULL;
    if (asprintf(&tmp, "%s.XXXXXX", path) < 0)
        return -1;
    int fd = mkstemp(tmp); /* O_EXCL, mode 0600 */
    if (fd < 0) {
        free(tmp);
        return -1;
    }
    FILE *f = fdopen(fd, "w");
    int ok = f != NULL;
    for (size_t i = 0; ok && i < n; i++)
        ok = fputs(ring[(first + i) % HISTORY_MAX], f) >= 0 && fputc('\n', f) != EOF;
    ok = ok && fflush(f) == 0; /* no fsync: history is not worth a stall at exit */
    if (f ? fclose(f) != 0 : close(fd) != 0)
        ok = 0;
    ok = ok && rename(tmp, path) == 0;
    if (!ok)
        unlink(tmp);
    free(tmp);
    return ok ? 0 : -1;
}

/* Reads the file, keeps its last HISTORY_MAX entries that carry no secret (rewriting the
 * file when it held more, or secrets), and with `load` puts them in readline's history. */
static void history_sync(struct repl *r, int load)
{
    if (r->history == NULL)
        return;
    int fd = history_open(r->history, O_RDONLY);
    if (fd == -2) {
        history_disable(r, NULL);
        return;
    }
    if (fd < 0) {
        if (errno != ENOENT)
            history_disable(r, strerror(errno));
        return;
    }
    FILE *f = fdopen(fd, "r");
    if (f == NULL) {
        close(fd);
        return;
    }
    char **ring = calloc(HISTORY_MAX, sizeof *ring);
    size_t total = 0, dropped = 0;
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    while (ring && (len = getline(&line, &cap, f)) >= 0) {
        if (len > 0 && line[len - 1] == '\n')
            line[--len] = '\0';
        char *decoded = strdup(line);
        if (decoded == NULL)
            break;
        history_decode(decoded);
        int secret = is_secret_entry(decoded) || is_blank(decoded);
        wipe_free(decoded);
        if (secret) {
            dropped++;
            continue;
        }
        size_t slot = total % HISTORY_MAX;
        wipe_free(ring[slot]);
        ring[slot] = strdup(line);
        if (ring[slot] == NULL)
            break;
        total++;
    }
    if (line) {
        explicit_bzero(line, cap);
        free(line);
    }
    fclose(f);
    if (ring == NULL)
        return;
    size_t n = total < HISTORY_MAX ? total : HISTORY_MAX;
    size_t first = total < HISTORY_MAX ? 0 : total % HISTORY_MAX;
    if ((total > HISTORY_MAX || dropped > 0) && history_rewrite(r->history, ring, first, n) != 0)
        fprintf(stderr, "%s: history file %s: cannot rewrite: %s\n", hsm_progname, r->history,
                strerror(errno));
    r->history_entries = n;
    for (size_t i = 0; i < n; i++) {
        char *e = ring[(first + i) % HISTORY_MAX];
        if (load) {
            history_decode(e);
            add_history(e);
        }
        wipe_free(e);
    }
    free(ring);
}

static void history_init(struct repl *r)
{
    using_history();
    stifle_history(HISTORY_MAX);
    r->history = history_path();
    if (r->history && make_parents(r->history) != 0) {
        history_disable(r, strerror(errno));
        return;
    }
    history_sync(r, 1);
}

/* Keeps an accepted entry: in memory and appended to the file (one write, O_APPEND, so
 * concurrent sessions interleave whole entries). Secret or blank entries are not kept. */
static void history_add(struct repl *r, const char *entry)
{
    if (is_blank(entry) || is_secret_entry(entry))
        return;
    HIST_ENTRY *last = history_length > 0 ? history_get(history_base + history_length - 1) : NULL;
    if (last && last->line && strcmp(last->line, entry) == 0)
        return;
    add_history(entry);
    if (r->history == NULL)
        return;
    char *enc = history_encode(entry);
    if (enc == NULL)
        return;
    int fd = history_open(r->history, O_WRONLY | O_APPEND | O_CREAT);
    if (fd == -2)
        history_disable(r, NULL);
    else if (fd < 0)
        history_disable(r, strerror(errno));
    else {
        size_t n = strlen(enc);
        if (write(fd, enc, n) != (ssize_t)n)
            history_disable(r, strerror(errno));
        else
            r->history_entries++;
        close(fd);
    }
    wipe_free(enc);
}

/* ---------------------------------------------------------------------- signals */

static volatile sig_atomic_t got_int, got_winch, got_tstp, got_term, in_wait;

static void on_signal(int sig)
{
    if (sig == SIGINT)
        got_int = 1;
    else if (sig == SIGWINCH)
        got_winch = 1;
    else if (sig == SIGTSTP)
        got_tstp = 1; /* installed only while read_line waits */
    else if (in_wait)
        got_term = sig; /* restore the terminal first (read_line) */
    else {
        signal(sig, SIG_DFL);
        raise(sig);
    }
}

static const int caught[] = {SIGINT, SIGWINCH, SIGTERM, SIGHUP};
#define NCAUGHT (sizeof caught / sizeof caught[0])

static void signals_install(struct sigaction *saved)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < NCAUGHT; i++)
        sigaction(caught[i], &sa, &saved[i]);
}

static void signals_restore(const struct sigaction *saved)
{
    for (size_t i = 0; i < NCAUGHT; i++)
        sigaction(caught[i], &saved[i], NULL);
}

/* ------------------------------------------------------------------ reading lines */

static char *cb_line;
static int cb_done;

static void on_line(char *line)
{
    cb_line = line;
    cb_done = 1;
    if (rl_line_buffer) /* readline's copy of what was typed */
        explicit_bzero(rl_line_buffer, strlen(rl_line_buffer));
    rl_callback_handler_remove();
}

/* Ctrl-C at a prompt: drop what was typed and leave the line. */
static void cancel_line(void)
{
    rl_callback_sigcleanup();
    rl_free_line_state();
    rl_point = rl_end;
    rl_redisplay();
    if (rl_line_buffer)
        explicit_bzero(rl_line_buffer, (size_t)rl_end);
    rl_replace_line("", 0);
    fputs("^C\n", rl_outstream ? rl_outstream : stdout);
    rl_callback_handler_remove(); /* restores the terminal */
}

/* Ctrl-Z at a prompt: give the terminal back, stop, and on `fg` take it again with the
 * line as it was. */
static void suspend_line(const char *prompt)
{
    char *saved = rl_copy_text(0, rl_end);
    int point = rl_point;
    struct sigaction dfl, mine;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    rl_callback_handler_remove(); /* restores the terminal */
    fputc('\n', stdout);
    fflush(stdout);
    sigaction(SIGTSTP, &dfl, &mine);
    raise(SIGTSTP); /* stops here until SIGCONT */
    sigaction(SIGTSTP, &mine, NULL);
    rl_callback_handler_install(prompt, on_line);
    if (saved) {
        rl_insert_text(saved);
        rl_point = point <= rl_end ? point : rl_end;
        wipe_free(saved);
    }
    rl_redisplay();
}

/* One line with readline: LINE_OK (*out malloc'd), LINE_EOF (Ctrl-D) or LINE_INTR (Ctrl-C). */
static int read_line(const char *prompt, char **out)
{
    sigset_t block, old;
    struct sigaction sa, old_tstp;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigemptyset(&block);
    for (size_t i = 0; i < NCAUGHT; i++)
        sigaddset(&block, caught[i]);
    sigaddset(&block, SIGTSTP);
    got_tstp = 0;
    sigaction(SIGTSTP, &sa, &old_tstp); /* Lua code runs with the default Ctrl-Z */
    *out = NULL;
    cb_line = NULL;
    cb_done = 0;
    got_int = 0; /* a Ctrl-C that came while Lua was finishing is not for this prompt */
    int rc = LINE_EOF;
    fflush(stdout);
    fflush(stderr);
    rl_callback_handler_install(prompt, on_line);
    while (!cb_done) {
        struct pollfd pfd = {.fd = fileno(rl_instream ? rl_instream : stdin), .events = POLLIN};
        int n = 0, err = 0;
        in_wait = 1;
        sigprocmask(SIG_BLOCK, &block, &old);
        if (!got_int && !got_winch && !got_tstp && !got_term) {
            n = ppoll(&pfd, 1, NULL, &old); /* signals are let in only while waiting */
            err = errno;
        }
        sigprocmask(SIG_SETMASK, &old, NULL);
        in_wait = 0;
        if (got_term) {
            int sig = got_term;
            rl_callback_handler_remove();
            fputc('\n', stdout);
            fflush(stdout);
            signal(sig, SIG_DFL);
            raise(sig);
        }
        if (got_tstp) {
            got_tstp = 0;
            suspend_line(prompt);
            got_winch = 1; /* the window may have changed meanwhile */
        }
        if (got_winch) {
            got_winch = 0;
            rl_resize_terminal();
        }
        if (got_int) {
            got_int = 0;
            cancel_line();
            rc = LINE_INTR;
            break;
        }
        if (n < 0 && err != EINTR) {
            rl_callback_handler_remove();
            break;
        }
        if (n > 0)
            rl_callback_read_char(); /* may call on_line */
    }
    sigaction(SIGTSTP, &old_tstp, NULL);
    *out = cb_line;
    return cb_line ? LINE_OK : rc;
}

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

static const char *get_prompt(struct repl *r)
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
static void print_results(struct repl *r, int base)
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
static void report(lua_State *L, int secret)
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
    int rc = read_line(get_prompt(r), &line);
    if (rc == LINE_EOF)
        fputc('\n', stdout); /* leave the shell's prompt on a line of its own */
    if (rc != LINE_OK)
        return rc == LINE_EOF ? -1 : 0;
    rc = text_add(&entry, line, strlen(line));
    wipe_free(line);
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
            rc = read_line(PROMPT2, &line);
            if (rc == LINE_INTR) { /* Ctrl-C drops the whole entry */
                lua_pop(L, 1);
                text_wipe(&entry);
                return 0;
            }
            if (rc == LINE_EOF) { /* report the incomplete chunk, then leave */
                fputc('\n', stdout);
                eof = 1;
                break;
            }
            lua_pop(L, 1);
            rc = text_add(&entry, "\n", 1) == 0 ? text_add(&entry, line, strlen(line)) : -1;
            wipe_free(line);
            if (rc != 0) {
                fprintf(stderr, "%s: out of memory\n", hsm_progname);
                text_wipe(&entry);
                return 0;
            }
        }
    }

    int secret = is_secret_entry(entry.s);
    history_add(r, entry.s);
    text_wipe(&entry);
    if (status == LUA_OK) {
        int base = lua_gettop(L) - 1;
        status = hsm_host_pcall(L, 0, LUA_MULTRET);
        if (status == LUA_OK)
            print_results(r, base);
    }
    if (status != LUA_OK)
        report(L, secret);
    return eof ? -1 : 0;
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

static void comp_clear(void)
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
    comp_clear();
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

static void readline_setup(lua_State *L)
{
    completion_L = L;
    rl_readline_name = "hsmsh"; /* $if hsmsh in ~/.inputrc */
    rl_catch_signals = 0;       /* read_line handles SIGINT, SIGWINCH, SIGTERM, SIGHUP */
    rl_catch_sigwinch = 0;
    rl_change_environment = 0; /* no LINES/COLUMNS in the Lua environment */
    rl_attempted_completion_function = complete;
    rl_basic_word_break_characters = word_breaks;
    rl_completer_word_break_characters = word_breaks;
    rl_add_defun("hsmsh-complete-or-indent", complete_or_indent, '\t'); /* ~/.inputrc may rebind */
}

int hsm_repl(lua_State *L)
{
    struct repl r = {.L = L};
    struct sigaction saved[NCAUGHT];
    readline_setup(L);
    history_init(&r);
    signals_install(saved);
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
        history_sync(&r, 0); /* trim the file to the last HISTORY_MAX entries */
    signals_restore(saved);
    comp_clear();
    clear_history();
    free(r.prompt);
    free(r.history);
    return 0;
}
