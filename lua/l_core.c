/* l_core.c - luaopen_hsm_core: shared helpers, URIs, module loading, the lab directory. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lhsm.h"
#include "ossl/hsm_ossl.h"
#include "softhsm2/hsm_softhsm2.h"

int luaopen_hsm_core(lua_State *L);

int lhsm_fail(lua_State *L, const hsm_err *err)
{
    char buf[40];
    lua_pushnil(L);
    lua_pushstring(L, err->msg);
    if (err->rv != CKR_OK)
        lua_pushstring(L, hsm_name_or_hex(HSM_NS_CKR, err->rv, buf, sizeof buf));
    else
        lua_pushnil(L);
    return 3;
}

void lhsm_newclass(lua_State *L, const char *name, const luaL_Reg *methods, const luaL_Reg *meta)
{
    luaL_newmetatable(L, name);
    luaL_setfuncs(L, meta, 0);
    lua_newtable(L);
    luaL_setfuncs(L, methods, 0);
    lua_setfield(L, -2, "__index");
    lua_pushstring(L, name);
    lua_setfield(L, -2, "__name");
    lua_pop(L, 1);
}

static void set_str(lua_State *L, const char *k, const char *v)
{
    if (v) {
        lua_pushstring(L, v);
        lua_setfield(L, -2, k);
    }
}

/* core.uri_parse(s) -> {token=..., module_path=..., pin=<secret>, ...} | nil, message */
static int l_uri_parse(lua_State *L)
{
    hsm_uri u;
    hsm_err err;
    if (hsm_uri_parse(luaL_checkstring(L, 1), &u, &err) != 0)
        return lhsm_fail(L, &err);
    lua_newtable(L);
    set_str(L, "token", u.token);
    set_str(L, "manufacturer", u.manufacturer);
    set_str(L, "serial", u.serial);
    set_str(L, "model", u.model);
    set_str(L, "library_manufacturer", u.library_manufacturer);
    set_str(L, "library_description", u.library_description);
    set_str(L, "library_version", u.library_version);
    set_str(L, "slot_description", u.slot_description);
    set_str(L, "slot_manufacturer", u.slot_manufacturer);
    set_str(L, "object", u.object);
    set_str(L, "type", u.type);
    set_str(L, "module_path", u.module_path);
    set_str(L, "module_name", u.module_name);
    set_str(L, "pin_source", u.pin_source);
    set_str(L, "init_reserved", u.init_reserved);
    if (u.has_id) {
        lua_pushlstring(L, (const char *)u.id, u.id_len);
        lua_setfield(L, -2, "id");
    }
    if (u.has_slot_id) {
        lua_pushinteger(L, (lua_Integer)u.slot_id);
        lua_setfield(L, -2, "slot_id");
    }
    if (u.pin_value) {
        lhsm_pushsecret(L, u.pin_value, u.pin_value_len);
        lua_setfield(L, -2, "pin");
    }
    /* The URI as it may be shown: pin-value never appears. */
    char *shown = hsm_uri_format(&u, 0);
    set_str(L, "display", shown);
    free(shown);
    hsm_uri_free(&u);
    return 1;
}

/* core.load(path_or_name | nil, [init_reserved]) -> hsm.Module | nil, message
 * (nil: the default SoftHSM2; init_reserved: C_Initialize's pReserved) */
static int l_load(lua_State *L)
{
    hsm_err err;
    const char *path = luaL_optstring(L, 1, NULL);
    const char *init = luaL_optstring(L, 2, NULL);
    lhsm_module *lm = lua_newuserdatauv(L, sizeof *lm, 0);
    lm->m = NULL;
    luaL_setmetatable(L, LHSM_MODULE);
    lm->m = hsm_module_load_init(path, init, &err);
    if (!lm->m)
        return lhsm_fail(L, &err);
    return 1;
}

/* core.default_module() -> path of SoftHSM2 or nil */
static int l_default_module(lua_State *L)
{
    const char *p = hsm_softhsm2_library();
    if (p)
        lua_pushstring(L, p);
    else
        lua_pushnil(L);
    return 1;
}

/* core.lab_dir() -> the lab directory ($XDG_DATA_HOME/hsmsh/lab) */
static int l_lab_dir(lua_State *L)
{
    char buf[4096];
    lua_pushstring(L, hsm_softhsm2_lab_dir(buf, sizeof buf));
    return 1;
}

/* core.use_softhsm2_conf(path): the embedded SoftHSM2 of this process reads path (set before
 * it is first loaded; hsmsh lab init --dir) */
static int l_use_softhsm2_conf(lua_State *L)
{
    hsm_softhsm2_use_conf(luaL_checkstring(L, 1));
    return 0;
}

