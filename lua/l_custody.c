/* l_custody.c - custodian schemes for Lua: splitting an hsm.Secret into shares, share files,
 * recombination (backends/custody). Shares and secrets cross only as hsm.Secret; set ids
 * and check values (public) as strings. Messages name shares by index; the stdlib adds
 * file names. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "custody/hsm_custody.h"
#include "lhsm.h"

#define SHARE_BOX "hsm.ShareBox"
#define RNG_CHUNK 4096   /* session:random_secret's limit, so such a function works as rng */

/* ------------------------------------------------------------------ randomness from Lua */

/* Where randomness comes from: OpenSSL (neither set), a session's C_GenerateRandom (the
 * bytes stay in C), or a Lua function(n) -> hsm.Secret | string. */
typedef struct lua_rng {
    lua_State *L;
    int fn;                 /* stack index of the function, or 0 */
    lhsm_session *session;  /* or NULL */
    char msg[sizeof(((hsm_err *)0)->msg)];   /* why it failed */
} lua_rng;

static int rng_from_function(lua_rng *r, unsigned char *out, size_t n)
{
    lua_State *L = r->L;
    lua_pushvalue(L, r->fn);
    lua_pushinteger(L, (lua_Integer)n);
    if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
        snprintf(r->msg, sizeof r->msg, "rng: %s",
                 lua_isstring(L, -1) ? lua_tostring(L, -1) : "error object is not a string");
        lua_pop(L, 1);
        return -1;
    }
    size_t got = 0;
    const void *p = NULL;
    lhsm_secret *s = luaL_testudata(L, -1, LHSM_SECRET);
    if (s && !s->closed) {
        p = s->p;
        got = s->len;
    } else if (lua_type(L, -1) == LUA_TSTRING)
        p = lua_tolstring(L, -1, &got);
    if (!p || got != n) {
        snprintf(r->msg, sizeof r->msg, "rng: asked for %zu random bytes, got %s", n,
                 p ? "another length" : luaL_typename(L, -1));
        lua_pop(L, 1);
        return -1;
    }
    memcpy(out, p, n);
    lua_pop(L, 1);
    return 0;
}

/* hsm_rng over a lua_rng, in chunks a Lua function or a module can serve. */
static int rng_call(void *ctx, unsigned char *out, size_t n)
{
    lua_rng *r = ctx;
    if (!r->fn && !r->session)
        return hsm_rng_default(NULL, out, n);
    for (size_t off = 0; off < n; off += RNG_CHUNK) {
        size_t k = n - off < RNG_CHUNK ? n - off : RNG_CHUNK;
        if (r->session) {
            hsm_err err;
            if (hsm_random(&r->session->s, out + off, k, &err) != 0) {
                snprintf(r->msg, sizeof r->msg, "%s", err.msg);
                return -1;
            }
        } else if (rng_from_function(r, out + off, k) != 0)
            return -1;
    }
    return 0;
}

/* Reads an rng argument (nil, function or hsm.Session) at idx. */
static void check_rng(lua_State *L, int idx, lua_rng *r)
{
    memset(r, 0, sizeof *r);
    r->L = L;
    if (lua_isnoneornil(L, idx))
        return;
    if (lua_isfunction(L, idx))
        r->fn = lua_absindex(L, idx);
    else if (luaL_testudata(L, idx, LHSM_SESSION))
        r->session = lhsm_checksession(L, idx);
    else
        luaL_typeerror(L, idx, "function(n) -> hsm.Secret | string, or hsm.Session");
}

/* ------------------------------------------------------------------ a box for shares */

/* Shares (or a recovered secret) whose bytes this box owns, freed when collected, so a
 * raise never leaks them. */
typedef struct share_box {
    size_t cap;
    hsm_share s[];    /* bytes NULL or owned */
} share_box;

static void box_clear(share_box *b)
{
    for (size_t i = 0; i < b->cap; i++)
        hsm_share_clear(&b->s[i]);
}

static int l_sharebox_gc(lua_State *L)
{
    box_clear(luaL_checkudata(L, 1, SHARE_BOX));
    return 0;
}

