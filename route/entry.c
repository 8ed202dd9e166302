/* entry.c - the module's face: C_GetFunctionList, C_Initialize / C_Finalize (with fork
 * detection), the single slot and token, the mechanisms both sides have, side health and
 * the weighted choice of a side. */
#include <dlfcn.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "route.h"

const char *const route_side_name[ROUTE_SIDES] = {"blue", "green"};
route_global route_g;
pthread_mutex_t route_lock = PTHREAD_MUTEX_INITIALIZER;
pid_t route_self_pid;
static pthread_mutex_t init_lock = PTHREAD_MUTEX_INITIALIZER;
void route_state_seen_reset(void);

long long route_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int route_rv_is_down(CK_RV rv)
{
    return rv == CKR_DEVICE_ERROR || rv == CKR_DEVICE_REMOVED || rv == CKR_TOKEN_NOT_PRESENT;
}

/* ------------------------------------------------------------------ fork */
/* The handlers only take and release our own lock so a child never inherits it held;
 * they never call a backend. */
static void atfork_prepare(void) { pthread_mutex_lock(&route_lock); }
static void atfork_parent(void) { pthread_mutex_unlock(&route_lock); }
static void atfork_child(void)
{
    pthread_mutex_unlock(&route_lock);
    route_self_pid = getpid();
}
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;
static void atfork_install(void) { pthread_atfork(atfork_prepare, atfork_parent, atfork_child); }

/* ------------------------------------------------------------------ sides */
static CK_RV backend_init(CK_FUNCTION_LIST *fl)
{
    CK_C_INITIALIZE_ARGS args;
    memset(&args, 0, sizeof args);
    args.flags = CKF_OS_LOCKING_OK;
    CK_RV rv = fl->C_Initialize(&args);
    return rv == CKR_CRYPTOKI_ALREADY_INITIALIZED ? CKR_OK : rv;
}

/* Finds the side's token and opens its anchor session. Logs and returns -1 on failure. */
static int side_attach(int i, const route_state *st)
{
    route_side *sd = &route_g.side[i];
    const char *name = route_side_name[i];
    hsm_err err;
    CK_SLOT_ID *slots = NULL;
    CK_ULONG n = 0;
    if (hsm_slots(sd->module, 1, &slots, &n, &err) != 0) {
        route_log("%s: %s", name, err.msg);
        return -1;
    }
    int found = 0;
    for (CK_ULONG k = 0; k < n && !found; k++) {
        CK_TOKEN_INFO ti;
        char label[40], serial[20];
        if (sd->fl->C_GetTokenInfo(slots[k], &ti) != CKR_OK)
            continue;
        hsm_field(ti.label, sizeof ti.label, label, sizeof label);
        hsm_field(ti.serialNumber, sizeof ti.serialNumber, serial, sizeof serial);
        if ((!st->token[i] || strcmp(st->token[i], label) == 0) &&
            (!st->serial[i] || strcmp(st->serial[i], serial) == 0)) {
            sd->slot = slots[k];
            found = 1;
        }
    }
    free(slots);
    if (!found) {
        route_log("%s: no token matches %s", name, st->uri[i]);
        return -1;
    }
    CK_RV rv = sd->fl->C_OpenSession(sd->slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL,
                                     &sd->anchor);
    if (rv != CKR_OK) {
        char b[48];
        route_log("%s: C_OpenSession: %s", name, route_rv_name(rv, b, sizeof b));
        return -1;
    }
    if (!sd->mechs) {
        if (hsm_mechanisms(sd->module, sd->slot, &sd->mechs, &sd->nmechs, &err) != 0)
            route_log("%s: %s", name, err.msg);
    }
    return 0;
}

static int side_open(int i, const route_state *st)
{
    route_side *sd = &route_g.side[i];
    const char *name = route_side_name[i];
    if (!sd->module) {
        hsm_err err;
        const char *path = st->module_path[i];
        /* Never load ourselves as a backend. */
        Dl_info me;
        char self[PATH_MAX], want[PATH_MAX];
        if (path && dladdr((void *)&route_g, &me) && me.dli_fname &&
            realpath(me.dli_fname, self) && realpath(path, want) && strcmp(self, want) == 0) {
            route_log("%s: module-path %s is the routing module itself", name, path);
            return -1;
        }
        sd->module = hsm_module_load_init(path, st->init_reserved[i], &err);
        if (!sd->module) {
            route_log("%s: %s", name, err.msg);
            return -1;
        }
        sd->fl = hsm_module_functions(sd->module);
    } else {
        CK_RV rv = backend_init(sd->fl);
        if (rv != CKR_OK) {
            char b[48];
            route_log("%s: C_Initialize: %s", name, route_rv_name(rv, b, sizeof b));
            return -1;
        }
    }
    return side_attach(i, st);
}

