/* route.h - libhsmsh-route.so internals: a PKCS#11 module that shows two tokens (blue,
 * green) as one, routes each operation by weight, sends token writes to the write side and
 * records them. Pure C11 over backends/pkcs11; no Lua.
 *
 * Locking: one leaf mutex (route_lock) guards the session table, the handle table and the
 * current state pointer. It is never held across a call into a backend or across file I/O:
 * every entry point copies out what it needs, unlocks, calls, and relocks to commit.
 * Statistics are C11 atomics. */
#ifndef HSM_ROUTE_H
#define HSM_ROUTE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/types.h>

#include "pkcs11/hsm_p11.h"

#define ROUTE_SIDES 2
#define ROUTE_BLUE 0
#define ROUTE_GREEN 1
#define ROUTE_SLOT_ID 1
#define ROUTE_HANDLE_MAX 0x7FFFFFFFUL

extern const char *const route_side_name[ROUTE_SIDES];

/* ------------------------------------------------------------------ state (state.c) */
typedef enum { ROUTE_MODE_NORMAL, ROUTE_MODE_LIMITED_WRITE } route_mode;

/* One parsed, immutable state file. Snapshots are never freed before C_Finalize, so a
 * pointer read under the lock stays valid for the whole call. */
typedef struct route_state {
    unsigned long long generation;
    char *uri[ROUTE_SIDES];        /* RFC 7512, no PIN */
    char *module_path[ROUTE_SIDES];   /* module-path, else module-name (p11-kit's) */
    char *init_reserved[ROUTE_SIDES]; /* x-init-reserved: C_Initialize's pReserved (NSS) */
    char *token[ROUTE_SIDES];      /* token label, or NULL */
    char *serial[ROUTE_SIDES];     /* token serial, or NULL */
    int weight[ROUTE_SIDES];       /* 0..100, sum 100 */
    long long until;               /* weights-until (seconds since 1970), 0 when none */
    int after[ROUTE_SIDES];        /* weights-after: the weights once `until` has passed */
    int write_side;
    route_mode mode;
    struct route_state *older;     /* the snapshots it replaced */
} route_state;

/* Parses text (len bytes). On error returns NULL and writes one sentence into why. */
route_state *route_state_parse(const char *text, size_t len, char *why, size_t whylen);
void route_state_free(route_state *s);
/* Reads and parses the file at path. */
route_state *route_state_load(const char *path, char *why, size_t whylen);
/* At an operation's start: re-reads the state file when it changed (a stat at most every
 * 100 ms); a bad new state is logged and ignored. Returns the current snapshot. */
const route_state *route_state_current(void);
/* The weights in force: weight, or after once weights-until has passed (a canary whose
 * watcher died: the module falls back by itself; the clock is read at each state check). */
const int *route_weights(const route_state *s);

/* ------------------------------------------------------------------ log (log.c) */
int route_open_shared(const char *path);
void route_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
const char *route_rv_name(CK_RV rv, char *buf, size_t len);

/* ------------------------------------------------------------------ sides (entry.c) */
typedef struct route_side {
    hsm_module *module;
    CK_FUNCTION_LIST *fl;
    CK_SLOT_ID slot;
    CK_SESSION_HANDLE anchor;      /* long-lived session: keeps backend handles valid, logs in */
    atomic_int up;
    atomic_llong retry_at_ms;      /* when down: next retry */
    long long backoff_ms;
    unsigned long long down_gen;   /* generation at which it went down */
    CK_MECHANISM_TYPE *mechs;
    CK_ULONG nmechs;
} route_side;

typedef struct route_global {
    int initialized;
    pid_t pid;
    char state_path[4096];
    char log_path[4096];
    char births_path[4200];
    char stats_dir[4200];
    route_side side[ROUTE_SIDES];
    route_state *state;            /* current snapshot (guarded by route_lock) */
    CK_TOKEN_INFO token;           /* the stable token identity (blue's by default) */
    CK_MECHANISM_TYPE *mechs;      /* those both sides have */
    CK_ULONG nmechs;
    /* login, shared by all sessions as PKCS#11 wants */
    int logged_in;
    CK_USER_TYPE user;
    unsigned char *pin;            /* mlock'd, zeroised on logout/finalize */
    size_t pin_len, pin_cap;
    int no_threads;                /* CKF_LIBRARY_CANT_CREATE_OS_THREADS was given */
    /* seeded choice for repeatable tests (HSMSH_ROUTE_SEED) */
    int seeded;
    unsigned long long seed;
    atomic_ullong choice_n;
} route_global;

extern route_global route_g;
extern pthread_mutex_t route_lock;
/* This process's pid, set at C_Initialize and by the fork handler in a child (getpid() is a
 * system call, too dear for every operation). */
extern pid_t route_self_pid;

/* Every entry point but C_Initialize: initialised, and in this process (a forked child
 * calls C_Initialize again). */