/* A box with room for count shares, pushed on the stack. */
static share_box *push_box(lua_State *L, size_t count)
{
    size_t size = sizeof(share_box) + count * sizeof(hsm_share);
    share_box *b = lua_newuserdatauv(L, size, 0);
    memset(b, 0, size);
    b->cap = count;
    luaL_setmetatable(L, SHARE_BOX);
    return b;
}

/* Copies len bytes into box slot i, owned by the box: what the backend reads while a Lua
 * rng function runs must not be an hsm.Secret that function could close. */
static unsigned char *box_copy(lua_State *L, share_box *b, size_t i, const void *p, size_t len)
{
    b->s[i].bytes = hsm_secure_alloc(len);
    if (!b->s[i].bytes)
        luaL_error(L, "out of memory");
    b->s[i].len = len;
    if (len)
        memcpy(b->s[i].bytes, p, len);
    return b->s[i].bytes;
}

/* ------------------------------------------------------------------ tables <-> shares */

static void set_bytes(lua_State *L, const char *k, const void *p, size_t n)
{
    lua_pushlstring(L, p, n);
    lua_setfield(L, -2, k);
}

static void set_int(lua_State *L, const char *k, lua_Integer v)
{
    lua_pushinteger(L, v);
    lua_setfield(L, -2, k);
}

/* {scheme, set_id, index, threshold, count, set_check, share = hsm.Secret} */
static void push_share(lua_State *L, const hsm_share *s)
{
    lua_createtable(L, 0, 10);
    lua_pushstring(L, hsm_scheme_name(s->scheme));
    lua_setfield(L, -2, "scheme");
    set_bytes(L, "set_id", s->set_id, sizeof s->set_id);
    set_int(L, "index", s->index);
    set_int(L, "threshold", s->threshold);
    set_int(L, "count", s->count);
    set_bytes(L, "set_check", s->set_check, sizeof s->set_check);
    lhsm_pushsecret(L, s->bytes, s->len);
    lua_setfield(L, -2, "share");
}

static void field_bytes(lua_State *L, int t, const char *k, unsigned char *out, size_t n,
                        const char *who)
{
    size_t len;
    lua_getfield(L, t, k);
    const char *p = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &len) : NULL;
    if (!p || len != n)
        luaL_error(L, "%s: %s must be a string of %d bytes", who, k, (int)n);
    memcpy(out, p, n);
    lua_pop(L, 1);
}

static unsigned field_uint(lua_State *L, int t, const char *k, const char *who)
{
    lua_getfield(L, t, k);
    int ok;
    lua_Integer v = lua_tointegerx(L, -1, &ok);
    if (!ok || v < 0 || v > 65535)
        luaL_error(L, "%s: %s must be an integer", who, k);
    lua_pop(L, 1);
    return (unsigned)v;
}

/* The share described by the table at t; s->bytes points into its hsm.Secret, which stays
 * referenced by the table (the caller keeps the table on the stack). */
static void to_share(lua_State *L, int t, hsm_share *s, const char *who)
{
    luaL_checktype(L, t, LUA_TTABLE);
    memset(s, 0, sizeof *s);
    lua_getfield(L, t, "scheme");
    s->scheme = hsm_scheme_from_name(lua_tostring(L, -1));
    if (!s->scheme)
        luaL_error(L, "%s: scheme must be \"xor\" or \"shamir\"", who);
    lua_pop(L, 1);
    field_bytes(L, t, "set_id", s->set_id, sizeof s->set_id, who);
    field_bytes(L, t, "set_check", s->set_check, sizeof s->set_check, who);
    s->index = field_uint(L, t, "index", who);
    s->threshold = field_uint(L, t, "threshold", who);
    s->count = field_uint(L, t, "count", who);
    lua_getfield(L, t, "share");
    lhsm_secret *sec = luaL_testudata(L, -1, LHSM_SECRET);
    if (!sec || sec->closed)
        luaL_error(L, "%s: share must be an open hsm.Secret", who);
    s->bytes = sec->p;
    s->len = sec->len;
    lua_pop(L, 1);   /* still referenced by the table */
}

