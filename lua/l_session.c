/* l_session.c - hsm.Session: login, object search, creation, key generation, crypto. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "lhsm.h"

lhsm_session *lhsm_checksession(lua_State *L, int idx)
{
    lhsm_session *ls = luaL_checkudata(L, idx, LHSM_SESSION);
    if (!ls->s.open)
        luaL_error(L, "session is closed");
    return ls;
}

static hsm_session *S(lua_State *L) { return &lhsm_checksession(L, 1)->s; }

static CK_OBJECT_HANDLE key_arg(lua_State *L, int idx, hsm_session *s)
{
    lhsm_object *o = lhsm_checkobject(L, idx);
    if (&o->session->s != s)
        luaL_argerror(L, idx, "object belongs to another session");
    return o->h;
}

/* session:login(secret, [who="user"|"so"|"context"]) -> true | nil, err, code */
static int l_session_login(lua_State *L)
{
    static const char *const whos[] = {"so", "user", "context", NULL};
    hsm_session *s = S(L);
    lhsm_secret *pin = lhsm_checksecret(L, 2);
    CK_USER_TYPE who = (CK_USER_TYPE)luaL_checkoption(L, 3, "user", whos);
    hsm_err err;
    int final_try;
    if (hsm_login(s, who, pin->p, pin->len, &final_try, &err) != 0) {
        int n = lhsm_fail(L, &err);
        if (final_try && err.rv == CKR_PIN_INCORRECT) {
            lua_pushfstring(L, "%s (that was the final try: the PIN is now locked)", err.msg);
            lua_replace(L, -3);
        }
        return n;
    }
    lua_pushboolean(L, 1);
    return 1;
}

/* session:logout() -> true | nil, err */
static int l_session_logout(lua_State *L)
{
    hsm_err err;
    if (hsm_logout(S(L), &err) != 0)
        return lhsm_fail(L, &err);
    lua_pushboolean(L, 1);
    return 1;
}

/* session:init_pin(secret) -> true | nil, err   (needs an SO login) */
static int l_session_init_pin(lua_State *L)
{
    hsm_session *s = S(L);
    lhsm_secret *pin = lhsm_checksecret(L, 2);
    hsm_err err;
    if (hsm_init_pin(s, pin->p, pin->len, &err) != 0)
        return lhsm_fail(L, &err);
    lua_pushboolean(L, 1);
    return 1;
}

/* session:info() -> {slot=, state=, rw=} | nil, err */
static int l_session_info(lua_State *L)
{
    static const char *const states[] = {"ro-public", "ro-user", "rw-public", "rw-user", "rw-so"};
    CK_SESSION_INFO i;
    hsm_err err;
    if (hsm_session_info(S(L), &i, &err) != 0)
        return lhsm_fail(L, &err);
    lua_newtable(L);
    lua_pushinteger(L, (lua_Integer)i.slotID);
    lua_setfield(L, -2, "slot");
    lua_pushstring(L, i.state <= 4 ? states[i.state] : "unknown");
    lua_setfield(L, -2, "state");
    lua_pushboolean(L, (i.flags & CKF_RW_SESSION) != 0);
    lua_setfield(L, -2, "rw");
    return 1;
}