/* core.key_type(name) -> the canonical CKK_ name of "AES", "ckk_aes", ... or nil */
static int l_key_type(lua_State *L)
{
    CK_ULONG v;
    if (hsm_value(HSM_NS_CKK, luaL_checkstring(L, 1), &v) != 0)
        return 0;
    lua_pushstring(L, hsm_name(HSM_NS_CKK, v));
    return 1;
}

/* core.methods(class) -> the method table of "hsm.Session" etc., for the stdlib to extend */
static int l_methods(lua_State *L)
{
    luaL_getmetatable(L, luaL_checkstring(L, 1));
    if (lua_isnil(L, -1))
        return luaL_error(L, "no class %s", lua_tostring(L, 1));
    lua_getfield(L, -1, "__index");
    if (!lua_istable(L, -1))
        lua_getfield(L, -2, "__methods");
    return 1;
}

static int push_der(lua_State *L, int r, unsigned char *der, size_t len, hsm_err *err)
{
    if (r != 0)
        return lhsm_fail(L, err);
    lua_pushlstring(L, (const char *)der, len);
    free(der);
    return 1;
}

/* core.spki_rsa(modulus, exponent) -> DER SubjectPublicKeyInfo | nil, err */
static int l_spki_rsa(lua_State *L)
{
    size_t nl, el, len = 0;
    const char *n = luaL_checklstring(L, 1, &nl), *e = luaL_checklstring(L, 2, &el);
    unsigned char *der = NULL;
    hsm_err err;
    int r = hsm_spki_rsa((const unsigned char *)n, nl, (const unsigned char *)e, el, &der, &len, &err);
    return push_der(L, r, der, len, &err);
}

/* core.spki_ec(ec_params, ec_point) -> DER SubjectPublicKeyInfo | nil, err */
static int l_spki_ec(lua_State *L)
{
    size_t pl, ql, len = 0;
    const char *p = luaL_checklstring(L, 1, &pl), *q = luaL_checklstring(L, 2, &ql);
    unsigned char *der = NULL;
    hsm_err err;
    int r = hsm_spki_ec((const unsigned char *)p, pl, (const unsigned char *)q, ql, &der, &len, &err);
    return push_der(L, r, der, len, &err);
}

/* core.spki_cert(der) -> DER SubjectPublicKeyInfo of a certificate | nil, err */
static int l_spki_cert(lua_State *L)
{
    size_t cl, len = 0;
    const char *c = luaL_checklstring(L, 1, &cl);
    unsigned char *der = NULL;
    hsm_err err;
    int r = hsm_spki_from_cert((const unsigned char *)c, cl, &der, &len, &err);
    return push_der(L, r, der, len, &err);
}

/* core.spki_attrs(der) -> {CKA_KEY_TYPE=, CKA_MODULUS=, CKA_PUBLIC_EXPONENT=} or
 * {CKA_KEY_TYPE=, CKA_EC_PARAMS=, CKA_EC_POINT=}: a public key object's template | nil, err */
static int l_spki_attrs(lua_State *L)
{
    size_t len;
    const char *d = luaL_checklstring(L, 1, &len);
    hsm_pubparts pp;
    hsm_err err;
    if (hsm_spki_parts((const unsigned char *)d, len, &pp, &err) != 0)
        return lhsm_fail(L, &err);
    int rsa = strcmp(pp.kind, "RSA") == 0;
    lua_newtable(L);
    lua_pushstring(L, rsa ? "CKK_RSA" : strcmp(pp.kind, "EC") == 0 ? "CKK_EC" : "CKK_EC_EDWARDS");
    lua_setfield(L, -2, "CKA_KEY_TYPE");
    lua_pushlstring(L, (const char *)pp.a, pp.alen);
    lua_setfield(L, -2, rsa ? "CKA_MODULUS" : "CKA_EC_PARAMS");
    lua_pushlstring(L, (const char *)pp.b, pp.blen);
    lua_setfield(L, -2, rsa ? "CKA_PUBLIC_EXPONENT" : "CKA_EC_POINT");
    hsm_pubparts_free(&pp);
    return 1;
}

/* core.pem_encode(label, der) -> PEM text */
static int l_pem_encode(lua_State *L)
{
    size_t len;
    const char *label = luaL_checkstring(L, 1), *der = luaL_checklstring(L, 2, &len);
    char *pem;
    hsm_err err;
    if (hsm_pem_encode(label, (const unsigned char *)der, len, &pem, &err) != 0)
        return lhsm_fail(L, &err);
    lua_pushstring(L, pem);
    free(pem);
    return 1;
}

/* core.pem_decode(text) -> der, label | nil, err   (the first PEM block) */
static int l_pem_decode(lua_State *L)
{
    size_t len, derlen;
    const char *text = luaL_checklstring(L, 1, &len);
    char label[80];
    unsigned char *der;
    hsm_err err;
    if (hsm_pem_decode(text, len, label, sizeof label, &der, &derlen, &err) != 0)
        return lhsm_fail(L, &err);
    lua_pushlstring(L, (const char *)der, derlen);
    free(der);
    lua_pushstring(L, label);
    return 2;
}

