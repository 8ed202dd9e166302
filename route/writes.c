/* writes.c - token writes go to the write side, whatever the weights, and each one is
 * appended and fsync'd to the birth journal (STATE.births) before it is reported; in
 * limited-write mode they are refused with CKR_TOKEN_WRITE_PROTECTED. A session object is
 * made on the side chosen for that call, and used there. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "route.h"
#include "functions.h"

static void hex(char *out, const unsigned char *p, CK_ULONG n)
{
    for (CK_ULONG i = 0; i < n; i++)
        snprintf(out + 2 * i, 3, "%02x", p[i]);
    out[2 * n] = '\0';
}

static size_t json_str(char *out, size_t cap, const char *s)
{
    size_t n = 0;
    for (; *s && n + 8 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            out[n++] = '\\';
            out[n++] = (char)c;
        } else if (c < 0x20)
            n += (size_t)snprintf(out + n, cap - n, "\\u%04x", c);
        else
            out[n++] = (char)c;
    }
    out[n] = '\0';
    return n;
}

int route_birth(int side, const char *op, const route_obj *o, const route_obj *was)
{
    char line[2200], idh[129], lab[600], cls[48], fp[40] = "";
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char when[40];
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
    hex(idh, o->id, o->id_len);
    json_str(lab, sizeof lab, o->label);
    hsm_name_or_hex(HSM_NS_CKO, o->cls, cls, sizeof cls);
    const char *fpk = NULL;
    if (o->kcv_len) {
        hex(fp, o->kcv, o->kcv_len);
        fpk = "kcv";
    } else if (o->has_fp[side]) {
        hex(fp, o->fp[side], 8);
        fpk = "fingerprint";
    }
    pthread_mutex_lock(&route_lock);
    unsigned long long gen = route_g.state ? route_g.state->generation : 0;
    pthread_mutex_unlock(&route_lock);
    char extra[900] = "";
    int used = 0;
    if (fpk)
        used = snprintf(extra, sizeof extra, ",\"%s\":\"%s\"", fpk, fp);
    /* A change of identity (CKA_ID, CKA_LABEL): what it was, so a sync can find the twin. */
    if (was && (was->id_len != o->id_len || memcmp(was->id, o->id, o->id_len) != 0 ||
                strcmp(was->label, o->label) != 0)) {
        char wid[129], wlab[600];
        hex(wid, was->id, was->id_len);
        json_str(wlab, sizeof wlab, was->label);
        snprintf(extra + used, sizeof extra - (size_t)used, ",\"was_id\":\"%s\",\"was_label\":\"%s\"",
                 wid, wlab);
    }
    snprintf(line, sizeof line,
             "{\"time\":\"%s.%03ldZ\",\"pid\":%ld,\"generation\":%llu,\"side\":\"%s\","
             "\"op\":\"%s\",\"class\":\"%s\",\"id\":\"%s\",\"label\":\"%s\"%s}\n",
             when, ts.tv_nsec / 1000000, (long)getpid(), gen, route_side_name[side], op, cls,
             idh, lab, extra);
    int fd = route_open_shared(route_g.births_path);
    if (fd < 0) {
        route_log("birth journal %s: cannot open (%s)", route_g.births_path, strerror(errno));
        return -1;
    }
    ssize_t w = write(fd, line, strlen(line));
    int ok = w == (ssize_t)strlen(line) && fsync(fd) == 0;
    close(fd);
    if (!ok)
        route_log("birth journal %s: cannot append", route_g.births_path);
    return ok ? 0 : -1;
}

static int tmpl_bool(CK_ATTRIBUTE_PTR t, CK_ULONG n, CK_ATTRIBUTE_TYPE type, int dflt)
{
    for (CK_ULONG i = 0; t && i < n; i++)
        if (t[i].type == type && t[i].pValue && t[i].ulValueLen == sizeof(CK_BBOOL))
            return *(CK_BBOOL *)t[i].pValue != CK_FALSE;
    return dflt;
}