/* session:find_all([template]) -> {hsm.Object, ...} | nil, err   (one enumeration) */
static int l_session_find_all(lua_State *L)
{
    hsm_session *s = S(L);
    hsm_tmpl *t = lhsm_totmpl(L, 2);
    CK_OBJECT_HANDLE *hs;
    CK_ULONG n;
    hsm_err err;
    if (hsm_find(s, t, &hs, &n, &err) != 0)
        return lhsm_fail(L, &err);
    lua_createtable(L, (int)n, 0);
    for (CK_ULONG i = 0; i < n; i++) {
        lhsm_pushobject(L, 1, hs[i]);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    free(hs);
    return 1;
}

/* session:object(handle) -> hsm.Object */
static int l_session_object(lua_State *L)
{
    S(L);
    lhsm_pushobject(L, 1, (CK_OBJECT_HANDLE)luaL_checkinteger(L, 2));
    return 1;
}

/* session:create(template) -> hsm.Object | nil, err */
static int l_session_create(lua_State *L)
{
    hsm_session *s = S(L);
    hsm_tmpl *t = lhsm_totmpl(L, 2);
    CK_OBJECT_HANDLE h;
    hsm_err err;
    if (hsm_create(s, t, &h, &err) != 0)
        return lhsm_fail(L, &err);
    lhsm_pushobject(L, 1, h);
    return 1;
}

/* session:generate_key(mech, template) -> hsm.Object | nil, err */
static int l_session_generate_key(lua_State *L)
{
    hsm_session *s = S(L);
    lhsm_mech m;
    lhsm_checkmech(L, 2, &m);
    hsm_tmpl *t = lhsm_totmpl(L, 3);
    CK_OBJECT_HANDLE h;
    hsm_err err;
    if (hsm_generate_key(s, &m.m, t, &h, &err) != 0)
        return lhsm_fail(L, &err);
    lhsm_pushobject(L, 1, h);
    return 1;
}

/* session:generate_key_pair(mech, public_template, private_template) -> pub, priv | nil, err */
static int l_session_generate_key_pair(lua_State *L)
{
    hsm_session *s = S(L);
    lhsm_mech m;
    lhsm_checkmech(L, 2, &m);
    hsm_tmpl *pub = lhsm_totmpl(L, 3);
    hsm_tmpl *priv = lhsm_totmpl(L, 4);
    CK_OBJECT_HANDLE hp, hk;
    hsm_err err;
    if (hsm_generate_key_pair(s, &m.m, pub, priv, &hp, &hk, &err) != 0)
        return lhsm_fail(L, &err);
    lhsm_pushobject(L, 1, hp);
    lhsm_pushobject(L, 1, hk);
    return 2;
}

static int crypt(lua_State *L, hsm_op op)
{
    hsm_session *s = S(L);
    lhsm_mech m;
    lhsm_checkmech(L, 2, &m);
    int data = op == HSM_OP_DIGEST ? 3 : 4;
    CK_OBJECT_HANDLE key = op == HSM_OP_DIGEST ? 0 : key_arg(L, 3, s);
    size_t inlen, outlen;
    const char *in = luaL_checklstring(L, data, &inlen);
    lhsm_secret *pin = lua_isnoneornil(L, data + 1) ? NULL : lhsm_checksecret(L, data + 1);
    unsigned char *out;
    hsm_err err;
    if (hsm_crypt(s, op, &m.m, key, (const unsigned char *)in, inlen, pin ? pin->p : NULL,
                  pin ? pin->len : 0, &out, &outlen, &err) != 0)
        return lhsm_fail(L, &err);
    lua_pushlstring(L, (const char *)out, outlen);
    free(out);
    return 1;
}

/* The crypto calls take an optional last argument: the hsm.Secret for the context-specific
 * login that keys with CKA_ALWAYS_AUTHENTICATE need before each operation. */
/* session:encrypt(mech, key, data, [pin]) -> ciphertext | nil, err */
static int l_session_encrypt(lua_State *L) { return crypt(L, HSM_OP_ENCRYPT); }
/* session:decrypt(mech, key, data, [pin]) -> plaintext | nil, err */
static int l_session_decrypt(lua_State *L) { return crypt(L, HSM_OP_DECRYPT); }
/* session:sign(mech, key, data, [pin]) -> signature | nil, err */
static int l_session_sign(lua_State *L) { return crypt(L, HSM_OP_SIGN); }
/* session:digest(mech, data) -> digest | nil, err */
static int l_session_digest(lua_State *L) { return crypt(L, HSM_OP_DIGEST); }

/* session:verify(mech, key, data, signature) -> true | false | nil, err */
static int l_session_verify(lua_State *L)
{
    hsm_session *s = S(L);
    lhsm_mech m;
    lhsm_checkmech(L, 2, &m);
    CK_OBJECT_HANDLE key = key_arg(L, 3, s);
    size_t dlen, slen;
    const char *d = luaL_checklstring(L, 4, &dlen), *sig = luaL_checklstring(L, 5, &slen);
    hsm_err err;
    int r = hsm_verify(s, &m.m, key, (const unsigned char *)d, dlen, (const unsigned char *)sig,
                       slen, &err);
    if (r < 0)
        return lhsm_fail(L, &err);
    lua_pushboolean(L, r);
    return 1;
}

/* session:random(n) -> n random bytes | nil, err */
static int l_session_random(lua_State *L)
{
    hsm_session *s = S(L);
    lua_Integer n = luaL_checkinteger(L, 2);
    luaL_argcheck(L, n >= 0 && n <= 1 << 20, 2, "between 0 and 1 MiB");
    luaL_Buffer b;
    unsigned char *p = (unsigned char *)luaL_buffinitsize(L, &b, (size_t)n);
    hsm_err err;
    if (hsm_random(s, p, (size_t)n, &err) != 0)
        return lhsm_fail(L, &err);
    luaL_pushresultsize(&b, (size_t)n);
    return 1;
}

/* session:wrap(mech, wrapping_key, key) -> wrapped bytes | nil, err */
static int l_session_wrap(lua_State *L)
{
    hsm_session *s = S(L);
    lhsm_mech m;
    lhsm_checkmech(L, 2, &m);
    CK_OBJECT_HANDLE wrapping = key_arg(L, 3, s), key = key_arg(L, 4, s);
    unsigned char *out;
    size_t len;
    hsm_err err;
    if (hsm_wrap(s, &m.m, wrapping, key, &out, &len, &err) != 0)
        return lhsm_fail(L, &err);
    lua_pushlstring(L, (const char *)out, len);
    free(out);
    return 1;
}

/* session:unwrap(mech, unwrapping_key, wrapped, template) -> hsm.Object | nil, err */
static int l_session_unwrap(lua_State *L)
{
    hsm_session *s = S(L);
    lhsm_mech m;
    lhsm_checkmech(L, 2, &m);
    CK_OBJECT_HANDLE unwrapping = key_arg(L, 3, s);
    size_t len;
    const char *blob = luaL_checklstring(L, 4, &len);
    hsm_tmpl *t = lhsm_totmpl(L, 5);
    CK_OBJECT_HANDLE h;
    hsm_err err;
    if (hsm_unwrap(s, &m.m, unwrapping, (const unsigned char *)blob, len, t, &h, &err) != 0)
        return lhsm_fail(L, &err);
    lhsm_pushobject(L, 1, h);
    return 1;
}

/* Parallel unwrapping: worker threads, each with its own session on the same token, take
 * jobs in turn. Object handles and session objects (the unwrapping key) belong to the
 * application, so every worker can use the key and the caller every new handle. The module
 * was initialized with CKF_OS_LOCKING_OK. */
typedef struct unwrap_job {
    const unsigned char *blob;
    size_t len;
    hsm_tmpl *t;
    CK_OBJECT_HANDLE h;
    int ok;
    hsm_err err;
} unwrap_job;

typedef struct unwrap_pool {
    pthread_mutex_t lock;
    size_t next, n;
    unwrap_job *jobs;
    CK_MECHANISM *mech;
    CK_OBJECT_HANDLE key;
} unwrap_pool;

typedef struct unwrap_worker {
    unwrap_pool *pool;
    hsm_session *s;
} unwrap_worker;

static void *unwrap_run(void *arg)
{
    unwrap_worker *w = arg;
    unwrap_pool *p = w->pool;
    for (;;) {
        pthread_mutex_lock(&p->lock);
        size_t i = p->next++;
        pthread_mutex_unlock(&p->lock);
        if (i >= p->n)
            return NULL;
        unwrap_job *j = &p->jobs[i];
        j->ok = hsm_unwrap(w->s, p->mech, p->key, j->blob, j->len, j->t, &j->h, &j->err) == 0;
    }
}

/* session:unwrap_parallel(mech, unwrapping_key, {{blob, template}, ...}, {session, ...})
 * -> {{object} | {nil, message, code}, ...}: the jobs unwrapped by one thread per session
 * given (other sessions on this session's token), in any order, results in job order. */
static int l_session_unwrap_parallel(lua_State *L)
{
    hsm_session *s = S(L);
    lhsm_mech m;
    lhsm_checkmech(L, 2, &m);
    CK_OBJECT_HANDLE key = key_arg(L, 3, s);
    luaL_checktype(L, 4, LUA_TTABLE);
    luaL_checktype(L, 5, LUA_TTABLE);
    size_t n = (size_t)luaL_len(L, 4), nw = (size_t)luaL_len(L, 5);
    luaL_argcheck(L, nw >= 1 && nw <= 64, 5, "between 1 and 64 sessions");
    unwrap_job *jobs = lua_newuserdatauv(L, (n ? n : 1) * sizeof *jobs, 0);
    int keep = lua_gettop(L);   /* the templates' boxes stay on the stack until the end */
    lua_createtable(L, (int)n, 0);
    int boxes = lua_gettop(L);
    for (size_t i = 0; i < n; i++) {
        lua_rawgeti(L, 4, (lua_Integer)i + 1);
        luaL_checktype(L, -1, LUA_TTABLE);
        lua_rawgeti(L, -1, 1);
        jobs[i].blob = (const unsigned char *)luaL_checklstring(L, -1, &jobs[i].len);
        lua_pop(L, 1);   /* the string stays alive in the job table */
        lua_rawgeti(L, -1, 2);
        jobs[i].t = lhsm_totmpl(L, -1);   /* pushes its box */
        lua_rawseti(L, boxes, (lua_Integer)i + 1);
        lua_pop(L, 2);
        jobs[i].ok = 0;
        jobs[i].h = CK_INVALID_HANDLE;
    }
    unwrap_worker w[64];
    unwrap_pool pool = {.next = 0, .n = n, .jobs = jobs, .mech = &m.m, .key = key};
    pthread_mutex_init(&pool.lock, NULL);
    for (size_t k = 0; k < nw; k++) {
        lua_rawgeti(L, 5, (lua_Integer)k + 1);
        w[k].s = &lhsm_checksession(L, -1)->s;
        w[k].pool = &pool;
        lua_pop(L, 1);   /* the caller's table keeps the session alive */
    }
    pthread_t th[64];
    size_t started = 0;
    for (size_t k = 0; k < nw; k++)
        if (pthread_create(&th[k], NULL, unwrap_run, &w[k]) == 0)
            started++;
        else
            break;
    if (started == 0)
        unwrap_run(&w[0]);   /* no threads to be had: do it here */
    for (size_t k = 0; k < started; k++)
        pthread_join(th[k], NULL);
    pthread_mutex_destroy(&pool.lock);
    lua_createtable(L, (int)n, 0);
    for (size_t i = 0; i < n; i++) {
        lua_createtable(L, 3, 0);
        if (jobs[i].ok) {
            lhsm_pushobject(L, 1, jobs[i].h);
            lua_rawseti(L, -2, 1);
        } else {
            lua_pushstring(L, jobs[i].err.msg);
            lua_rawseti(L, -2, 2);
            if (jobs[i].err.rv != CKR_OK) {
                lhsm_pushname(L, HSM_NS_CKR, jobs[i].err.rv);
                lua_rawseti(L, -2, 3);
            }
        }
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    (void)keep;
    return 1;
}

/* session:derive(mech, base_key, template) -> hsm.Object | nil, err */
static int l_session_derive(lua_State *L)
{
    hsm_session *s = S(L);
    lhsm_mech m;
    lhsm_checkmech(L, 2, &m);
    CK_OBJECT_HANDLE base = key_arg(L, 3, s);
    hsm_tmpl *t = lhsm_totmpl(L, 4);
    CK_OBJECT_HANDLE h;
    hsm_err err;
    if (hsm_derive(s, &m.m, base, t, &h, &err) != 0)
        return lhsm_fail(L, &err);
    lhsm_pushobject(L, 1, h);
    return 1;
}

/* Streamed MACs and signatures: session:sign_init(mech, key), session:sign_update(data)...,
 * session:sign_final() -> bytes; session:verify_init(mech, key), verify_update(data)...,
 * verify_final(signature) -> true | false. Each returns nil, err on a device error. */
static int ok_or_fail(lua_State *L, int r, hsm_err *err)
{
    if (r != 0)
        return lhsm_fail(L, err);
    lua_pushboolean(L, 1);
    return 1;
}

static int l_session_sign_init(lua_State *L)
{
    hsm_session *s = S(L);
    lhsm_mech m;
    lhsm_checkmech(L, 2, &m);
    hsm_err err;
    return ok_or_fail(L, hsm_sign_begin(s, &m.m, key_arg(L, 3, s), &err), &err);
}

static int l_session_verify_init(lua_State *L)
{
    hsm_session *s = S(L);
    lhsm_mech m;
    lhsm_checkmech(L, 2, &m);
    hsm_err err;
    return ok_or_fail(L, hsm_verify_begin(s, &m.m, key_arg(L, 3, s), &err), &err);
}

static int l_session_sign_update(lua_State *L)
{
    size_t len;
    const char *d = luaL_checklstring(L, 2, &len);
    hsm_err err;
    return ok_or_fail(L, hsm_sign_update(S(L), (const unsigned char *)d, len, &err), &err);
}

static int l_session_verify_update(lua_State *L)
{
    size_t len;
    const char *d = luaL_checklstring(L, 2, &len);
    hsm_err err;
    return ok_or_fail(L, hsm_verify_update(S(L), (const unsigned char *)d, len, &err), &err);
}

static int l_session_sign_final(lua_State *L)
{
    unsigned char out[HSM_MAC_MAX];
    size_t len = sizeof out;
    hsm_err err;
    if (hsm_sign_end(S(L), out, &len, &err) != 0)
        return lhsm_fail(L, &err);
    lua_pushlstring(L, (const char *)out, len);
    return 1;
}

static int l_session_verify_final(lua_State *L)
{
    size_t len;
    const char *sig = luaL_checklstring(L, 2, &len);
    hsm_err err;
    int r = hsm_verify_end(S(L), (const unsigned char *)sig, len, &err);
    if (r < 0)
        return lhsm_fail(L, &err);
    lua_pushboolean(L, r);
    return 1;
}

/* session:random_secret(n) -> hsm.Secret of n random bytes (for key components and shares,
 * which must never sit in a Lua string) */
static int l_session_random_secret(lua_State *L)
{
    hsm_session *s = S(L);
    lua_Integer n = luaL_checkinteger(L, 2);
    luaL_argcheck(L, n > 0 && n <= 4096, 2, "between 1 and 4096");
    unsigned char buf[4096];
    hsm_err err;
    int r = hsm_random(s, buf, (size_t)n, &err);
    if (r == 0)
        lhsm_pushsecret(L, buf, (size_t)n);
    OPENSSL_cleanse(buf, (size_t)n);
    return r == 0 ? 1 : lhsm_fail(L, &err);
}

/* session:close() - idempotent */
static int l_session_close(lua_State *L)
{
    lhsm_session *ls = luaL_checkudata(L, 1, LHSM_SESSION);
    hsm_err err;
    hsm_session_close(&ls->s, &err);
    return 0;
}

static int l_session_tostring(lua_State *L)
{
    lhsm_session *ls = luaL_checkudata(L, 1, LHSM_SESSION);
    if (ls->s.open)
        lua_pushfstring(L, "hsm.Session(slot %d)", (int)ls->s.slot);
    else
        lua_pushliteral(L, "hsm.Session(closed)");
    return 1;
}

/* session:slot() -> slot id */
static int l_session_slot(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)S(L)->slot);
    return 1;
}

