/* state.c - the operator's state file (docs/route-state.md): parsed into an immutable
 * snapshot, noticed by a stat at most every 100 ms at an operation's start, swapped in only
 * when fully valid; a bad new state is logged and the last good one kept. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "route.h"

void route_state_free(route_state *s)
{
    while (s) {
        route_state *older = s->older;
        for (int i = 0; i < ROUTE_SIDES; i++) {
            free(s->uri[i]);
            free(s->module_path[i]);
            free(s->init_reserved[i]);
            free(s->token[i]);
            free(s->serial[i]);
        }
        free(s);
        s = older;
    }
}

static int fail(char *why, size_t len, const char *fmt, const char *a, const char *b)
{
    snprintf(why, len, fmt, a, b);
    return -1;
}

static int parse_side(route_state *s, int side, const char *val, char *why, size_t len)
{
    hsm_uri u;
    hsm_err err;
    const char *name = route_side_name[side];
    if (hsm_uri_parse(val, &u, &err) != 0)
        return fail(why, len, "%s: bad PKCS#11 URI: %s", name, err.msg);
    int rc = 0;
    if (u.pin_value || u.pin_source)
        rc = fail(why, len, "%s: the URI carries a PIN (%s); the state holds none, the "
                  "application logs in", name, u.pin_value ? "pin-value" : "pin-source");
    else if (!u.token && !u.serial)
        rc = fail(why, len, "%s: the URI names no token (give token= or serial=)%s", name, "");
    else {
        s->uri[side] = strdup(val);
        const char *m = u.module_path ? u.module_path : u.module_name;
        s->module_path[side] = m ? strdup(m) : NULL;
        s->init_reserved[side] = u.init_reserved ? strdup(u.init_reserved) : NULL;
        s->token[side] = u.token ? strdup(u.token) : NULL;
        s->serial[side] = u.serial ? strdup(u.serial) : NULL;
    }
    hsm_uri_free(&u);
    return rc;
}

static int parse_weights(int *w, const char *v, char *why, size_t len)
{
    char *end;
    errno = 0;
    long b = strtol(v, &end, 10);
    if (end == v || *end != '/' || errno)
        return fail(why, len, "weights: '%s' is not BLUE/GREEN (e.g. 90/10)%s", v, "");
    const char *g = end + 1;
    long gr = strtol(g, &end, 10);
    if (end == g || *end || errno)
        return fail(why, len, "weights: '%s' is not BLUE/GREEN (e.g. 90/10)%s", v, "");
    if (b < 0 || b > 100 || gr < 0 || gr > 100)
        return fail(why, len, "weights: '%s': each weight is 0 to 100%s", v, "");
    if (b + gr != 100)
        return fail(why, len, "weights: '%s' do not add up to 100%s", v, "");
    w[ROUTE_BLUE] = (int)b;
    w[ROUTE_GREEN] = (int)gr;
    return 0;
}

route_state *route_state_parse(const char *text, size_t len, char *why, size_t whylen)
{
    route_state *s = calloc(1, sizeof *s);
    char *buf = malloc(len + 1);
    if (!s || !buf) {
        free(s);
        free(buf);
        snprintf(why, whylen, "out of memory");
        return NULL;
    }
    memcpy(buf, text, len);
    buf[len] = '\0';
    enum { K_FORMAT, K_GEN, K_BLUE, K_GREEN, K_WEIGHTS, K_WRITE, K_MODE, K_UNTIL, K_AFTER,
           K_END, K_N };
    static const char *const keys[K_N] = {"format", "generation", "blue", "green", "weights",
                                          "write", "mode", "weights-until", "weights-after", "end"};
    int seen[K_N] = {0};
    int rc = 0, lineno = 0;
    char *save = NULL;
    if (memchr(text, '\0', len)) {
        snprintf(why, whylen, "the state file contains a NUL byte");
        rc = -1;
    }
    for (char *line = strtok_r(buf, "\n", &save); rc == 0 && line;
         line = strtok_r(NULL, "\n", &save)) {
        lineno++;
        line[strcspn(line, "\r")] = '\0';
        if (line[0] == '#' || line[0] == '\0')
            continue;
        if (seen[K_END]) {
            snprintf(why, whylen, "line %d: text after 'end'", lineno);
            rc = -1;
            break;
        }
        char *eq = strchr(line, '=');
        const char *key = line, *val = "";
        if (eq) {
            *eq = '\0';
            val = eq + 1;
        }
        int k = 0;
        while (k < K_N && strcmp(keys[k], key) != 0)
            k++;
        if (k == K_N) {
            snprintf(why, whylen, "line %d: unknown key '%.60s'", lineno, key);
            rc = -1;
            break;
        }
        if (seen[k]) {
            snprintf(why, whylen, "line %d: '%s' given twice", lineno, key);
            rc = -1;
            break;
        }
        if ((k == K_END) != !eq) {
            snprintf(why, whylen, "line %d: '%.60s' %s", lineno, key,
                     k == K_END ? "takes no value" : "needs =VALUE");
            rc = -1;
            break;
        }
        seen[k] = 1;
        char *end;
        switch (k) {
        case K_FORMAT:
            if (strcmp(val, "1") != 0) {
                snprintf(why, whylen, "format '%.40s' is not 1 (a newer hsmsh wrote it?)", val);
                rc = -1;
            }
            break;
        case K_GEN:
            errno = 0;
            s->generation = strtoull(val, &end, 10);
            if (end == val || *end || errno || val[0] == '-') {
                snprintf(why, whylen, "generation '%.40s' is not a number", val);
                rc = -1;
            }
            break;
        case K_BLUE:
        case K_GREEN:
            rc = parse_side(s, k == K_BLUE ? ROUTE_BLUE : ROUTE_GREEN, val, why, whylen);
            break;
        case K_WEIGHTS:
            rc = parse_weights(s->weight, val, why, whylen);
            break;
        case K_AFTER:
            rc = parse_weights(s->after, val, why, whylen);
            break;
        case K_UNTIL:
            errno = 0;
            s->until = strtoll(val, &end, 10);
            if (end == val || *end || errno || s->until <= 0) {
                snprintf(why, whylen, "weights-until '%.40s' is not a time (seconds since 1970)", val);
                rc = -1;
            }
            break;
        case K_WRITE:
            if (strcmp(val, "blue") == 0)
                s->write_side = ROUTE_BLUE;
            else if (strcmp(val, "green") == 0)
                s->write_side = ROUTE_GREEN;
            else {
                snprintf(why, whylen, "write '%.40s' is neither blue nor green", val);
                rc = -1;
            }
            break;
        case K_MODE:
            if (strcmp(val, "normal") == 0)
                s->mode = ROUTE_MODE_NORMAL;
            else if (strcmp(val, "limited-write") == 0)
                s->mode = ROUTE_MODE_LIMITED_WRITE;
            else {
                snprintf(why, whylen, "mode '%.40s' is neither normal nor limited-write", val);
                rc = -1;
            }
            break;
        default:
            break;
        }
    }
    if (rc == 0 && seen[K_UNTIL] != seen[K_AFTER]) {
        snprintf(why, whylen, "weights-until and weights-after go together");
        rc = -1;
    }
    for (int k = 0; rc == 0 && k < K_N; k++)
        if (!seen[k] && k != K_UNTIL && k != K_AFTER) {
            if (k == K_END)
                snprintf(why, whylen, "no 'end' line: the state file is truncated");
            else
                snprintf(why, whylen, "'%s' is missing", keys[k]);
            rc = -1;
        }
    if (rc == 0 && s->uri[0] && s->uri[1] && strcmp(s->uri[0], s->uri[1]) == 0) {
        snprintf(why, whylen, "blue and green name the same token");
        rc = -1;
    }
    free(buf);
    if (rc != 0) {
        route_state_free(s);
        return NULL;
    }
    return s;
}

route_state *route_state_load(const char *path, char *why, size_t whylen)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(why, whylen, "cannot read %s: %s", path, strerror(errno));
        return NULL;
    }
    char buf[16384];
    size_t n = fread(buf, 1, sizeof buf, f);
    int big = !feof(f);
    fclose(f);
    if (big) {
        snprintf(why, whylen, "%s is larger than %zu bytes", path, sizeof buf);
        return NULL;
    }
    if (n == 0) {
        snprintf(why, whylen, "%s is empty", path);
        return NULL;
    }
    return route_state_parse(buf, n, why, whylen);
}

/* What the last stat saw, so an unchanged (or already rejected) file is not re-read. */
static atomic_llong last_check_ms;
static struct { dev_t dev; ino_t ino; off_t size; long long mtime_ns; } seen;
static pthread_mutex_t check_lock = PTHREAD_MUTEX_INITIALIZER;
/* The wall clock (seconds) at the last check, for weights-until: no clock read per call. */
static atomic_llong wall_s;
static _Atomic unsigned long long expiry_logged;   /* the generation whose expiry was logged */