/* ------------------------------------------------------------------ functions */

/* core.split(secret, "xor"|"shamir", n, m, [rng]) -> {{index=, share=hsm.Secret, scheme=,
 * set_id=, threshold=, count=, set_check=}...}, set_id, set_check | nil, message
 * rng: function(n) -> hsm.Secret | string, or an hsm.Session (C_GenerateRandom);
 * default OpenSSL. For "xor", n may be nil (it must equal m). */
static int l_split(lua_State *L)
{
    static const char *const schemes[] = {"xor", "shamir", NULL};
    lhsm_secret *secret = lhsm_checksecret(L, 1);
    hsm_scheme scheme = luaL_checkoption(L, 2, NULL, schemes) == 0 ? HSM_SCHEME_XOR
                                                                   : HSM_SCHEME_SHAMIR;
    lua_Integer m = luaL_checkinteger(L, 4);
    lua_Integer n = scheme == HSM_SCHEME_XOR ? luaL_optinteger(L, 3, m) : luaL_checkinteger(L, 3);
    lua_rng rng;
    check_rng(L, 5, &rng);
    hsm_err err;
    luaL_argcheck(L, n > 0 && n <= HSM_SHARE_MAX_COUNT, 3, "out of range");
    luaL_argcheck(L, m > 0 && m <= HSM_SHARE_MAX_COUNT, 4, "out of range");
    if (hsm_split_check(scheme, (unsigned)n, (unsigned)m, secret->len, &err) != 0)
        return luaL_error(L, "split: %s", err.msg);
    /* Slots 0..m-1: the shares; slot m: a copy of the secret. */
    share_box *box = push_box(L, (size_t)m + 1);
    unsigned char *copy = box_copy(L, box, (size_t)m, secret->p, secret->len);
    int r = hsm_split(scheme, copy, secret->len, (unsigned)n, (unsigned)m, rng_call, &rng,
                      box->s, &err);
    hsm_share_clear(&box->s[m]);
    if (r != 0) {
        lua_pushnil(L);
        lua_pushstring(L, rng.msg[0] ? rng.msg : err.msg);
        return 2;
    }
    lua_createtable(L, (int)m, 0);
    for (lua_Integer i = 0; i < m; i++) {
        push_share(L, &box->s[i]);
        lua_rawseti(L, -2, i + 1);
    }
    lua_pushlstring(L, (const char *)box->s[0].set_id, HSM_SHARE_SET_ID_LEN);
    lua_pushlstring(L, (const char *)box->s[0].set_check, HSM_SHARE_SET_CHECK_LEN);
    box_clear(box);
    return 3;
}

/* core.share_encode{scheme=, set_id=, index=, threshold=, count=, set_check=,
 * share=hsm.Secret, [passphrase=hsm.Secret], [rng=]} -> hsm.Secret holding the share file
 * (an unprotected one holds the share in clear; write it with secret:write) | nil, message */
static int l_share_encode(lua_State *L)
{
    hsm_share s;
    to_share(L, 1, &s, "share_encode");
    lua_getfield(L, 1, "passphrase");
    lhsm_secret *pass = lua_isnil(L, -1) ? NULL : lhsm_checksecret(L, -1);
    lua_getfield(L, 1, "rng");
    lua_rng rng;
    check_rng(L, -1, &rng);
    share_box *box = push_box(L, 2);   /* copies of the share and the passphrase */
    s.bytes = box_copy(L, box, 0, s.bytes, s.len);
    const unsigned char *pp = pass ? box_copy(L, box, 1, pass->p, pass->len) : NULL;
    unsigned char *out;
    size_t len;
    hsm_err err;
    int r = hsm_share_encode(&s, pp, pass ? pass->len : 0, rng_call, &rng, &out, &len, &err);
    box_clear(box);
    if (r != 0) {
        lua_pushnil(L);
        lua_pushstring(L, rng.msg[0] ? rng.msg : err.msg);
        return 2;
    }
    lhsm_pushsecret(L, out, len);
    OPENSSL_cleanse(out, len);   /* an unprotected file holds the share in clear */
    free(out);
    return 1;
}

