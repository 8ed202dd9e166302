/* handles.c - the handle table: one route handle per logical object, mapped to its twin on
 * each side (matched by class, CKA_ID and label), with a reverse index (side, backend
 * handle) -> route handle so a re-found object keeps its handle. Handles count up from 1
 * and are never reused within one C_Initialize. Everything here runs under route_lock,
 * except route_obj_identity, which calls the backend and takes no lock. */
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#include "route.h"

typedef struct node { uint64_t key; CK_OBJECT_HANDLE val; struct node *next; } node;
typedef struct { node **b; size_t nb, n; } map;

static route_obj **objs;
static size_t nobjs, capobjs;
static unsigned long live;
static map rev, ident;

static void map_free(map *m)
{
    for (size_t i = 0; i < m->nb; i++)
        for (node *n = m->b[i], *next; n; n = next) {
            next = n->next;
            free(n);
        }
    free(m->b);
    memset(m, 0, sizeof *m);
}

static int map_put(map *m, uint64_t key, CK_OBJECT_HANDLE val)
{
    if (m->n >= m->nb * 2) {
        size_t nb = m->nb ? m->nb * 4 : 1024;
        node **b = calloc(nb, sizeof *b);
        if (!b)
            return -1;
        for (size_t i = 0; i < m->nb; i++)
            for (node *n = m->b[i], *next; n; n = next) {
                next = n->next;
                n->next = b[n->key % nb];
                b[n->key % nb] = n;
            }
        free(m->b);
        m->b = b;
        m->nb = nb;
    }
    node *n = malloc(sizeof *n);
    if (!n)
        return -1;
    n->key = key;
    n->val = val;
    n->next = m->b[key % m->nb];
    m->b[key % m->nb] = n;
    m->n++;
    return 0;
}

static void map_del(map *m, uint64_t key, CK_OBJECT_HANDLE val)
{
    if (!m->nb)
        return;
    for (node **p = &m->b[key % m->nb]; *p; p = &(*p)->next)
        if ((*p)->key == key && (*p)->val == val) {
            node *d = *p;
            *p = d->next;
            free(d);
            m->n--;
            return;
        }
}

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    return x ^ (x >> 33);
}

static uint64_t rev_key(int side, CK_OBJECT_HANDLE bh) { return mix(((uint64_t)bh << 1) | (uint64_t)side); }

static uint64_t ident_key(const route_obj *o)
{
    uint64_t h = 1469598103934665603ULL;
    const unsigned char *p = (const unsigned char *)&o->cls;
    for (size_t i = 0; i < sizeof o->cls; i++)
        h = (h ^ p[i]) * 1099511628211ULL;
    for (CK_ULONG i = 0; i < o->id_len; i++)
        h = (h ^ o->id[i]) * 1099511628211ULL;
    h = (h ^ 0xff) * 1099511628211ULL;
    for (const char *c = o->label; *c; c++)
        h = (h ^ (unsigned char)*c) * 1099511628211ULL;
    return mix(h);
}

static int same_ident(const route_obj *a, const route_obj *b)
{
    return a->cls == b->cls && a->id_len == b->id_len && memcmp(a->id, b->id, a->id_len) == 0 &&
           strcmp(a->label, b->label) == 0;
}

void route_handles_reset(void)
{
    for (size_t i = 0; i < nobjs; i++)
        free(objs[i]);
    free(objs);
    objs = NULL;
    nobjs = capobjs = 0;
    live = 0;
    map_free(&rev);
    map_free(&ident);
}

route_obj *route_obj_get(CK_OBJECT_HANDLE h)
{
    if (h == 0 || h > nobjs)
        return NULL;
    route_obj *o = objs[h - 1];
    return o && !o->dead ? o : NULL;
}

CK_OBJECT_HANDLE route_obj_lookup(int side, CK_OBJECT_HANDLE bh)
{
    uint64_t k = rev_key(side, bh);
    if (!rev.nb)
        return 0;
    for (node *n = rev.b[k % rev.nb]; n; n = n->next)
        if (n->key == k) {
            route_obj *o = route_obj_get(n->val);
            if (o && o->h[side] == bh)
                return n->val;
        }
    return 0;
}