static int relogin_side(int i);

int route_side_usable(int i)
{
    route_side *sd = &route_g.side[i];
    if (atomic_load(&sd->up))
        return 1;
    long long now = route_now_ms();
    long long at = atomic_load(&sd->retry_at_ms);
    if (now < at || !atomic_compare_exchange_strong(&sd->retry_at_ms, &at, now + 3600000))
        return 0;
    /* this thread retries the side; no lock is held */
    pthread_mutex_lock(&route_lock);
    const route_state *st = route_g.state;
    pthread_mutex_unlock(&route_lock);
    if (sd->anchor && sd->fl) {
        sd->fl->C_CloseSession(sd->anchor);
        sd->anchor = 0;
    }
    if (side_open(i, st) == 0 && relogin_side(i) == 0) {
        sd->backoff_ms = 1000;
        atomic_store(&sd->up, 1);
        route_log("%s: back up", route_side_name[i]);
        return 1;
    }
    sd->backoff_ms = sd->backoff_ms < 1000 ? 1000 : sd->backoff_ms * 2;
    if (sd->backoff_ms > 30000)
        sd->backoff_ms = 30000;
    atomic_store(&sd->retry_at_ms, route_now_ms() + sd->backoff_ms);
    return 0;
}

void route_side_failed(int i, CK_RV rv, const char *fn)
{
    if (!route_rv_is_down(rv))
        return;
    route_side *sd = &route_g.side[i];
    int was = 1;
    if (atomic_compare_exchange_strong(&sd->up, &was, 0)) {
        if (sd->backoff_ms < 1000)
            sd->backoff_ms = 1000;
        atomic_store(&sd->retry_at_ms, route_now_ms() + sd->backoff_ms);
        atomic_fetch_add(&route_st[i].downs, 1);
        char b[48];
        route_log("%s: %s: %s; marked down, retried in %lld ms or at the next generation",
                  route_side_name[i], fn, route_rv_name(rv, b, sizeof b), sd->backoff_ms);
    }
}

