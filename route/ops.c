/* ops.c - operations follow the weights: each one, from its Init to its final call, runs
 * on one side chosen when it starts (among the sides that hold its key; a key on one side
 * only is used there and the miss counted). Also the union find and attribute reads. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "route.h"
#include "functions.h"

/* The sides that hold a route object, and its backend handles (copied out). */
static CK_RV object_sides(CK_OBJECT_HANDLE h, CK_OBJECT_HANDLE bh[ROUTE_SIDES], unsigned *mask,
                          CK_RV invalid)
{
    pthread_mutex_lock(&route_lock);
    route_obj *o = route_obj_get(h);
    *mask = 0;
    if (o)
        for (int i = 0; i < ROUTE_SIDES; i++) {
            bh[i] = o->h[i];
            if (o->h[i])
                *mask |= 1u << i;
        }
    pthread_mutex_unlock(&route_lock);
    return o && *mask ? CKR_OK : invalid;
}

/* Chooses the side for a new operation on key (or any side when key is 0) and opens the
 * backend session there. */
static CK_RV pick(route_sess *s, CK_OBJECT_HANDLE key, unsigned extra_mask, int *side,
                  CK_SESSION_HANDLE *bs, CK_OBJECT_HANDLE bh[ROUTE_SIDES])
{
    const route_state *st = route_state_current();
    unsigned mask = 3 & extra_mask;
    bh[0] = bh[1] = 0;
    if (key) {
        unsigned m;
        CK_RV rv = object_sides(key, bh, &m, CKR_KEY_HANDLE_INVALID);
        if (rv != CKR_OK)
            return rv;
        mask &= m;
        if (!mask)
            return CKR_KEY_HANDLE_INVALID;
    }
    int missed = 0;
    *side = route_choose(mask, st, &missed);
    if (*side < 0)
        return CKR_DEVICE_ERROR;
    if (missed)
        atomic_fetch_add(&route_st[*side].misses, 1);
    return route_sess_backend(s, *side, bs);
}

static void op_done(route_sess *s, int cat, int side, CK_RV rv, const char *fn)
{
    s->op_side[cat] = -1;
    route_stat_op(side, s->op_t0[cat], rv);
    if (rv != CKR_OK)
        route_side_failed(side, rv, fn);
}

