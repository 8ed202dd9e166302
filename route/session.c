/* session.c - application sessions (each holds one backend session per side, opened on
 * demand), login once to both sides with the PIN in locked, zeroised memory, and the
 * calls that need nothing but a session. */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "route.h"
#include "functions.h"

static route_sess **table;
static size_t ntable, captable;
static unsigned long live;

unsigned long route_session_count(void)
{
    pthread_mutex_lock(&route_lock);
    unsigned long n = live;
    pthread_mutex_unlock(&route_lock);
    return n;
}

void route_pin_wipe(void)
{
    if (route_g.pin) {
        explicit_bzero(route_g.pin, route_g.pin_cap);
        munlock(route_g.pin, route_g.pin_cap);
        free(route_g.pin);
    }
    route_g.pin = NULL;
    route_g.pin_len = route_g.pin_cap = 0;
    route_g.logged_in = 0;
}

static void destroy(route_sess *s, int call_backends)
{
    if (call_backends)
        for (int i = 0; i < ROUTE_SIDES; i++)
            if (s->bs[i] && route_g.side[i].fl)
                route_g.side[i].fl->C_CloseSession(s->bs[i]);
    pthread_mutex_lock(&route_lock);
    route_obj_drop_owned(s->h);
    pthread_mutex_unlock(&route_lock);
    free(s->found);
    free(s);
}

void route_sessions_reset(int call_backends)
{
    pthread_mutex_lock(&route_lock);
    route_sess **t = table;
    size_t n = ntable;
    table = NULL;
    ntable = captable = 0;
    live = 0;
    pthread_mutex_unlock(&route_lock);
    for (size_t i = 0; i < n; i++)
        if (t[i]) {
            if (call_backends)
                destroy(t[i], 1);
            else {
                free(t[i]->found);
                free(t[i]);
            }
        }
    free(t);
}

route_sess *route_sess_get(CK_SESSION_HANDLE h)
{
    route_sess *s = NULL;
    pthread_mutex_lock(&route_lock);
    if (h >= 1 && h <= ntable && table[h - 1] && !table[h - 1]->closed) {
        s = table[h - 1];
        s->refs++;
    }
    pthread_mutex_unlock(&route_lock);
    return s;
}

void route_sess_put(route_sess *s)
{
    pthread_mutex_lock(&route_lock);
    int last = --s->refs == 0;
    pthread_mutex_unlock(&route_lock);
    if (last)
        destroy(s, 1);
}

CK_RV route_sess_backend(route_sess *s, int side, CK_SESSION_HANDLE *out)
{
    pthread_mutex_lock(&route_lock);
    CK_SESSION_HANDLE have = s->bs[side];
    pthread_mutex_unlock(&route_lock);
    if (have) {
        *out = have;
        return CKR_OK;
    }
    route_side *sd = &route_g.side[side];
    CK_SESSION_HANDLE bs;
    CK_RV rv = sd->fl->C_OpenSession(sd->slot, s->flags, NULL, NULL, &bs);
    if (rv != CKR_OK) {
        route_stat_error(side, rv);
        route_side_failed(side, rv, "C_OpenSession");
        return rv;
    }
    pthread_mutex_lock(&route_lock);
    if (s->bs[side]) {           /* another thread won (one session, two threads: rare) */
        have = s->bs[side];
    } else
        s->bs[side] = bs;
    pthread_mutex_unlock(&route_lock);
    if (have) {
        sd->fl->C_CloseSession(bs);
        bs = have;
    } else
        atomic_fetch_add(&route_st[side].sessions, 1);
    *out = bs;
    return CKR_OK;
}

CK_RV route_C_OpenSession(CK_SLOT_ID slot, CK_FLAGS flags, CK_VOID_PTR app, CK_NOTIFY notify,
                          CK_SESSION_HANDLE_PTR ph)
{
    (void)app; (void)notify;
    ROUTE_CHECK_INIT();
    if (slot != ROUTE_SLOT_ID)
        return CKR_SLOT_ID_INVALID;
    if (!(flags & CKF_SERIAL_SESSION))
        return CKR_SESSION_PARALLEL_NOT_SUPPORTED;
    if (!ph)
        return CKR_ARGUMENTS_BAD;
    route_state_current();
    route_sess *s = calloc(1, sizeof *s);
    if (!s)
        return CKR_HOST_MEMORY;
    s->flags = flags & (CKF_SERIAL_SESSION | CKF_RW_SESSION);
    for (int i = 0; i < OP_COUNT; i++)
        s->op_side[i] = -1;
    s->refs = 1;
    pthread_mutex_lock(&route_lock);
    if (ntable == captable) {
        size_t cap = captable ? captable * 2 : 64;
        route_sess **t = realloc(table, cap * sizeof *t);
        if (!t || ntable >= ROUTE_HANDLE_MAX) {
            pthread_mutex_unlock(&route_lock);
            free(s);
            return CKR_HOST_MEMORY;
        }
        table = t;
        captable = cap;
    }
    table[ntable++] = s;
    s->h = ntable;
    live++;
    pthread_mutex_unlock(&route_lock);
    *ph = s->h;
    return CKR_OK;
}