#define ROUTE_CHECK_INIT()                                                     \
    do {                                                                       \
        if (!route_g.initialized || route_g.pid != route_self_pid)             \
            return CKR_CRYPTOKI_NOT_INITIALIZED;                               \
    } while (0)

long long route_now_ms(void);
/* A CKR that means the side is gone (device error, removed, token not present). */
int route_rv_is_down(CK_RV rv);
void route_side_failed(int side, CK_RV rv, const char *fn);
/* True when the side takes new operations (retries a down side after its back-off). */
int route_side_usable(int side);
/* Chooses a side by the weights among the allowed ones (mask bit 1<<side); -1 if none. */
int route_choose(unsigned mask, const route_state *st, int *missed);

/* ------------------------------------------------------------------ handles (handles.c) */
typedef struct route_obj {
    CK_OBJECT_HANDLE h[ROUTE_SIDES];   /* backend handle per side, 0 = absent */
    CK_OBJECT_CLASS cls;
    unsigned char id[64]; CK_ULONG id_len;
    char label[129];
    int token, priv;
    int split;                         /* a twin with another KCV/fingerprint exists */
    unsigned char fp[ROUTE_SIDES][8];  /* fingerprint per side (first 8 bytes of SHA-256) */
    int has_fp[ROUTE_SIDES];
    unsigned char kcv[8]; CK_ULONG kcv_len;   /* CKA_CHECK_VALUE as read */
    CK_SESSION_HANDLE owner;           /* session objects: the creating app session */
    int dead;
} route_obj;

/* All under route_lock. */
void route_handles_reset(void);
route_obj *route_obj_get(CK_OBJECT_HANDLE h);
/* Registers (side, bh) with the identity read from the backend; merges with a twin of
 * the other side when class, CKA_ID and label match. Returns the route handle, 0 on OOM. */
CK_OBJECT_HANDLE route_obj_register(int side, CK_OBJECT_HANDLE bh, const route_obj *ident);
CK_OBJECT_HANDLE route_obj_lookup(int side, CK_OBJECT_HANDLE bh);
/* Forgets one side's handle (destroyed there); the entry dies when no side is left. */
void route_obj_drop_side(CK_OBJECT_HANDLE h, int side);
/* Session objects of a closed session, private objects at logout. */
void route_obj_drop_owned(CK_SESSION_HANDLE owner);
void route_obj_drop_private(void);
unsigned long route_obj_count(void);

/* Reads class, token, private, CKA_ID, label and a fingerprint (no lock held). */
CK_RV route_obj_identity(int side, CK_SESSION_HANDLE bs, CK_OBJECT_HANDLE bh, route_obj *out);

/* ------------------------------------------------------------------ sessions (session.c) */
enum { OP_FIND, OP_ENC, OP_DEC, OP_DIG, OP_SIGN, OP_VER, OP_COUNT };

typedef struct route_sess {
    CK_SESSION_HANDLE h;
    CK_FLAGS flags;
    CK_SESSION_HANDLE bs[ROUTE_SIDES];     /* backend sessions, opened on demand */
    int op_side[OP_COUNT];                 /* side of the running operation, -1 none */
    long long op_t0[OP_COUNT];             /* when it started (µs) */
    /* the running find: route handles collected at C_FindObjectsInit */
    CK_OBJECT_HANDLE *found; CK_ULONG nfound, pos;
    int refs;
    int closed;
} route_sess;

void route_sessions_reset(int call_backends);
/* Takes a reference (route_sess_put drops it); NULL when the handle is unknown. */
route_sess *route_sess_get(CK_SESSION_HANDLE h);
void route_sess_put(route_sess *s);
/* The backend session on side, opened (and counted) on first use. */
CK_RV route_sess_backend(route_sess *s, int side, CK_SESSION_HANDLE *out);
unsigned long route_session_count(void);
void route_pin_wipe(void);

/* ------------------------------------------------------------------ births (writes.c) */
/* Appends one line to the birth journal; was: the identity before a C_SetAttributeValue
 * (recorded as was_id/was_label when the ID or label changed), else NULL. */
int route_birth(int side, const char *op, const route_obj *o, const route_obj *was);

/* ------------------------------------------------------------------ stats (stats.c) */
typedef struct route_stats {
    atomic_ulong sessions, ops, errors, misses, split_brain, refusals, writes, downs;
    atomic_ulong err_by_rv[64];        /* small table: rv values below 0x200 bucketed */
    atomic_ulong err_rv_code[64];
    atomic_ulong lat[32];              /* log2 histogram of µs per operation */
} route_stats;

extern route_stats route_st[ROUTE_SIDES];
long long route_now_us(void);
void route_stat_op(int side, long long t0_us, CK_RV rv);
void route_stat_error(int side, CK_RV rv);
/* Writes this process's stats file when a second has passed (force: now). */
void route_stats_flush(int force);
void route_stats_reset(void);

#endif