/* core.share_decode(bytes | hsm.Secret, [passphrase: hsm.Secret]) -> {scheme, set_id, index,
 * threshold, count, set_check, check, protected, share = hsm.Secret} | nil, message, code
 * (code "passphrase" when one is needed, "wrong-passphrase" when it does not open it) */
static int l_share_decode(lua_State *L)
{
    size_t len;
    const unsigned char *in;
    if (luaL_testudata(L, 1, LHSM_SECRET)) {
        lhsm_secret *sin = lhsm_checksecret(L, 1);
        in = sin->p;
        len = sin->len;
    } else
        in = (const unsigned char *)luaL_checklstring(L, 1, &len);
    lhsm_secret *pass = lua_isnoneornil(L, 2) ? NULL : lhsm_checksecret(L, 2);
    share_box *box = push_box(L, 1);
    hsm_share_why why;
    hsm_err err;
    if (hsm_share_decode(in, len, pass ? pass->p : NULL, pass ? pass->len : 0, &box->s[0], &why,
                         &err) != 0) {
        lua_pushnil(L);
        lua_pushstring(L, err.msg);
        if (why == HSM_SHARE_NEEDS_PASSPHRASE)
            lua_pushliteral(L, "passphrase");
        else if (why == HSM_SHARE_WRONG_PASSPHRASE)
            lua_pushliteral(L, "wrong-passphrase");
        else
            lua_pushnil(L);
        return 3;
    }
    push_share(L, &box->s[0]);
    set_bytes(L, "check", box->s[0].check, sizeof box->s[0].check);
    lua_pushboolean(L, box->s[0].passphrase);
    lua_setfield(L, -2, "protected");
    box_clear(box);
    return 1;
}

/* core.combine({share, ...}) -> hsm.Secret | nil, message  (shares as share_decode or split
 * return them) */
static int l_combine(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_Integer k = luaL_len(L, 1);
    luaL_argcheck(L, k <= HSM_SHARE_MAX_COUNT, 1, "more than 255 shares");
    /* Not a share_box: these shares' bytes belong to their hsm.Secrets. */
    hsm_share *s = lua_newuserdatauv(L, sizeof *s * (size_t)(k ? k : 1), 0);
    char who[40];
    for (lua_Integer i = 0; i < k; i++) {
        lua_rawgeti(L, 1, i + 1);   /* kept on the stack: it keeps its Secret alive */
        snprintf(who, sizeof who, "combine: share #%d", (int)(i + 1));
        to_share(L, lua_gettop(L), &s[i], who);
    }
    share_box *box = push_box(L, 1);
    hsm_err err;
    if (hsm_combine(s, (size_t)k, &box->s[0].bytes, &box->s[0].len, &err) != 0) {
        lua_pushnil(L);
        lua_pushstring(L, err.msg);
        return 2;
    }
    /* owned by the box until copied into the hsm.Secret */
    lhsm_pushsecret(L, box->s[0].bytes, box->s[0].len);
    box_clear(box);
    return 1;
}

/* core.secret_equal(a, b) -> boolean: two hsm.Secrets hold the same bytes (constant time
 * for equal lengths; e.g. a recombined secret against a typed one) */
static int l_secret_equal(lua_State *L)
{
    lhsm_secret *a = lhsm_checksecret(L, 1), *b = lhsm_checksecret(L, 2);
    lua_pushboolean(L, a->len == b->len && CRYPTO_memcmp(a->p, b->p, a->len) == 0);
    return 1;
}

void lhsm_open_custody(lua_State *L)
{
    static const luaL_Reg box_meta[] = {{"__gc", l_sharebox_gc}, {NULL, NULL}};
    static const luaL_Reg fns[] = {{"split", l_split}, {"share_encode", l_share_encode},
                                   {"share_decode", l_share_decode}, {"combine", l_combine},
                                   {"secret_equal", l_secret_equal}, {NULL, NULL}};
    luaL_newmetatable(L, SHARE_BOX);
    luaL_setfuncs(L, box_meta, 0);
    lua_pop(L, 1);
    luaL_setfuncs(L, fns, 0);
}