unsigned long route_obj_count(void) { return live; }

CK_OBJECT_HANDLE route_obj_register(int side, CK_OBJECT_HANDLE bh, const route_obj *id)
{
    CK_OBJECT_HANDLE have = route_obj_lookup(side, bh);
    if (have)
        return have;
    int other = 1 - side;
    uint64_t ik = ident_key(id);
    /* A token object: its twin on the other side, when that twin has no partner yet. */
    if (id->token && ident.nb)
        for (node *n = ident.b[ik % ident.nb]; n; n = n->next) {
            if (n->key != ik)
                continue;
            route_obj *o = route_obj_get(n->val);
            if (!o || !o->token || o->h[side] != 0 || o->h[other] == 0 || !same_ident(o, id))
                continue;
            if (o->has_fp[other] && id->has_fp[side] &&
                memcmp(o->fp[other], id->fp[side], 8) != 0) {
                if (!o->split) {
                    o->split = 1;
                    atomic_fetch_add(&route_st[side].split_brain, 1);
                    atomic_fetch_add(&route_st[other].split_brain, 1);
                    char hex[2 * 64 + 1] = "";
                    for (CK_ULONG i = 0; i < id->id_len && i < 64; i++)
                        snprintf(hex + 2 * i, 3, "%02x", id->id[i]);
                    route_log("split-brain: label '%s' id %s differs between blue and green "
                              "(KCV/fingerprint); each side's object is kept apart, never mixed",
                              id->label, hex);
                }
                continue;   /* found as an object of its own, marked split below */
            }
            o->h[side] = bh;
            if (id->has_fp[side]) {
                memcpy(o->fp[side], id->fp[side], 8);
                o->has_fp[side] = 1;
            }
            if (map_put(&rev, rev_key(side, bh), n->val) != 0)
                o->h[side] = 0;
            return n->val;
        }
    if (nobjs >= ROUTE_HANDLE_MAX)
        return 0;
    if (nobjs == capobjs) {
        size_t cap = capobjs ? capobjs * 2 : 4096;
        route_obj **p = realloc(objs, cap * sizeof *p);
        if (!p)
            return 0;
        objs = p;
        capobjs = cap;
    }
    route_obj *o = malloc(sizeof *o);
    if (!o)
        return 0;
    *o = *id;
    o->h[side] = bh;
    o->h[other] = 0;
    o->has_fp[other] = 0;
    o->dead = 0;
    /* a twin refused as split-brain: this one is split too */
    if (id->token && ident.nb)
        for (node *n = ident.b[ik % ident.nb]; n; n = n->next) {
            route_obj *t = n->key == ik ? route_obj_get(n->val) : NULL;
            if (t && t->split && same_ident(t, id) && t->h[side] == 0)
                o->split = 1;
        }
    objs[nobjs++] = o;
    CK_OBJECT_HANDLE h = nobjs;
    if (map_put(&rev, rev_key(side, bh), h) != 0 || map_put(&ident, ik, h) != 0) {
        o->dead = 1;
        return 0;
    }
    live++;
    return h;
}

static void kill(CK_OBJECT_HANDLE h, route_obj *o)
{
    for (int s = 0; s < ROUTE_SIDES; s++)
        if (o->h[s])
            map_del(&rev, rev_key(s, o->h[s]), h);
    map_del(&ident, ident_key(o), h);
    o->dead = 1;
    live--;
}

void route_obj_drop_side(CK_OBJECT_HANDLE h, int side)
{
    route_obj *o = route_obj_get(h);
    if (!o)
        return;
    if (o->h[side])
        map_del(&rev, rev_key(side, o->h[side]), h);
    o->h[side] = 0;
    o->has_fp[side] = 0;
    if (!o->h[0] && !o->h[1])
        kill(h, o);
}

void route_obj_drop_owned(CK_SESSION_HANDLE owner)
{
    for (size_t i = 0; i < nobjs; i++)
        if (objs[i] && !objs[i]->dead && !objs[i]->token && objs[i]->owner == owner)
            kill(i + 1, objs[i]);
}

