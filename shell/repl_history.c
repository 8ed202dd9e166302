/* repl_history.c - the history file (0600, one entry per line, never an entry that looks like
 * it carries a secret) and the secret predicate. */
#include "repl.h"

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
int hsm_repl_is_secret_entry(const char *s)
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
void hsm_repl_history_sync(struct repl *r, int load)
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
        int secret = hsm_repl_is_secret_entry(decoded) || hsm_repl_is_blank(decoded);
        hsm_repl_wipe_free(decoded);
        if (secret) {
            dropped++;
            continue;
        }
        size_t slot = total % HISTORY_MAX;
        hsm_repl_wipe_free(ring[slot]);
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
        hsm_repl_wipe_free(e);
    }
    free(ring);
}

void hsm_repl_history_init(struct repl *r)
{
    using_history();
    stifle_history(HISTORY_MAX);
    r->history = history_path();
    if (r->history && make_parents(r->history) != 0) {
        history_disable(r, strerror(errno));
        return;
    }
    hsm_repl_history_sync(r, 1);
}

/* Keeps an accepted entry: in memory and appended to the file (one write, O_APPEND, so
 * concurrent sessions interleave whole entries). Secret or blank entries are not kept. */
void hsm_repl_history_add(struct repl *r, const char *entry)
{
    if (hsm_repl_is_blank(entry) || hsm_repl_is_secret_entry(entry))
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
    hsm_repl_wipe_free(enc);
}