/* The side a write goes to. need: the sides holding the objects it uses (3 for none). */
static CK_RV where(route_sess *s, int token, unsigned need, const char *fn, int *side,
                   CK_SESSION_HANDLE *bs)
{
    const route_state *st = route_state_current();
    if (token) {
        *side = st->write_side;
        if (st->mode == ROUTE_MODE_LIMITED_WRITE) {
            atomic_fetch_add(&route_st[*side].refusals, 1);
            route_log("%s: token write refused (limited-write mode, generation %llu)", fn,
                      st->generation);
            return CKR_TOKEN_WRITE_PROTECTED;
        }
        if (!(need & (1u << *side))) {
            route_log("%s: the object it needs is not on the write side (%s); refused", fn,
                      route_side_name[*side]);
            atomic_fetch_add(&route_st[*side].misses, 1);
            return CKR_KEY_HANDLE_INVALID;
        }
        if (!route_side_usable(*side))
            return CKR_DEVICE_ERROR;
    } else {
        int missed = 0;
        *side = route_choose(need, st, &missed);
        if (*side < 0)
            return CKR_DEVICE_ERROR;
        if (missed)
            atomic_fetch_add(&route_st[*side].misses, 1);
    }
    return route_sess_backend(s, *side, bs);
}

static CK_RV handles_of(CK_OBJECT_HANDLE h, CK_OBJECT_HANDLE bh[ROUTE_SIDES], unsigned *mask,
                        route_obj *copy, CK_RV invalid)
{
    pthread_mutex_lock(&route_lock);
    route_obj *o = route_obj_get(h);
    *mask = 0;
    if (o) {
        for (int i = 0; i < ROUTE_SIDES; i++) {
            bh[i] = o->h[i];
            if (o->h[i])
                *mask |= 1u << i;
        }
        if (copy)
            *copy = *o;
    }
    pthread_mutex_unlock(&route_lock);
    return o ? CKR_OK : invalid;
}

/* A new object on side: identity read, journalled when it is a token object, registered. */
static CK_RV born(route_sess *s, int side, CK_SESSION_HANDLE bs, CK_OBJECT_HANDLE bh,
                  const char *fn, CK_OBJECT_HANDLE *out)
{
    route_obj id;
    CK_RV rv = route_obj_identity(side, bs, bh, &id);
    if (rv != CKR_OK)
        return rv;
    id.owner = id.token ? 0 : s->h;
    if (id.token) {
        if (route_birth(side, fn, &id, NULL) != 0) {
            route_g.side[side].fl->C_DestroyObject(bs, bh);   /* unrecorded: not kept */
            route_log("%s: the new object was destroyed again: it could not be journalled", fn);
            return CKR_FUNCTION_FAILED;
        }
        atomic_fetch_add(&route_st[side].writes, 1);
    }
    pthread_mutex_lock(&route_lock);
    CK_OBJECT_HANDLE rh = route_obj_register(side, bh, &id);
    pthread_mutex_unlock(&route_lock);
    if (!rh)
        return CKR_HOST_MEMORY;
    *out = rh;
    return CKR_OK;
}

#define SESSION_OR_FAIL()                                                      \
    route_sess *s = route_sess_get(h);                                         \
    if (!s)                                                                    \
        return CKR_SESSION_HANDLE_INVALID

CK_RV route_C_CreateObject(CK_SESSION_HANDLE h, CK_ATTRIBUTE_PTR t, CK_ULONG n,
                           CK_OBJECT_HANDLE_PTR out)
{
    ROUTE_CHECK_INIT();
    if (!out)
        return CKR_ARGUMENTS_BAD;
    SESSION_OR_FAIL();
    int side;
    CK_SESSION_HANDLE bs;
    CK_RV rv = where(s, tmpl_bool(t, n, CKA_TOKEN, 0), 3, "C_CreateObject", &side, &bs);
    if (rv == CKR_OK) {
        CK_OBJECT_HANDLE bh;
        long long t0 = route_now_us();
        rv = route_g.side[side].fl->C_CreateObject(bs, t, n, &bh);
        route_stat_op(side, t0, rv);
        route_side_failed(side, rv, "C_CreateObject");
        if (rv == CKR_OK)
            rv = born(s, side, bs, bh, "C_CreateObject", out);
    }
    route_sess_put(s);
    return rv;
}

CK_RV route_C_GenerateKey(CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_ATTRIBUTE_PTR t,
                          CK_ULONG n, CK_OBJECT_HANDLE_PTR out)
{
    ROUTE_CHECK_INIT();
    if (!out)
        return CKR_ARGUMENTS_BAD;
    SESSION_OR_FAIL();
    int side;
    CK_SESSION_HANDLE bs;
    CK_RV rv = where(s, tmpl_bool(t, n, CKA_TOKEN, 0), 3, "C_GenerateKey", &side, &bs);
    if (rv == CKR_OK) {
        CK_OBJECT_HANDLE bh;
        long long t0 = route_now_us();
        rv = route_g.side[side].fl->C_GenerateKey(bs, m, t, n, &bh);
        route_stat_op(side, t0, rv);
        route_side_failed(side, rv, "C_GenerateKey");
        if (rv == CKR_OK)
            rv = born(s, side, bs, bh, "C_GenerateKey", out);
    }
    route_sess_put(s);
    return rv;
}