static void logout_sides(void)
{
    for (int i = 0; i < ROUTE_SIDES; i++)
        if (atomic_load(&route_g.side[i].up) && route_g.side[i].anchor)
            route_g.side[i].fl->C_Logout(route_g.side[i].anchor);
}

static CK_RV close_one(CK_SESSION_HANDLE h)
{
    pthread_mutex_lock(&route_lock);
    route_sess *s = h >= 1 && h <= ntable ? table[h - 1] : NULL;
    if (!s || s->closed) {
        pthread_mutex_unlock(&route_lock);
        return CKR_SESSION_HANDLE_INVALID;
    }
    s->closed = 1;
    table[h - 1] = NULL;
    live--;
    int last_session = live == 0 && route_g.logged_in;
    int last = --s->refs == 0;
    pthread_mutex_unlock(&route_lock);
    if (last)
        destroy(s, 1);
    if (last_session) {          /* PKCS#11: closing the last session logs the user out */
        logout_sides();
        pthread_mutex_lock(&route_lock);
        route_obj_drop_private();
        pthread_mutex_unlock(&route_lock);
        route_pin_wipe();
    }
    return CKR_OK;
}

CK_RV route_C_CloseSession(CK_SESSION_HANDLE h)
{
    ROUTE_CHECK_INIT();
    return close_one(h);
}

CK_RV route_C_CloseAllSessions(CK_SLOT_ID slot)
{
    ROUTE_CHECK_INIT();
    if (slot != ROUTE_SLOT_ID)
        return CKR_SLOT_ID_INVALID;
    pthread_mutex_lock(&route_lock);
    size_t n = ntable;
    pthread_mutex_unlock(&route_lock);
    for (size_t i = 1; i <= n; i++)
        close_one(i);
    return CKR_OK;
}

CK_RV route_C_GetSessionInfo(CK_SESSION_HANDLE h, CK_SESSION_INFO_PTR p)
{
    ROUTE_CHECK_INIT();
    if (!p)
        return CKR_ARGUMENTS_BAD;
    route_sess *s = route_sess_get(h);
    if (!s)
        return CKR_SESSION_HANDLE_INVALID;
    pthread_mutex_lock(&route_lock);
    int in = route_g.logged_in;
    CK_USER_TYPE u = route_g.user;
    pthread_mutex_unlock(&route_lock);
    memset(p, 0, sizeof *p);
    p->slotID = ROUTE_SLOT_ID;
    p->flags = s->flags;
    int rw = (s->flags & CKF_RW_SESSION) != 0;
    if (!in)
        p->state = rw ? CKS_RW_PUBLIC_SESSION : CKS_RO_PUBLIC_SESSION;
    else if (u == CKU_SO)
        p->state = CKS_RW_SO_FUNCTIONS;
    else
        p->state = rw ? CKS_RW_USER_FUNCTIONS : CKS_RO_USER_FUNCTIONS;
    route_sess_put(s);
    return CKR_OK;
}