static long long wall_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec;
}

const int *route_weights(const route_state *s)
{
    if (s->until == 0 || atomic_load(&wall_s) < s->until)
        return s->weight;
    /* (read first: after the deadline every operation passes here, and a write each time
     * would bounce the cache line between threads) */
    if (atomic_load(&expiry_logged) != s->generation &&
        atomic_exchange(&expiry_logged, s->generation) != s->generation)
        route_log("state generation %llu: weights-until %lld has passed (the canary that set it "
                  "is no longer watching?); weights now %d/%d", s->generation, s->until,
                  s->after[ROUTE_BLUE], s->after[ROUTE_GREEN]);
    return s->after;
}

void route_state_seen_reset(void);
void route_state_seen_reset(void)
{
    memset(&seen, 0, sizeof seen);
    struct stat st;
    if (stat(route_g.state_path, &st) == 0) {
        seen.dev = st.st_dev;
        seen.ino = st.st_ino;
        seen.size = st.st_size;
        seen.mtime_ns = (long long)st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec;
    }
    atomic_store(&last_check_ms, route_now_ms());
    atomic_store(&wall_s, wall_now());
}

static int same_sides(const route_state *a, const route_state *b)
{
    for (int i = 0; i < ROUTE_SIDES; i++)
        if (strcmp(a->uri[i], b->uri[i]) != 0)
            return 0;
    return 1;
}