CK_RV route_C_GenerateKeyPair(CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_ATTRIBUTE_PTR pt,
                              CK_ULONG pn, CK_ATTRIBUTE_PTR vt, CK_ULONG vn,
                              CK_OBJECT_HANDLE_PTR pub, CK_OBJECT_HANDLE_PTR priv)
{
    ROUTE_CHECK_INIT();
    if (!pub || !priv)
        return CKR_ARGUMENTS_BAD;
    SESSION_OR_FAIL();
    int side;
    CK_SESSION_HANDLE bs;
    int token = tmpl_bool(pt, pn, CKA_TOKEN, 0) || tmpl_bool(vt, vn, CKA_TOKEN, 0);
    CK_RV rv = where(s, token, 3, "C_GenerateKeyPair", &side, &bs);
    if (rv == CKR_OK) {
        CK_OBJECT_HANDLE bpub, bpriv;
        long long t0 = route_now_us();
        rv = route_g.side[side].fl->C_GenerateKeyPair(bs, m, pt, pn, vt, vn, &bpub, &bpriv);
        route_stat_op(side, t0, rv);
        route_side_failed(side, rv, "C_GenerateKeyPair");
        if (rv == CKR_OK)
            rv = born(s, side, bs, bpub, "C_GenerateKeyPair", pub);
        if (rv == CKR_OK)
            rv = born(s, side, bs, bpriv, "C_GenerateKeyPair", priv);
    }
    route_sess_put(s);
    return rv;
}

CK_RV route_C_UnwrapKey(CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE uk,
                        CK_BYTE_PTR blob, CK_ULONG bl, CK_ATTRIBUTE_PTR t, CK_ULONG n,
                        CK_OBJECT_HANDLE_PTR out)
{
    ROUTE_CHECK_INIT();
    if (!out)
        return CKR_ARGUMENTS_BAD;
    SESSION_OR_FAIL();
    CK_OBJECT_HANDLE bu[ROUTE_SIDES];
    unsigned mask;
    CK_RV rv = handles_of(uk, bu, &mask, NULL, CKR_UNWRAPPING_KEY_HANDLE_INVALID);
    int side;
    CK_SESSION_HANDLE bs;
    if (rv == CKR_OK)
        rv = where(s, tmpl_bool(t, n, CKA_TOKEN, 0), mask, "C_UnwrapKey", &side, &bs);
    if (rv == CKR_OK) {
        CK_OBJECT_HANDLE bh;
        long long t0 = route_now_us();
        rv = route_g.side[side].fl->C_UnwrapKey(bs, m, bu[side], blob, bl, t, n, &bh);
        route_stat_op(side, t0, rv);
        route_side_failed(side, rv, "C_UnwrapKey");
        if (rv == CKR_OK)
            rv = born(s, side, bs, bh, "C_UnwrapKey", out);
    }
    route_sess_put(s);
    return rv;
}

CK_RV route_C_DeriveKey(CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE base,
                        CK_ATTRIBUTE_PTR t, CK_ULONG n, CK_OBJECT_HANDLE_PTR out)
{
    ROUTE_CHECK_INIT();
    SESSION_OR_FAIL();
    CK_OBJECT_HANDLE bb[ROUTE_SIDES];
    unsigned mask;
    CK_RV rv = handles_of(base, bb, &mask, NULL, CKR_KEY_HANDLE_INVALID);
    int side;
    CK_SESSION_HANDLE bs;
    if (rv == CKR_OK)
        rv = where(s, tmpl_bool(t, n, CKA_TOKEN, 0), mask, "C_DeriveKey", &side, &bs);
    if (rv == CKR_OK) {
        CK_OBJECT_HANDLE bh = 0;
        long long t0 = route_now_us();
        rv = route_g.side[side].fl->C_DeriveKey(bs, m, bb[side], t, n, out ? &bh : NULL);
        route_stat_op(side, t0, rv);
        route_side_failed(side, rv, "C_DeriveKey");
        if (rv == CKR_OK && out)
            rv = born(s, side, bs, bh, "C_DeriveKey", out);
    }
    route_sess_put(s);
    return rv;
}