static unsigned long long mix64(unsigned long long x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

static _Thread_local unsigned long long rng;

int route_choose(unsigned mask, const route_state *st, int *missed)
{
    unsigned long long r;
    if (route_g.seeded)
        r = mix64(route_g.seed ^ mix64(atomic_fetch_add(&route_g.choice_n, 1)));
    else {
        if (!rng) {
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            rng = mix64((unsigned long long)ts.tv_nsec ^ ((unsigned long long)(uintptr_t)&rng << 16) ^
                        (unsigned long long)getpid());
        }
        rng = mix64(rng);
        r = rng;
    }
    int want = (int)(r % 100) < route_weights(st)[ROUTE_BLUE] ? ROUTE_BLUE : ROUTE_GREEN;
    if (missed)
        *missed = 0;
    if ((mask & (1u << want)) && route_side_usable(want))
        return want;
    int other = 1 - want;
    if ((mask & (1u << other)) && route_side_usable(other)) {
        if (missed && !(mask & (1u << want)))
            *missed = 1;   /* the object is not on the side the weights chose */
        return other;
    }
    return -1;
}

/* ------------------------------------------------------------------ init / finalize */
static void discard_inherited(void)
{
    /* A forked child: free what the parent left, without calling any backend. */
    route_sessions_reset(0);
    route_handles_reset();
    route_state_free(route_g.state);
    route_g.state = NULL;
    route_pin_wipe();
    for (int i = 0; i < ROUTE_SIDES; i++) {
        route_g.side[i].anchor = 0;
        atomic_store(&route_g.side[i].up, 0);
    }
    free(route_g.mechs);
    route_g.mechs = NULL;
    route_g.nmechs = 0;
    route_stats_reset();
    route_g.initialized = 0;
}

static CK_RV do_initialize(CK_VOID_PTR pInitArgs)
{
    if (pInitArgs) {
        CK_C_INITIALIZE_ARGS *a = pInitArgs;
        int some = a->CreateMutex || a->DestroyMutex || a->LockMutex || a->UnlockMutex;
        int all = a->CreateMutex && a->DestroyMutex && a->LockMutex && a->UnlockMutex;
        if (some && !all)
            return CKR_ARGUMENTS_BAD;
        if (a->pReserved)
            return CKR_ARGUMENTS_BAD;
        if (all && !(a->flags & CKF_OS_LOCKING_OK))
            return CKR_CANT_LOCK;
    }
    route_g.no_threads = pInitArgs &&
        (((CK_C_INITIALIZE_ARGS *)pInitArgs)->flags & CKF_LIBRARY_CANT_CREATE_OS_THREADS);
    if (route_g.initialized && route_g.pid == getpid())
        return CKR_CRYPTOKI_ALREADY_INITIALIZED;
    if (route_g.initialized)
        discard_inherited();
    pthread_once(&atfork_once, atfork_install);

    const char *sp = getenv("HSMSH_ROUTE_STATE");
    const char *lp = getenv("HSMSH_ROUTE_LOG");
    snprintf(route_g.log_path, sizeof route_g.log_path, "%s", lp && *lp ? lp : "");
    if (!sp || !*sp) {
        route_log("C_Initialize: HSMSH_ROUTE_STATE is not set (it names the state file)");
        return CKR_GENERAL_ERROR;
    }
    snprintf(route_g.state_path, sizeof route_g.state_path, "%s", sp);
    if (!route_g.log_path[0])
        snprintf(route_g.log_path, sizeof route_g.log_path, "%s.log", sp);
    snprintf(route_g.births_path, sizeof route_g.births_path, "%s.births", sp);
    snprintf(route_g.stats_dir, sizeof route_g.stats_dir, "%s.stats.d", sp);

    char why[600];
    route_state *st = route_state_load(sp, why, sizeof why);
    if (!st) {
        route_log("C_Initialize: state %s: %s", sp, why);
        return CKR_GENERAL_ERROR;
    }
    route_g.state = st;
    route_state_seen_reset();
    const char *seed = getenv("HSMSH_ROUTE_SEED");
    route_g.seeded = seed && *seed;
    route_g.seed = route_g.seeded ? strtoull(seed, NULL, 0) : 0;
    atomic_store(&route_g.choice_n, 0);

    int up = 0;
    for (int i = 0; i < ROUTE_SIDES; i++) {
        route_side *sd = &route_g.side[i];
        sd->backoff_ms = 1000;
        if (side_open(i, st) == 0) {
            atomic_store(&sd->up, 1);
            up++;
        } else {
            atomic_store(&sd->up, 0);
            atomic_store(&sd->retry_at_ms, route_now_ms() + sd->backoff_ms);
            atomic_fetch_add(&route_st[i].downs, 1);
            route_log("%s: down at C_Initialize; retried after %lld ms", route_side_name[i],
                      sd->backoff_ms);
        }
    }
    if (!up) {
        route_log("C_Initialize: neither blue nor green can be used");
        route_state_free(st);
        route_g.state = NULL;
        return CKR_GENERAL_ERROR;
    }
    /* the token identity: blue's (green's while blue is down) */
    int id = atomic_load(&route_g.side[ROUTE_BLUE].up) ? ROUTE_BLUE : ROUTE_GREEN;
    route_side *sd = &route_g.side[id];
    if (sd->fl->C_GetTokenInfo(sd->slot, &route_g.token) != CKR_OK)
        memset(&route_g.token, ' ', sizeof route_g.token);
    /* mechanisms both sides have (one side's when the other is down) */
    route_side *o = &route_g.side[1 - id];
    route_g.mechs = calloc(sd->nmechs ? sd->nmechs : 1, sizeof *route_g.mechs);
    route_g.nmechs = 0;
    for (CK_ULONG k = 0; route_g.mechs && k < sd->nmechs; k++) {
        int both = !atomic_load(&o->up) || !o->mechs;
        for (CK_ULONG j = 0; !both && j < o->nmechs; j++)
            both = o->mechs[j] == sd->mechs[k];
        if (both)
            route_g.mechs[route_g.nmechs++] = sd->mechs[k];
    }
    route_g.pid = route_self_pid = getpid();
    route_g.initialized = 1;
    route_log("C_Initialize: generation %llu, weights %d/%d, write %s, mode %s, blue %s, green %s",
              st->generation, st->weight[0], st->weight[1], route_side_name[st->write_side],
              st->mode == ROUTE_MODE_NORMAL ? "normal" : "limited-write",
              atomic_load(&route_g.side[0].up) ? "up" : "down",
              atomic_load(&route_g.side[1].up) ? "up" : "down");
    return CKR_OK;
}

static CK_RV r_Initialize(CK_VOID_PTR pInitArgs)
{
    pthread_mutex_lock(&init_lock);
    CK_RV rv = do_initialize(pInitArgs);
    pthread_mutex_unlock(&init_lock);
    return rv;
}

static CK_RV r_Finalize(CK_VOID_PTR pReserved)
{
    if (pReserved)
        return CKR_ARGUMENTS_BAD;
    pthread_mutex_lock(&init_lock);
    if (!route_g.initialized || route_g.pid != getpid()) {
        pthread_mutex_unlock(&init_lock);
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    }
    route_stats_flush(1);
    route_sessions_reset(1);     /* our backend sessions close before the backends finalise */
    for (int i = 0; i < ROUTE_SIDES; i++) {
        route_side *sd = &route_g.side[i];
        if (sd->anchor && sd->fl)
            sd->fl->C_CloseSession(sd->anchor);
        sd->anchor = 0;
        if (sd->module)
            hsm_module_unref(sd->module);
        sd->module = NULL;
        sd->fl = NULL;
        free(sd->mechs);
        sd->mechs = NULL;
        sd->nmechs = 0;
        atomic_store(&sd->up, 0);
    }
    pthread_mutex_lock(&route_lock);
    route_handles_reset();
    route_state_free(route_g.state);
    route_g.state = NULL;
    pthread_mutex_unlock(&route_lock);
    route_pin_wipe();
    free(route_g.mechs);
    route_g.mechs = NULL;
    route_g.nmechs = 0;
    route_stats_reset();
    route_g.initialized = 0;
    pthread_mutex_unlock(&init_lock);
    return CKR_OK;
}

/* ------------------------------------------------------------------ info, slot, token */
static void pad(CK_UTF8CHAR *dst, size_t n, const char *s)
{
    memset(dst, ' ', n);
    size_t l = strlen(s);
    memcpy(dst, s, l < n ? l : n);
}

static CK_RV r_GetInfo(CK_INFO_PTR p)
{
    ROUTE_CHECK_INIT();
    if (!p)
        return CKR_ARGUMENTS_BAD;
    memset(p, 0, sizeof *p);
    p->cryptokiVersion.major = 2;
    p->cryptokiVersion.minor = 40;
    pad(p->manufacturerID, sizeof p->manufacturerID, "hsmsh");
    pad(p->libraryDescription, sizeof p->libraryDescription, "hsmsh route (blue/green)");
    p->libraryVersion.major = 0;
    p->libraryVersion.minor = 1;
    return CKR_OK;
}

static CK_RV r_GetSlotList(CK_BBOOL present, CK_SLOT_ID_PTR list, CK_ULONG_PTR n)
{
    (void)present;
    ROUTE_CHECK_INIT();
    if (!n)
        return CKR_ARGUMENTS_BAD;
    if (!list) {
        *n = 1;
        return CKR_OK;
    }
    if (*n < 1) {
        *n = 1;
        return CKR_BUFFER_TOO_SMALL;
    }
    list[0] = ROUTE_SLOT_ID;
    *n = 1;
    return CKR_OK;
}

static CK_RV r_GetSlotInfo(CK_SLOT_ID slot, CK_SLOT_INFO_PTR p)
{
    ROUTE_CHECK_INIT();
    if (slot != ROUTE_SLOT_ID)
        return CKR_SLOT_ID_INVALID;
    if (!p)
        return CKR_ARGUMENTS_BAD;
    memset(p, 0, sizeof *p);
    pad(p->slotDescription, sizeof p->slotDescription, "hsmsh route: blue/green as one token");
    pad(p->manufacturerID, sizeof p->manufacturerID, "hsmsh");
    p->flags = CKF_TOKEN_PRESENT;
    return CKR_OK;
}

static CK_RV r_GetTokenInfo(CK_SLOT_ID slot, CK_TOKEN_INFO_PTR p)
{
    ROUTE_CHECK_INIT();
    if (slot != ROUTE_SLOT_ID)
        return CKR_SLOT_ID_INVALID;
    if (!p)
        return CKR_ARGUMENTS_BAD;
    /* live counters and flags from a side that is up, the stable identity from init */
    int done = 0;
    for (int i = 0; i < ROUTE_SIDES && !done; i++)
        if (atomic_load(&route_g.side[i].up) &&
            route_g.side[i].fl->C_GetTokenInfo(route_g.side[i].slot, p) == CKR_OK)
            done = 1;
    if (!done)
        *p = route_g.token;
    memcpy(p->label, route_g.token.label, sizeof p->label);
    memcpy(p->serialNumber, route_g.token.serialNumber, sizeof p->serialNumber);
    memcpy(p->manufacturerID, route_g.token.manufacturerID, sizeof p->manufacturerID);
    memcpy(p->model, route_g.token.model, sizeof p->model);
    p->ulSessionCount = route_session_count();
    p->ulRwSessionCount = CK_UNAVAILABLE_INFORMATION;
    p->flags &= ~(CK_FLAGS)CKF_USER_PIN_TO_BE_CHANGED;
    return CKR_OK;
}

static CK_RV r_GetMechanismList(CK_SLOT_ID slot, CK_MECHANISM_TYPE_PTR list, CK_ULONG_PTR n)
{
    ROUTE_CHECK_INIT();
    if (slot != ROUTE_SLOT_ID)
        return CKR_SLOT_ID_INVALID;
    if (!n)
        return CKR_ARGUMENTS_BAD;
    if (!list) {
        *n = route_g.nmechs;
        return CKR_OK;
    }
    if (*n < route_g.nmechs) {
        *n = route_g.nmechs;
        return CKR_BUFFER_TOO_SMALL;
    }
    memcpy(list, route_g.mechs, route_g.nmechs * sizeof *list);
    *n = route_g.nmechs;
    return CKR_OK;
}

static CK_RV r_GetMechanismInfo(CK_SLOT_ID slot, CK_MECHANISM_TYPE t, CK_MECHANISM_INFO_PTR p)
{
    ROUTE_CHECK_INIT();
    if (slot != ROUTE_SLOT_ID)
        return CKR_SLOT_ID_INVALID;
    int have = 0;
    for (CK_ULONG i = 0; i < route_g.nmechs && !have; i++)
        have = route_g.mechs[i] == t;
    if (!have)
        return CKR_MECHANISM_INVALID;
    for (int i = 0; i < ROUTE_SIDES; i++)
        if (atomic_load(&route_g.side[i].up))
            return route_g.side[i].fl->C_GetMechanismInfo(route_g.side[i].slot, t, p);
    return CKR_DEVICE_ERROR;
}

static CK_RV r_WaitForSlotEvent(CK_FLAGS f, CK_SLOT_ID_PTR s, CK_VOID_PTR r)
{
    (void)f; (void)s; (void)r;
    ROUTE_CHECK_INIT();
    return CKR_FUNCTION_NOT_SUPPORTED;
}

/* ------------------------------------------------------------------ login helpers */
/* Re-logs a side that came back in with the held PIN. */
static int relogin_side(int i)
{
    pthread_mutex_lock(&route_lock);
    int in = route_g.logged_in;
    CK_USER_TYPE u = route_g.user;
    pthread_mutex_unlock(&route_lock);
    if (!in)
        return 0;
    route_side *sd = &route_g.side[i];
    CK_RV rv = sd->fl->C_Login(sd->anchor, u, route_g.pin, route_g.pin_len);
    return rv == CKR_OK || rv == CKR_USER_ALREADY_LOGGED_IN ? 0 : -1;
}

/* ------------------------------------------------------------------ the function list */
#include "functions.h"

static CK_RV r_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR pp);

static CK_FUNCTION_LIST function_list = {
    .version = {2, 40},
    .C_Initialize = r_Initialize,
    .C_Finalize = r_Finalize,
    .C_GetInfo = r_GetInfo,
    .C_GetFunctionList = r_GetFunctionList,
    .C_GetSlotList = r_GetSlotList,
    .C_GetSlotInfo = r_GetSlotInfo,
    .C_GetTokenInfo = r_GetTokenInfo,
    .C_GetMechanismList = r_GetMechanismList,
    .C_GetMechanismInfo = r_GetMechanismInfo,
    .C_WaitForSlotEvent = r_WaitForSlotEvent,
    ROUTE_SESSION_FUNCTIONS
};

static CK_RV r_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR pp)
{
    if (!pp)
        return CKR_ARGUMENTS_BAD;
    *pp = &function_list;
    return CKR_OK;
}

__attribute__((visibility("default"))) CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR pp)
{
    return r_GetFunctionList(pp);
}

/* A process that exits without C_Finalize still leaves its last statistics. */
__attribute__((destructor)) static void route_at_exit(void)
{
    if (route_g.initialized && route_g.pid == getpid())
        route_stats_flush(1);
}