/* Init with a key: chosen side, retried once on the other side when the first is down. */
#define KEY_INIT(NAME, CAT)                                                              \
    CK_RV route_##NAME(CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE k)      \
    {                                                                                    \
        ROUTE_CHECK_INIT();                                                                    \
        route_sess *s = route_sess_get(h);                                               \
        if (!s)                                                                          \
            return CKR_SESSION_HANDLE_INVALID;                                           \
        if (s->op_side[CAT] >= 0) {                                                      \
            route_sess_put(s);                                                           \
            return CKR_OPERATION_ACTIVE;                                                 \
        }                                                                                \
        CK_RV rv = CKR_OK;                                                               \
        unsigned allow = 3;                                                              \
        for (int attempt = 0; attempt < 2; attempt++) {                                  \
            int side;                                                                    \
            CK_SESSION_HANDLE bs;                                                        \
            CK_OBJECT_HANDLE bh[ROUTE_SIDES];                                            \
            rv = pick(s, k, allow, &side, &bs, bh);                                      \
            if (rv != CKR_OK)                                                            \
                break;                                                                   \
            long long t0 = route_now_us();                                               \
            rv = route_g.side[side].fl->NAME(bs, m, bh[side]);                           \
            if (rv == CKR_OK) {                                                          \
                s->op_side[CAT] = side;                                                  \
                s->op_t0[CAT] = t0;                                                      \
                break;                                                                   \
            }                                                                            \
            route_stat_op(side, t0, rv);                                                 \
            route_side_failed(side, rv, #NAME);                                          \
            if (!route_rv_is_down(rv))                                                   \
                break;                                                                   \
            allow = 1u << (1 - side);                                                    \
        }                                                                                \
        route_sess_put(s);                                                               \
        return rv;                                                                       \
    }

/* Single-part or final call with output: ends the operation unless it only asked for
 * the length or the buffer was too small. */
#define OUT_CALL(NAME, CAT, PARAMS, ARGS, OUT)                                           \
    CK_RV route_##NAME PARAMS                                                            \
    {                                                                                    \
        ROUTE_CHECK_INIT();                                                                    \
        route_sess *s = route_sess_get(h);                                               \
        if (!s)                                                                          \
            return CKR_SESSION_HANDLE_INVALID;                                           \
        int side = s->op_side[CAT];                                                      \
        if (side < 0) {                                                                  \
            route_sess_put(s);                                                           \
            return CKR_OPERATION_NOT_INITIALIZED;                                        \
        }                                                                                \
        CK_SESSION_HANDLE bs = s->bs[side];                                              \
        CK_RV rv = route_g.side[side].fl->NAME ARGS;                                     \
        if (rv != CKR_BUFFER_TOO_SMALL && !(rv == CKR_OK && (OUT) == NULL))              \
            op_done(s, CAT, side, rv, #NAME);                                            \
        route_sess_put(s);                                                               \
        return rv;                                                                       \
    }

/* Update calls: an error ends the operation. */
#define UPDATE_CALL(NAME, CAT, PARAMS, ARGS)                                             \
    CK_RV route_##NAME PARAMS                                                            \
    {                                                                                    \
        ROUTE_CHECK_INIT();                                                                    \
        route_sess *s = route_sess_get(h);                                               \
        if (!s)                                                                          \
            return CKR_SESSION_HANDLE_INVALID;                                           \
        int side = s->op_side[CAT];                                                      \
        if (side < 0) {                                                                  \
            route_sess_put(s);                                                           \
            return CKR_OPERATION_NOT_INITIALIZED;                                        \
        }                                                                                \
        CK_SESSION_HANDLE bs = s->bs[side];                                              \
        CK_RV rv = route_g.side[side].fl->NAME ARGS;                                     \
        if (rv != CKR_OK)                                                                \
            op_done(s, CAT, side, rv, #NAME);                                            \
        route_sess_put(s);                                                               \
        return rv;                                                                       \
    }

/* Verify and VerifyFinal: always the end. */
#define END_CALL(NAME, CAT, PARAMS, ARGS)                                                \
    CK_RV route_##NAME PARAMS                                                            \
    {                                                                                    \
        ROUTE_CHECK_INIT();                                                                    \
        route_sess *s = route_sess_get(h);                                               \
        if (!s)                                                                          \
            return CKR_SESSION_HANDLE_INVALID;                                           \
        int side = s->op_side[CAT];                                                      \
        if (side < 0) {                                                                  \
            route_sess_put(s);                                                           \
            return CKR_OPERATION_NOT_INITIALIZED;                                        \
        }                                                                                \
        CK_SESSION_HANDLE bs = s->bs[side];                                              \
        CK_RV rv = route_g.side[side].fl->NAME ARGS;                                     \
        op_done(s, CAT, side,                                                            \
                rv == CKR_SIGNATURE_INVALID || rv == CKR_SIGNATURE_LEN_RANGE ? CKR_OK : rv, \
                #NAME);                                                                  \
        route_sess_put(s);                                                               \
        return rv;                                                                       \
    }

#define IN_OUT (CK_SESSION_HANDLE h, CK_BYTE_PTR in, CK_ULONG inl, CK_BYTE_PTR out, CK_ULONG_PTR outl)
#define IN_OUT_ARGS (bs, in, inl, out, outl)
#define FIN (CK_SESSION_HANDLE h, CK_BYTE_PTR out, CK_ULONG_PTR outl)
#define FIN_ARGS (bs, out, outl)
#define UPD (CK_SESSION_HANDLE h, CK_BYTE_PTR in, CK_ULONG inl)
#define UPD_ARGS (bs, in, inl)

KEY_INIT(C_EncryptInit, OP_ENC)
OUT_CALL(C_Encrypt, OP_ENC, IN_OUT, IN_OUT_ARGS, out)
OUT_CALL(C_EncryptUpdate, OP_ENC, IN_OUT, IN_OUT_ARGS, (void *)1)
OUT_CALL(C_EncryptFinal, OP_ENC, FIN, FIN_ARGS, out)
KEY_INIT(C_DecryptInit, OP_DEC)
OUT_CALL(C_Decrypt, OP_DEC, IN_OUT, IN_OUT_ARGS, out)
OUT_CALL(C_DecryptUpdate, OP_DEC, IN_OUT, IN_OUT_ARGS, (void *)1)
OUT_CALL(C_DecryptFinal, OP_DEC, FIN, FIN_ARGS, out)
KEY_INIT(C_SignInit, OP_SIGN)
OUT_CALL(C_Sign, OP_SIGN, IN_OUT, IN_OUT_ARGS, out)
UPDATE_CALL(C_SignUpdate, OP_SIGN, UPD, UPD_ARGS)
OUT_CALL(C_SignFinal, OP_SIGN, FIN, FIN_ARGS, out)
KEY_INIT(C_SignRecoverInit, OP_SIGN)
OUT_CALL(C_SignRecover, OP_SIGN, IN_OUT, IN_OUT_ARGS, out)
KEY_INIT(C_VerifyInit, OP_VER)
END_CALL(C_Verify, OP_VER,
         (CK_SESSION_HANDLE h, CK_BYTE_PTR in, CK_ULONG inl, CK_BYTE_PTR sig, CK_ULONG sigl),
         (bs, in, inl, sig, sigl))
UPDATE_CALL(C_VerifyUpdate, OP_VER, UPD, UPD_ARGS)
END_CALL(C_VerifyFinal, OP_VER, (CK_SESSION_HANDLE h, CK_BYTE_PTR sig, CK_ULONG sigl),
         (bs, sig, sigl))
KEY_INIT(C_VerifyRecoverInit, OP_VER)
OUT_CALL(C_VerifyRecover, OP_VER, IN_OUT, IN_OUT_ARGS, out)
OUT_CALL(C_Digest, OP_DIG, IN_OUT, IN_OUT_ARGS, out)
UPDATE_CALL(C_DigestUpdate, OP_DIG, UPD, UPD_ARGS)
OUT_CALL(C_DigestFinal, OP_DIG, FIN, FIN_ARGS, out)

CK_RV route_C_DigestInit(CK_SESSION_HANDLE h, CK_MECHANISM_PTR m)
{
    ROUTE_CHECK_INIT();
    route_sess *s = route_sess_get(h);
    if (!s)
        return CKR_SESSION_HANDLE_INVALID;
    if (s->op_side[OP_DIG] >= 0) {
        route_sess_put(s);
        return CKR_OPERATION_ACTIVE;
    }
    int side;
    CK_SESSION_HANDLE bs;
    CK_OBJECT_HANDLE bh[ROUTE_SIDES];
    CK_RV rv = pick(s, 0, 3, &side, &bs, bh);
    if (rv == CKR_OK) {
        long long t0 = route_now_us();
        rv = route_g.side[side].fl->C_DigestInit(bs, m);
        if (rv == CKR_OK) {
            s->op_side[OP_DIG] = side;
            s->op_t0[OP_DIG] = t0;
        } else {
            route_stat_op(side, t0, rv);
            route_side_failed(side, rv, "C_DigestInit");
        }
    }
    route_sess_put(s);
    return rv;
}

CK_RV route_C_DigestKey(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE k)
{
    ROUTE_CHECK_INIT();
    route_sess *s = route_sess_get(h);
    if (!s)
        return CKR_SESSION_HANDLE_INVALID;
    int side = s->op_side[OP_DIG];
    CK_RV rv;
    CK_OBJECT_HANDLE bh[ROUTE_SIDES];
    unsigned mask;
    if (side < 0)
        rv = CKR_OPERATION_NOT_INITIALIZED;
    else if ((rv = object_sides(k, bh, &mask, CKR_KEY_HANDLE_INVALID)) == CKR_OK) {
        if (!(mask & (1u << side)))
            rv = CKR_KEY_HANDLE_INVALID;    /* the digest runs where the key is not */
        else
            rv = route_g.side[side].fl->C_DigestKey(s->bs[side], bh[side]);
        if (rv != CKR_OK)
            op_done(s, OP_DIG, side, rv, "C_DigestKey");
    }
    route_sess_put(s);
    return rv;
}

/* ------------------------------------------------------------------ find: the union */
static int cmp_handle(const void *a, const void *b)
{
    CK_OBJECT_HANDLE x = *(const CK_OBJECT_HANDLE *)a, y = *(const CK_OBJECT_HANDLE *)b;
    return x < y ? -1 : x > y;
}

static CK_RV find_side(int side, CK_SESSION_HANDLE bs, CK_ATTRIBUTE_PTR t, CK_ULONG n,
                       CK_OBJECT_HANDLE **out, CK_ULONG *nout)
{
    CK_FUNCTION_LIST *fl = route_g.side[side].fl;
    *out = NULL;
    *nout = 0;
    CK_RV rv = fl->C_FindObjectsInit(bs, t, n);
    if (rv != CKR_OK)
        return rv;
    CK_ULONG cap = 0, got = 0;
    CK_OBJECT_HANDLE *list = NULL;
    for (;;) {
        if (got + 1024 > cap) {
            cap = cap ? cap * 2 : 1024;
            CK_OBJECT_HANDLE *p = realloc(list, cap * sizeof *p);
            if (!p) {
                rv = CKR_HOST_MEMORY;
                break;
            }
            list = p;
        }
        CK_ULONG k = 0;
        rv = fl->C_FindObjects(bs, list + got, 1024, &k);
        if (rv != CKR_OK || k == 0)
            break;
        got += k;
    }
    CK_RV frv = fl->C_FindObjectsFinal(bs);
    if (rv == CKR_OK)
        rv = frv;
    if (rv != CKR_OK) {
        free(list);
        return rv;
    }
    *out = list;
    *nout = got;
    return CKR_OK;
}

/* One side's search, for a thread of its own. */
typedef struct {
    int side;
    CK_SESSION_HANDLE bs;
    CK_ATTRIBUTE_PTR t;
    CK_ULONG n;
    CK_OBJECT_HANDLE *list;
    CK_ULONG nlist;
    long long t0;
    CK_RV rv;        /* the backend session's, then the search's */
} side_find;

static void *find_thread(void *p)
{
    side_find *f = p;
    if (f->rv == CKR_OK)
        f->rv = find_side(f->side, f->bs, f->t, f->n, &f->list, &f->nlist);
    return NULL;
}

/* A search on several sides: both at once where they are large (a union over 16,666 objects
 * a side then costs about one side's time, not two), in turn where a search is small or the
 * application forbids threads (CKF_LIBRARY_CANT_CREATE_OS_THREADS). */
static atomic_ulong last_find_size;
#define PARALLEL_FIND_MIN 512

static void find_sides(side_find *f, int count)
{
    pthread_t th;
    int threaded = 0;
    if (count == 2 && f[0].rv == CKR_OK && f[1].rv == CKR_OK && !route_g.no_threads &&
        atomic_load(&last_find_size) >= PARALLEL_FIND_MIN)
        threaded = pthread_create(&th, NULL, find_thread, &f[1]) == 0;
    find_thread(&f[0]);
    if (threaded)
        pthread_join(th, NULL);
    else
        for (int i = 1; i < count; i++)
            find_thread(&f[i]);
    unsigned long most = 0;
    for (int i = 0; i < count; i++)
        if (f[i].rv == CKR_OK && f[i].nlist > most)
            most = f[i].nlist;
    atomic_store(&last_find_size, most);
}

CK_RV route_C_FindObjectsInit(CK_SESSION_HANDLE h, CK_ATTRIBUTE_PTR t, CK_ULONG n)
{
    ROUTE_CHECK_INIT();
    if (n && !t)
        return CKR_ARGUMENTS_BAD;
    route_sess *s = route_sess_get(h);
    if (!s)
        return CKR_SESSION_HANDLE_INVALID;
    if (s->op_side[OP_FIND] >= 0) {
        route_sess_put(s);
        return CKR_OPERATION_ACTIVE;
    }
    route_state_current();
    CK_OBJECT_HANDLE *res = NULL;
    CK_ULONG nres = 0;
    CK_RV rv = CKR_OK;
    int asked = 0;
    side_find f[ROUTE_SIDES];
    int count = 0;
    for (int side = 0; side < ROUTE_SIDES; side++) {
        if (!route_side_usable(side))
            continue;
        side_find *x = &f[count++];
        *x = (side_find){.side = side, .t = t, .n = n, .t0 = route_now_us()};
        x->rv = route_sess_backend(s, side, &x->bs);
    }
    find_sides(f, count);
    for (int i = 0; i < count; i++) {
        side_find *x = &f[i];
        int side = x->side;
        CK_SESSION_HANDLE bs = x->bs;
        CK_OBJECT_HANDLE *bl = x->list;
        CK_ULONG nb = x->nlist;
        x->list = NULL;
        if (rv != CKR_OK) {
            free(bl);
            continue;
        }
        if (x->rv != CKR_OK) {
            route_stat_op(side, x->t0, x->rv);
            route_side_failed(side, x->rv, "C_FindObjects");
            if (!route_rv_is_down(x->rv))
                rv = x->rv;   /* a failed search is an error, never "no objects" */
            continue;
        }
        asked++;
        CK_OBJECT_HANDLE *p = realloc(res, (nres + nb + 1) * sizeof *p);
        if (!p) {
            free(bl);
            rv = CKR_HOST_MEMORY;
            continue;
        }
        res = p;
        /* known objects under one lock; the others need their identity read first */
        pthread_mutex_lock(&route_lock);
        CK_ULONG unknown = 0;
        for (CK_ULONG k = 0; k < nb; k++) {
            CK_OBJECT_HANDLE rh = route_obj_lookup(side, bl[k]);
            if (rh)
                res[nres++] = rh;
            else
                bl[unknown++] = bl[k];
        }
        pthread_mutex_unlock(&route_lock);
        for (CK_ULONG k = 0; k < unknown && rv == CKR_OK; k++) {
            route_obj id;
            CK_RV ir = route_obj_identity(side, bs, bl[k], &id);
            if (ir == CKR_OBJECT_HANDLE_INVALID)
                continue;        /* destroyed since the search */
            if (ir != CKR_OK) {
                rv = ir;
                break;
            }
            pthread_mutex_lock(&route_lock);
            CK_OBJECT_HANDLE rh = route_obj_register(side, bl[k], &id);
            pthread_mutex_unlock(&route_lock);
            if (!rh)
                rv = CKR_HOST_MEMORY;
            else
                res[nres++] = rh;
        }
        free(bl);
        route_stat_op(side, x->t0, rv);
    }
    if (rv == CKR_OK && !asked)
        rv = CKR_DEVICE_ERROR;
    if (rv != CKR_OK) {
        free(res);
        route_sess_put(s);
        return rv;
    }
    /* twins came back from both sides under one handle: each object once */
    qsort(res, nres, sizeof *res, cmp_handle);
    CK_ULONG u = 0;
    for (CK_ULONG i = 0; i < nres; i++)
        if (u == 0 || res[u - 1] != res[i])
            res[u++] = res[i];
    free(s->found);
    s->found = res;
    s->nfound = u;
    s->pos = 0;
    s->op_side[OP_FIND] = 0;
    route_sess_put(s);
    return CKR_OK;
}

CK_RV route_C_FindObjects(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE_PTR out, CK_ULONG max,
                          CK_ULONG_PTR n)
{
    ROUTE_CHECK_INIT();
    if (!n || (max && !out))
        return CKR_ARGUMENTS_BAD;
    route_sess *s = route_sess_get(h);
    if (!s)
        return CKR_SESSION_HANDLE_INVALID;
    CK_RV rv = CKR_OK;
    if (s->op_side[OP_FIND] < 0)
        rv = CKR_OPERATION_NOT_INITIALIZED;
    else {
        CK_ULONG k = 0;
        while (k < max && s->pos < s->nfound)
            out[k++] = s->found[s->pos++];
        *n = k;
    }
    route_sess_put(s);
    return rv;
}

CK_RV route_C_FindObjectsFinal(CK_SESSION_HANDLE h)
{
    ROUTE_CHECK_INIT();
    route_sess *s = route_sess_get(h);
    if (!s)
        return CKR_SESSION_HANDLE_INVALID;
    CK_RV rv = CKR_OK;
    if (s->op_side[OP_FIND] < 0)
        rv = CKR_OPERATION_NOT_INITIALIZED;
    free(s->found);
    s->found = NULL;
    s->nfound = s->pos = 0;
    s->op_side[OP_FIND] = -1;
    route_sess_put(s);
    return rv;
}

/* ------------------------------------------------------------------ reads */
CK_RV route_C_GetAttributeValue(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_PTR t,
                                CK_ULONG n)
{
    ROUTE_CHECK_INIT();
    route_sess *s = route_sess_get(h);
    if (!s)
        return CKR_SESSION_HANDLE_INVALID;
    CK_OBJECT_HANDLE bh[ROUTE_SIDES];
    unsigned mask;
    CK_RV rv = object_sides(o, bh, &mask, CKR_OBJECT_HANDLE_INVALID);
    if (rv == CKR_OK) {
        const route_state *st = route_state_current();
        int side = route_choose(mask, st, NULL);
        CK_SESSION_HANDLE bs;
        if (side < 0)
            rv = CKR_DEVICE_ERROR;
        else if ((rv = route_sess_backend(s, side, &bs)) == CKR_OK) {
            rv = route_g.side[side].fl->C_GetAttributeValue(bs, bh[side], t, n);
            route_side_failed(side, rv, "C_GetAttributeValue");
        }
    }
    route_sess_put(s);
    return rv;
}

CK_RV route_C_GetObjectSize(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o, CK_ULONG_PTR size)
{
    ROUTE_CHECK_INIT();
    route_sess *s = route_sess_get(h);
    if (!s)
        return CKR_SESSION_HANDLE_INVALID;
    CK_OBJECT_HANDLE bh[ROUTE_SIDES];
    unsigned mask;
    CK_RV rv = object_sides(o, bh, &mask, CKR_OBJECT_HANDLE_INVALID);
    if (rv == CKR_OK) {
        int side = route_choose(mask, route_state_current(), NULL);
        CK_SESSION_HANDLE bs;
        if (side < 0)
            rv = CKR_DEVICE_ERROR;
        else if ((rv = route_sess_backend(s, side, &bs)) == CKR_OK)
            rv = route_g.side[side].fl->C_GetObjectSize(bs, bh[side], size);
    }
    route_sess_put(s);
    return rv;
}

CK_RV route_C_WrapKey(CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE wk,
                      CK_OBJECT_HANDLE k, CK_BYTE_PTR out, CK_ULONG_PTR outl)
{
    ROUTE_CHECK_INIT();
    route_sess *s = route_sess_get(h);
    if (!s)
        return CKR_SESSION_HANDLE_INVALID;
    CK_OBJECT_HANDLE bw[ROUTE_SIDES], bk[ROUTE_SIDES];
    unsigned mw, mk;
    CK_RV rv = object_sides(wk, bw, &mw, CKR_WRAPPING_KEY_HANDLE_INVALID);
    if (rv == CKR_OK)
        rv = object_sides(k, bk, &mk, CKR_KEY_HANDLE_INVALID);
    if (rv == CKR_OK && !(mw & mk))
        rv = CKR_KEY_HANDLE_INVALID;    /* no side holds both keys */
    if (rv == CKR_OK) {
        int missed = 0;
        int side = route_choose(mw & mk, route_state_current(), &missed);
        CK_SESSION_HANDLE bs;
        if (side < 0)
            rv = CKR_DEVICE_ERROR;
        else if ((rv = route_sess_backend(s, side, &bs)) == CKR_OK) {
            if (missed)
                atomic_fetch_add(&route_st[side].misses, 1);
            long long t0 = route_now_us();
            rv = route_g.side[side].fl->C_WrapKey(bs, m, bw[side], bk[side], out, outl);
            route_stat_op(side, t0, rv);
            route_side_failed(side, rv, "C_WrapKey");
        }
    }
    route_sess_put(s);
    return rv;
}

CK_RV route_C_GenerateRandom(CK_SESSION_HANDLE h, CK_BYTE_PTR out, CK_ULONG n)
{
    ROUTE_CHECK_INIT();
    route_sess *s = route_sess_get(h);
    if (!s)
        return CKR_SESSION_HANDLE_INVALID;
    int side;
    CK_SESSION_HANDLE bs;
    CK_OBJECT_HANDLE bh[ROUTE_SIDES];
    CK_RV rv = pick(s, 0, 3, &side, &bs, bh);
    if (rv == CKR_OK) {
        long long t0 = route_now_us();
        rv = route_g.side[side].fl->C_GenerateRandom(bs, out, n);
        route_stat_op(side, t0, rv);
        route_side_failed(side, rv, "C_GenerateRandom");
    }
    route_sess_put(s);
    return rv;
}

CK_RV route_C_SeedRandom(CK_SESSION_HANDLE h, CK_BYTE_PTR in, CK_ULONG n)
{
    ROUTE_CHECK_INIT();
    route_sess *s = route_sess_get(h);
    if (!s)
        return CKR_SESSION_HANDLE_INVALID;
    CK_RV rv = CKR_OK;
    for (int side = 0; side < ROUTE_SIDES && rv == CKR_OK; side++) {
        CK_SESSION_HANDLE bs;
        if (!route_side_usable(side))
            continue;
        if ((rv = route_sess_backend(s, side, &bs)) == CKR_OK)
            rv = route_g.side[side].fl->C_SeedRandom(bs, in, n);
    }
    route_sess_put(s);
    return rv;
}

#define NOT_SUPPORTED4(NAME)                                                              \
    CK_RV route_##NAME(CK_SESSION_HANDLE h, CK_BYTE_PTR a, CK_ULONG b, CK_BYTE_PTR c,     \
                       CK_ULONG_PTR d)                                                    \
    {                                                                                     \
        (void)h; (void)a; (void)b; (void)c; (void)d;                                      \
        ROUTE_CHECK_INIT();                                                                     \
        return CKR_FUNCTION_NOT_SUPPORTED;                                                \
    }
NOT_SUPPORTED4(C_DigestEncryptUpdate)
NOT_SUPPORTED4(C_DecryptDigestUpdate)
NOT_SUPPORTED4(C_SignEncryptUpdate)
NOT_SUPPORTED4(C_DecryptVerifyUpdate)