/* core.append_synced(path, text, [sync=true]) -> true | nil, err: appends and (unless sync is
 * false) fsyncs before returning, so a journal entry written is a journal entry kept,
 * whatever happens to the process next. */
static int l_append_synced(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    size_t len;
    const char *text = luaL_checklstring(L, 2, &len);
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return luaL_fileresult(L, 0, path);
    size_t off = 0;
    while (off < len) {
        ssize_t n = write(fd, text + off, len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            int e = errno;
            close(fd);
            errno = e;
            return luaL_fileresult(L, 0, path);
        }
        off += (size_t)n;
    }
    if ((lua_isnoneornil(L, 3) || lua_toboolean(L, 3)) && fsync(fd) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return luaL_fileresult(L, 0, path);
    }
    if (close(fd) != 0)
        return luaL_fileresult(L, 0, path);
    lua_pushboolean(L, 1);
    return 1;
}

/* core.hex(bytes) -> lower-case hex (public data: IDs, KCVs, digests, wrapped blobs) */
static int l_hex(lua_State *L)
{
    size_t len;
    const unsigned char *p = (const unsigned char *)luaL_checklstring(L, 1, &len);
    static const char digits[] = "0123456789abcdef";
    luaL_Buffer b;
    char *out = luaL_buffinitsize(L, &b, len * 2);
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 15];
    }
    luaL_pushresultsize(&b, len * 2);
    return 1;
}

static int nibble(int c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
         : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* core.unhex(text) -> bytes | nil when text is not an even number of hex digits */
static int l_unhex(lua_State *L)
{
    size_t len;
    const char *p = luaL_checklstring(L, 1, &len);
    if (len % 2) {
        lua_pushnil(L);
        return 1;
    }
    luaL_Buffer b;
    char *out = luaL_buffinitsize(L, &b, len / 2);
    for (size_t i = 0; i < len / 2; i++) {
        int hi = nibble((unsigned char)p[2 * i]), lo = nibble((unsigned char)p[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            lua_pushnil(L);
            return 1;
        }
        out[i] = (char)(hi << 4 | lo);
    }
    luaL_pushresultsize(&b, len / 2);
    return 1;
}

/* core.now([wall]) -> monotonic seconds (float), for rates and durations; wall = true: seconds
 * since the epoch (CLOCK_REALTIME) */
static int l_now(lua_State *L)
{
    struct timespec ts;
    clock_gettime(lua_toboolean(L, 1) ? CLOCK_REALTIME : CLOCK_MONOTONIC, &ts);
    lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec / 1e9);
    return 1;
}

/* core.sleep(seconds): waits (fractions of a second too) */
static int l_sleep(lua_State *L)
{
    lua_Number t = luaL_checknumber(L, 1);
    struct timespec ts = {(time_t)t, (long)((t - (lua_Number)(time_t)t) * 1e9)};
    while (t > 0 && nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
    return 0;
}

/* core.isatty(fd) -> boolean */
static int l_isatty(lua_State *L)
{
    lua_pushboolean(L, isatty((int)luaL_checkinteger(L, 1)));
    return 1;
}

/* core.sha256(data) -> 32-byte digest (public data only: fingerprints) */
static int l_sha256(lua_State *L)
{
    size_t len;
    const char *d = luaL_checklstring(L, 1, &len);
    unsigned char out[32];
    hsm_sha256(d, len, out);
    lua_pushlstring(L, (const char *)out, sizeof out);
    return 1;
}

int luaopen_hsm_core(lua_State *L)
{
    static const luaL_Reg fns[] = {
        {"uri_parse", l_uri_parse}, {"load", l_load}, {"default_module", l_default_module},
        {"lab_dir", l_lab_dir}, {"use_softhsm2_conf", l_use_softhsm2_conf}, {"key_type", l_key_type}, {"methods", l_methods}, {"spki_rsa", l_spki_rsa},
        {"spki_ec", l_spki_ec}, {"spki_cert", l_spki_cert}, {"sha256", l_sha256},
        {"spki_attrs", l_spki_attrs}, {"pem_encode", l_pem_encode}, {"pem_decode", l_pem_decode},
        {"append_synced", l_append_synced}, {"isatty", l_isatty}, {"now", l_now}, {"sleep", l_sleep}, {"hex", l_hex}, {"unhex", l_unhex},
        {NULL, NULL}};
    luaL_newlib(L, fns);
    lua_pushstring(L, HSMSH_VERSION);
    lua_setfield(L, -2, "version");
    lhsm_open_names(L);
    lhsm_open_secret(L);
    lhsm_open_module(L);
    lhsm_open_session(L);
    lhsm_open_object(L);
    lhsm_open_x509(L);
    lhsm_open_file(L);
    lhsm_open_lock(L);
    lhsm_open_custody(L);
    return 1;
}