/* Re-reads the state file when it changed since it was last seen (under check_lock). */
static void recheck(void)
{
    struct stat st;
    int changed = 0;
    if (stat(route_g.state_path, &st) != 0) {
        if (seen.ino != 0) {
            route_log("state %s: cannot stat (%s); keeping generation %llu",
                      route_g.state_path, strerror(errno), route_g.state->generation);
            memset(&seen, 0, sizeof seen);
        }
    } else {
        long long mt = (long long)st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec;
        changed = st.st_dev != seen.dev || st.st_ino != seen.ino || st.st_size != seen.size ||
                  mt != seen.mtime_ns;
        seen.dev = st.st_dev;
        seen.ino = st.st_ino;
        seen.size = st.st_size;
        seen.mtime_ns = mt;
    }
    if (changed) {
        char why[600];
        route_state *ns = route_state_load(route_g.state_path, why, sizeof why);
        pthread_mutex_lock(&route_lock);
        route_state *cur = route_g.state;
        pthread_mutex_unlock(&route_lock);
        if (!ns) {
            route_log("state %s: new state ignored (%s); keeping generation %llu",
                      route_g.state_path, why, cur->generation);
        } else if (ns->generation <= cur->generation) {
            if (ns->generation < cur->generation)
                route_log("state %s: generation %llu is older than %llu; ignored",
                          route_g.state_path, ns->generation, cur->generation);
            route_state_free(ns);
        } else {
            if (!same_sides(ns, cur)) {
                route_log("state %s: generation %llu names other blue/green tokens; "
                          "the tokens change at the next C_Initialize, the rest applies now",
                          route_g.state_path, ns->generation);
                for (int i = 0; i < ROUTE_SIDES; i++) {   /* keep the sides in use */
                    char *t = ns->uri[i]; ns->uri[i] = strdup(cur->uri[i]); free(t);
                }
            }
            pthread_mutex_lock(&route_lock);
            ns->older = route_g.state;
            route_g.state = ns;
            pthread_mutex_unlock(&route_lock);
            for (int i = 0; i < ROUTE_SIDES; i++)   /* a new generation retries a down side */
                if (!atomic_load(&route_g.side[i].up))
                    atomic_store(&route_g.side[i].retry_at_ms, 0);
            route_log("state generation %llu: weights %d/%d, write %s, mode %s",
                      ns->generation, ns->weight[0], ns->weight[1],
                      route_side_name[ns->write_side],
                      ns->mode == ROUTE_MODE_NORMAL ? "normal" : "limited-write");
        }
    }
}

const route_state *route_state_current(void)
{
    /* Every operation that finds a check due waits for it, and the first does it; the time
     * of the check is set only once the new state is in place. So an operation started
     * after a new state was written never runs on the old one because another thread was
     * still reading the file. */
    if (route_now_ms() - atomic_load(&last_check_ms) >= 100) {
        pthread_mutex_lock(&check_lock);
        if (route_now_ms() - atomic_load(&last_check_ms) >= 100) {
            recheck();
            atomic_store(&wall_s, wall_now());
            atomic_store(&last_check_ms, route_now_ms());
        }
        pthread_mutex_unlock(&check_lock);
    }
    pthread_mutex_lock(&route_lock);
    const route_state *s = route_g.state;
    pthread_mutex_unlock(&route_lock);
    return s;
}