CK_RV route_C_CopyObject(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_PTR t,
                         CK_ULONG n, CK_OBJECT_HANDLE_PTR out)
{
    ROUTE_CHECK_INIT();
    if (!out)
        return CKR_ARGUMENTS_BAD;
    SESSION_OR_FAIL();
    CK_OBJECT_HANDLE bo[ROUTE_SIDES];
    unsigned mask;
    route_obj src;
    CK_RV rv = handles_of(o, bo, &mask, &src, CKR_OBJECT_HANDLE_INVALID);
    int side;
    CK_SESSION_HANDLE bs;
    if (rv == CKR_OK)
        rv = where(s, tmpl_bool(t, n, CKA_TOKEN, src.token), mask, "C_CopyObject", &side, &bs);
    if (rv == CKR_OK) {
        CK_OBJECT_HANDLE bh;
        long long t0 = route_now_us();
        rv = route_g.side[side].fl->C_CopyObject(bs, bo[side], t, n, &bh);
        route_stat_op(side, t0, rv);
        route_side_failed(side, rv, "C_CopyObject");
        if (rv == CKR_OK)
            rv = born(s, side, bs, bh, "C_CopyObject", out);
    }
    route_sess_put(s);
    return rv;
}

CK_RV route_C_SetAttributeValue(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_PTR t,
                                CK_ULONG n)
{
    ROUTE_CHECK_INIT();
    SESSION_OR_FAIL();
    CK_OBJECT_HANDLE bo[ROUTE_SIDES];
    unsigned mask;
    route_obj cur;
    CK_RV rv = handles_of(o, bo, &mask, &cur, CKR_OBJECT_HANDLE_INVALID);
    int side;
    CK_SESSION_HANDLE bs;
    if (rv == CKR_OK)
        rv = where(s, cur.token, mask, "C_SetAttributeValue", &side, &bs);
    if (rv == CKR_OK) {
        long long t0 = route_now_us();
        rv = route_g.side[side].fl->C_SetAttributeValue(bs, bo[side], t, n);
        route_stat_op(side, t0, rv);
        route_side_failed(side, rv, "C_SetAttributeValue");
        if (rv == CKR_OK && cur.token) {
            route_obj now;
            if (route_obj_identity(side, bs, bo[side], &now) != CKR_OK)
                now = cur;
            if (route_birth(side, "C_SetAttributeValue", &now, &cur) != 0)
                rv = CKR_FUNCTION_FAILED;   /* changed but not journalled: say so */
            atomic_fetch_add(&route_st[side].writes, 1);
        }
    }
    route_sess_put(s);
    return rv;
}

CK_RV route_C_DestroyObject(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o)
{
    ROUTE_CHECK_INIT();
    SESSION_OR_FAIL();
    CK_OBJECT_HANDLE bo[ROUTE_SIDES];
    unsigned mask;
    route_obj cur;
    CK_RV rv = handles_of(o, bo, &mask, &cur, CKR_OBJECT_HANDLE_INVALID);
    int side = -1;
    CK_SESSION_HANDLE bs;
    if (rv == CKR_OK && !mask)
        rv = CKR_OBJECT_HANDLE_INVALID;
    if (rv == CKR_OK) {
        if (cur.token)
            rv = where(s, 1, mask, "C_DestroyObject", &side, &bs);
        else {
            side = bo[0] ? 0 : 1;   /* a session object lives on one side */
            rv = route_sess_backend(s, side, &bs);
        }
    }
    if (rv == CKR_OK) {
        long long t0 = route_now_us();
        rv = route_g.side[side].fl->C_DestroyObject(bs, bo[side]);
        route_stat_op(side, t0, rv);
        route_side_failed(side, rv, "C_DestroyObject");
        if (rv == CKR_OK) {
            if (cur.token) {
                if (route_birth(side, "C_DestroyObject", &cur, NULL) != 0)
                    rv = CKR_FUNCTION_FAILED;
                atomic_fetch_add(&route_st[side].writes, 1);
            }
            pthread_mutex_lock(&route_lock);
            route_obj_drop_side(o, side);
            pthread_mutex_unlock(&route_lock);
        }
    }
    route_sess_put(s);
    return rv;
}