CK_RV route_C_Login(CK_SESSION_HANDLE h, CK_USER_TYPE user, CK_UTF8CHAR_PTR pin, CK_ULONG len)
{
    ROUTE_CHECK_INIT();
    route_sess *s = route_sess_get(h);
    if (!s)
        return CKR_SESSION_HANDLE_INVALID;
    CK_RV rv = CKR_OK;
    char b[48];
    if (user == CKU_CONTEXT_SPECIFIC) {
        /* for the operation running in this session, on its side */
        int side = s->op_side[OP_SIGN] >= 0 ? s->op_side[OP_SIGN] : s->op_side[OP_DEC];
        CK_SESSION_HANDLE bs;
        if (side < 0)
            rv = CKR_OPERATION_NOT_INITIALIZED;
        else if ((rv = route_sess_backend(s, side, &bs)) == CKR_OK)
            rv = route_g.side[side].fl->C_Login(bs, user, pin, len);
        route_sess_put(s);
        return rv;
    }
    pthread_mutex_lock(&route_lock);
    int already = route_g.logged_in;
    pthread_mutex_unlock(&route_lock);
    if (already) {
        route_sess_put(s);
        return CKR_USER_ALREADY_LOGGED_IN;
    }
    int ok[ROUTE_SIDES] = {0, 0}, nok = 0;
    CK_RV refused = CKR_OK, down = CKR_OK;
    for (int i = 0; i < ROUTE_SIDES; i++) {
        if (!route_side_usable(i))
            continue;
        route_side *sd = &route_g.side[i];
        CK_RV r = sd->fl->C_Login(sd->anchor, user, pin, len);
        if (r == CKR_OK || r == CKR_USER_ALREADY_LOGGED_IN) {
            ok[i] = 1;
            nok++;
        } else if (route_rv_is_down(r)) {
            route_side_failed(i, r, "C_Login");
            down = r;
        } else {
            route_stat_error(i, r);
            route_log("C_Login refused by %s: %s", route_side_name[i], route_rv_name(r, b, sizeof b));
            refused = r;
            break;          /* never spend the other side's PIN tries on a PIN one refused */
        }
    }
    if (refused != CKR_OK || nok == 0) {
        for (int i = 0; i < ROUTE_SIDES; i++)
            if (ok[i])
                route_g.side[i].fl->C_Logout(route_g.side[i].anchor);
        route_sess_put(s);
        return refused != CKR_OK ? refused : (down != CKR_OK ? down : CKR_DEVICE_ERROR);
    }
    /* the PIN, kept to log a side back in after it was down */
    size_t cap = len + 1 < 64 ? 64 : len + 1;
    unsigned char *p = malloc(cap);
    if (p) {
        if (mlock(p, cap) != 0)
            route_log("C_Login: mlock failed; the PIN is kept in memory that may be swapped");
        memcpy(p, pin, len);
    }
    pthread_mutex_lock(&route_lock);
    route_g.logged_in = 1;
    route_g.user = user;
    unsigned char *old = route_g.pin;
    size_t oldcap = route_g.pin_cap;
    route_g.pin = p;
    route_g.pin_len = p ? len : 0;
    route_g.pin_cap = p ? cap : 0;
    pthread_mutex_unlock(&route_lock);
    if (old) {
        explicit_bzero(old, oldcap);
        munlock(old, oldcap);
        free(old);
    }
    route_sess_put(s);
    return CKR_OK;
}

CK_RV route_C_Logout(CK_SESSION_HANDLE h)
{
    ROUTE_CHECK_INIT();
    route_sess *s = route_sess_get(h);
    if (!s)
        return CKR_SESSION_HANDLE_INVALID;
    pthread_mutex_lock(&route_lock);
    int in = route_g.logged_in;
    pthread_mutex_unlock(&route_lock);
    route_sess_put(s);
    if (!in)
        return CKR_USER_NOT_LOGGED_IN;
    logout_sides();
    pthread_mutex_lock(&route_lock);
    route_obj_drop_private();
    pthread_mutex_unlock(&route_lock);
    route_pin_wipe();
    return CKR_OK;
}

CK_RV route_C_InitToken(CK_SLOT_ID a, CK_UTF8CHAR_PTR b, CK_ULONG c, CK_UTF8CHAR_PTR d)
{
    (void)a; (void)b; (void)c; (void)d;
    ROUTE_CHECK_INIT();
    return CKR_FUNCTION_NOT_SUPPORTED;   /* the operator initialises blue and green themselves */
}

CK_RV route_C_InitPIN(CK_SESSION_HANDLE a, CK_UTF8CHAR_PTR b, CK_ULONG c)
{
    (void)a; (void)b; (void)c;
    ROUTE_CHECK_INIT();
    return CKR_FUNCTION_NOT_SUPPORTED;
}

CK_RV route_C_SetPIN(CK_SESSION_HANDLE a, CK_UTF8CHAR_PTR b, CK_ULONG c, CK_UTF8CHAR_PTR d,
                     CK_ULONG e)
{
    (void)a; (void)b; (void)c; (void)d; (void)e;
    ROUTE_CHECK_INIT();
    return CKR_FUNCTION_NOT_SUPPORTED;
}

CK_RV route_C_GetOperationState(CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG_PTR c)
{
    (void)a; (void)b; (void)c;
    ROUTE_CHECK_INIT();
    return CKR_FUNCTION_NOT_SUPPORTED;
}

CK_RV route_C_SetOperationState(CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c,
                                CK_OBJECT_HANDLE d, CK_OBJECT_HANDLE e)
{
    (void)a; (void)b; (void)c; (void)d; (void)e;
    ROUTE_CHECK_INIT();
    return CKR_FUNCTION_NOT_SUPPORTED;
}

CK_RV route_C_GetFunctionStatus(CK_SESSION_HANDLE h)
{
    (void)h;
    ROUTE_CHECK_INIT();
    return CKR_FUNCTION_NOT_PARALLEL;
}

CK_RV route_C_CancelFunction(CK_SESSION_HANDLE h)
{
    (void)h;
    ROUTE_CHECK_INIT();
    return CKR_FUNCTION_NOT_PARALLEL;
}