/* session:module() -> hsm.Module */
static int l_session_module(lua_State *L)
{
    S(L);
    lua_getiuservalue(L, 1, 1);
    return 1;
}

void lhsm_open_session(lua_State *L)
{
    static const luaL_Reg methods[] = {
        {"login", l_session_login}, {"logout", l_session_logout}, {"init_pin", l_session_init_pin},
        {"info", l_session_info}, {"find_all", l_session_find_all}, {"object", l_session_object},
        {"create", l_session_create}, {"generate_key", l_session_generate_key},
        {"generate_key_pair", l_session_generate_key_pair}, {"encrypt", l_session_encrypt},
        {"decrypt", l_session_decrypt}, {"sign", l_session_sign}, {"verify", l_session_verify},
        {"digest", l_session_digest}, {"random", l_session_random},
        {"wrap", l_session_wrap}, {"unwrap", l_session_unwrap}, {"derive", l_session_derive},
        {"sign_init", l_session_sign_init}, {"sign_update", l_session_sign_update},
        {"sign_final", l_session_sign_final}, {"verify_init", l_session_verify_init},
        {"verify_update", l_session_verify_update}, {"verify_final", l_session_verify_final},
        {"random_secret", l_session_random_secret}, {"unwrap_parallel", l_session_unwrap_parallel}, {"slot", l_session_slot},
        {"module", l_session_module}, {"close", l_session_close}, {NULL, NULL}};
    static const luaL_Reg meta[] = {{"__gc", l_session_close}, {"__close", l_session_close},
                                    {"__tostring", l_session_tostring}, {NULL, NULL}};
    lhsm_newclass(L, LHSM_SESSION, methods, meta);
}