void route_obj_drop_private(void)
{
    for (size_t i = 0; i < nobjs; i++)
        if (objs[i] && !objs[i]->dead && objs[i]->priv)
            kill(i + 1, objs[i]);
}

/* ------------------------------------------------------------------ identity (no lock) */
CK_RV route_obj_identity(int side, CK_SESSION_HANDLE bs, CK_OBJECT_HANDLE bh, route_obj *o)
{
    CK_FUNCTION_LIST *fl = route_g.side[side].fl;
    memset(o, 0, sizeof *o);
    CK_BBOOL tok = CK_FALSE, priv = CK_FALSE;
    unsigned char label[128], kcv[16];
    CK_ATTRIBUTE a[] = {
        {CKA_CLASS, &o->cls, sizeof o->cls}, {CKA_TOKEN, &tok, sizeof tok},
        {CKA_PRIVATE, &priv, sizeof priv},   {CKA_ID, o->id, sizeof o->id},
        {CKA_LABEL, label, sizeof label},    {CKA_CHECK_VALUE, kcv, sizeof kcv},
    };
    CK_RV rv = fl->C_GetAttributeValue(bs, bh, a, 6);
    if (rv != CKR_OK && rv != CKR_ATTRIBUTE_TYPE_INVALID && rv != CKR_ATTRIBUTE_SENSITIVE &&
        rv != CKR_BUFFER_TOO_SMALL)
        return rv;
    if (a[0].ulValueLen == CK_UNAVAILABLE_INFORMATION)
        return CKR_GENERAL_ERROR;
    o->token = a[1].ulValueLen != CK_UNAVAILABLE_INFORMATION && tok;
    o->priv = a[2].ulValueLen != CK_UNAVAILABLE_INFORMATION && priv;
    o->id_len = a[3].ulValueLen == CK_UNAVAILABLE_INFORMATION ? 0 : a[3].ulValueLen;
    if (a[4].ulValueLen != CK_UNAVAILABLE_INFORMATION) {
        memcpy(o->label, label, a[4].ulValueLen);
        o->label[a[4].ulValueLen] = '\0';
    }
    /* The fingerprint: the KCV of a secret key, the public value of a public key or a
     * certificate (never a private or secret value). */
    EVP_MD_CTX *md = NULL;
    unsigned char dg[EVP_MAX_MD_SIZE];
    unsigned int dl = 0;
    if (a[5].ulValueLen != CK_UNAVAILABLE_INFORMATION && a[5].ulValueLen > 0) {
        EVP_Digest(kcv, a[5].ulValueLen, dg, &dl, EVP_sha256(), NULL);
        o->kcv_len = a[5].ulValueLen < sizeof o->kcv ? a[5].ulValueLen : sizeof o->kcv;
        memcpy(o->kcv, kcv, o->kcv_len);
    } else if (o->cls == CKO_PUBLIC_KEY || o->cls == CKO_CERTIFICATE ||
               o->cls == CKO_PRIVATE_KEY) {
        CK_ATTRIBUTE_TYPE types[] = {CKA_EC_POINT, CKA_MODULUS, CKA_VALUE};
        int n = o->cls == CKO_CERTIFICATE ? 3 : 2;
        for (int i = 0; i < n && !dl; i++) {
            CK_ATTRIBUTE q = {types[i], NULL, 0};
            if (fl->C_GetAttributeValue(bs, bh, &q, 1) != CKR_OK ||
                q.ulValueLen == CK_UNAVAILABLE_INFORMATION || q.ulValueLen == 0 ||
                q.ulValueLen > 65536)
                continue;
            unsigned char *v = malloc(q.ulValueLen);
            if (!v)
                break;
            q.pValue = v;
            if (fl->C_GetAttributeValue(bs, bh, &q, 1) == CKR_OK)
                EVP_Digest(v, q.ulValueLen, dg, &dl, EVP_sha256(), NULL);
            free(v);
        }
    }
    (void)md;
    if (dl >= 8) {
        memcpy(o->fp[side], dg, 8);
        o->has_fp[side] = 1;
    }
    return CKR_OK;
}
