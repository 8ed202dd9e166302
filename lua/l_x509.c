/* l_x509.c - certificates and certificate requests for keys that live in the HSM: the TBS is
 * built by backends/ossl and signed on the token with a raw mechanism (CKM_RSA_PKCS /
 * CKM_ECDSA), then checked against the expected public key before it is returned. */
#include <stdlib.h>
#include <string.h>

#include "lhsm.h"
#include "ossl/hsm_ossl.h"

struct signer {
    hsm_session *s;
    CK_OBJECT_HANDLE key;
    CK_MECHANISM_TYPE mech;
};

static int sign_on_token(void *ctx, const unsigned char *in, size_t inlen, unsigned char **sig,
                         size_t *siglen, hsm_err *err)
{
    struct signer *sg = ctx;
    CK_MECHANISM m = {sg->mech, NULL, 0};
    return hsm_crypt(sg->s, HSM_OP_SIGN, &m, sg->key, in, inlen, NULL, 0, sig, siglen, err);
}

/* A signer for the private key object key whose public half is spki: CKM_RSA_PKCS for RSA,
 * CKM_ECDSA for EC (the backend refuses other key types by name). */
static int signer_init(struct signer *sg, lhsm_object *key, const char *spki, size_t spkilen,
                       hsm_err *err)
{
    char alg[32];
    if (hsm_spki_info((const unsigned char *)spki, spkilen, alg, sizeof alg, NULL, err) != 0)
        return -1;
    sg->s = &key->session->s;
    sg->key = key->h;
    sg->mech = strncmp(alg, "RSA", 3) == 0 ? CKM_RSA_PKCS : CKM_ECDSA;
    return 0;
}

/* ------------------------------------------------------------------ option tables */

/* Raises on a key of the table at idx that is not in allowed (NULL-terminated). */
static void opts_known(lua_State *L, int idx, const char *fn, const char *const *allowed)
{
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        const char *k = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
        size_t i = 0;
        while (k && allowed[i] && strcmp(k, allowed[i]) != 0)
            i++;
        if (!k || !allowed[i]) {
            luaL_Buffer b;
            luaL_buffinit(L, &b);
            for (i = 0; allowed[i]; i++) {
                luaL_addstring(&b, i ? ", " : "");
                luaL_addstring(&b, allowed[i]);
            }
            luaL_pushresult(&b);
            luaL_error(L, "%s: unknown option '%s' (expected %s)", fn,
                       k ? k : luaL_typename(L, -2), lua_tostring(L, -1));
        }
    }
}

/* opts[k] as a string without NUL bytes, or NULL when absent. The string stays valid while the
 * table at idx is on the stack. */
static const char *opt_str(lua_State *L, int idx, const char *k)
{
    const char *s = NULL;
    size_t len;
    int t = lua_getfield(L, idx, k);
    if (t != LUA_TNIL) {
        if (t != LUA_TSTRING)
            luaL_error(L, "option '%s' must be a string (got %s)", k, lua_typename(L, t));
        s = lua_tolstring(L, -1, &len);
        if (strlen(s) != len)
            luaL_error(L, "option '%s' contains a NUL byte", k);
    }
    lua_pop(L, 1);
    return s;
}

/* opts[k] as an integer; present says whether it was there. */
static lua_Integer opt_int(lua_State *L, int idx, const char *k, int *present)
{
    int t = lua_getfield(L, idx, k), isnum = 0;
    lua_Integer v = lua_tointegerx(L, -1, &isnum);
    if (t != LUA_TNIL && !isnum)
        luaL_error(L, "option '%s' must be an integer (got %s)", k, lua_typename(L, t));
    lua_pop(L, 1);
    *present = t != LUA_TNIL;
    return v;
}

static int opt_bool(lua_State *L, int idx, const char *k)
{
    int t = lua_getfield(L, idx, k);
    if (t != LUA_TNIL && t != LUA_TBOOLEAN)
        luaL_error(L, "option '%s' must be a boolean (got %s)", k, lua_typename(L, t));
    int v = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return v;
}

/* A certificate's options read from a Lua table; the serial bytes live here. */
struct cert_args {
    hsm_cert_opts o;
    unsigned char serial[64];
};

/* opts.serial: a positive integer, or a string of hex digits (big-endian). */
static void opt_serial(lua_State *L, int idx, struct cert_args *a)
{
    int t = lua_getfield(L, idx, "serial");
    if (t == LUA_TNUMBER) {
        int isint = 0;
        lua_Integer v = lua_tointegerx(L, -1, &isint);
        if (!isint || v <= 0)
            luaL_error(L, "option 'serial' must be a positive integer or a hex string");
        for (int i = 7; i >= 0; i--, v >>= 8)
            a->serial[i] = (unsigned char)(v & 0xff);
        a->o.serial = a->serial;
        a->o.serial_len = 8;
    } else if (t == LUA_TSTRING) {
        size_t n;
        const char *s = lua_tolstring(L, -1, &n);
        if (n == 0 || n > 2 * sizeof a->serial || strspn(s, "0123456789abcdefABCDEF") != n)
            luaL_error(L, "option 'serial' must be a positive integer or 1 to %d hex digits",
                       (int)(2 * sizeof a->serial));
        size_t bytes = (n + 1) / 2;
        memset(a->serial, 0, sizeof a->serial);
        for (size_t i = 0; i < n; i++) {   /* right-aligned: an odd count gets a leading 0 */
            char c = s[n - 1 - i];
            int d = c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10;
            a->serial[bytes - 1 - i / 2] |= (unsigned char)(i % 2 ? d << 4 : d);
        }
        a->o.serial = a->serial;
        a->o.serial_len = bytes;
    } else if (t != LUA_TNIL) {
        luaL_error(L, "option 'serial' must be a positive integer or a hex string (got %s)",
                   lua_typename(L, t));
    }
    lua_pop(L, 1);
}

/* The certificate options in the table at idx (0 = none): days (default days), hash
 * (default hash), serial, not_before, ca, pathlen. */
static void cert_opts(lua_State *L, int idx, struct cert_args *a, long days, const char *hash)
{
    int has;
    memset(a, 0, sizeof *a);
    a->o.days = days;
    a->o.hash = hash;
    if (!idx)
        return;
    lua_Integer d = opt_int(L, idx, "days", &has);
    if (has)
        a->o.days = (long)d;   /* the backend checks the range */
    const char *h = opt_str(L, idx, "hash");
    if (h)
        a->o.hash = h;
    opt_serial(L, idx, a);
    a->o.not_before = (long long)opt_int(L, idx, "not_before", &has);
    if (has && a->o.not_before == 0)
        luaL_error(L, "option 'not_before' must be a unix time other than 0 (leave it out for now)");
    a->o.ca = opt_bool(L, idx, "ca");
    lua_Integer pl = opt_int(L, idx, "pathlen", &has);
    if (has && !a->o.ca)
        luaL_error(L, "option 'pathlen' applies to CA certificates only (ca=true)");
    if (has && pl > 1000)
        luaL_error(L, "option 'pathlen' is out of range");
    a->o.pathlen = has ? (pl < 0 ? -1 : (int)pl) : 0;
}

/* ------------------------------------------------------------------ bindings */

/* core.self_signed_cert(private_key, spki_der, cn, [days], [hash="sha256"], [opts]) -> DER | nil, err
 *   Without opts: the plain profile of hsm_x509_self_signed (CA:FALSE, digitalSignature).
 *   opts (a table, the last argument): {ca=false, days=365, hash=, serial=, not_before=,
 *   org=, subject_serial=, pathlen=0}: ca=true makes a CA (an owner's POC: CA:TRUE,
 *   keyCertSign, cRLSign), else an identity (CA:FALSE, digitalSignature, keyAgreement for EC).
 *   days and hash may be given positionally or in opts, not both. */
static int l_self_signed_cert(lua_State *L)
{
    static const char *const keys[] = {"ca", "days", "hash", "serial", "not_before", "org",
                                       "subject_serial", "pathlen", NULL};
    lhsm_object *key = lhsm_checkobject(L, 1);
    size_t spkilen, derlen = 0;
    const char *spki = luaL_checklstring(L, 2, &spkilen);
    const char *cn = luaL_checkstring(L, 3);
    int top = lua_gettop(L);
    int oi = top >= 4 && lua_type(L, top) == LUA_TTABLE ? top : 0;   /* the options table */
    int last = oi ? oi - 1 : top;                                   /* the last positional */
    if (oi > 6)
        luaL_argerror(L, oi, "options must come right after cn, days or hash");
    int has_days = last >= 4 && !lua_isnil(L, 4), has_hash = last >= 5 && !lua_isnil(L, 5);
    long days = has_days || !oi ? (long)luaL_checkinteger(L, 4) : 365;   /* required without opts */
    const char *hash = has_hash ? luaL_checkstring(L, 5) : "sha256";
    hsm_err err;
    struct signer sg;
    unsigned char *der = NULL;
    int rc;
    if (!oi) {   /* the original form: the plain profile */
        if (signer_init(&sg, key, spki, spkilen, &err) != 0)
            return lhsm_fail(L, &err);
        rc = hsm_x509_self_signed((const unsigned char *)spki, spkilen, cn, days, hash,
                                  sign_on_token, &sg, &der, &derlen, &err);
    } else {
        opts_known(L, oi, "self_signed_cert", keys);
        if (has_days && lua_getfield(L, oi, "days") != LUA_TNIL)
            luaL_error(L, "self_signed_cert: days given both as an argument and in the options");
        if (has_hash && lua_getfield(L, oi, "hash") != LUA_TNIL)
            luaL_error(L, "self_signed_cert: hash given both as an argument and in the options");
        lua_settop(L, oi);
        struct cert_args a;
        cert_opts(L, oi, &a, days, hash);
        hsm_x509_name name = {cn, opt_str(L, oi, "subject_serial"), opt_str(L, oi, "org")};
        if (signer_init(&sg, key, spki, spkilen, &err) != 0)
            return lhsm_fail(L, &err);
        rc = hsm_x509_self_signed_ex((const unsigned char *)spki, spkilen, &name, &a.o,
                                     sign_on_token, &sg, &der, &derlen, &err);
    }
    if (rc != 0)
        return lhsm_fail(L, &err);
    lua_pushlstring(L, (const char *)der, derlen);
    free(der);
    return 1;
}

/* core.csr(private_key, spki_der, {cn=, serial=, org=, hash="sha512"}) -> DER PKCS#10 | nil, err
 *   serial is the subject's serialNumber attribute (the HSM's serial number). */
static int l_csr(lua_State *L)
{
    static const char *const keys[] = {"cn", "serial", "org", "hash", NULL};
    lhsm_object *key = lhsm_checkobject(L, 1);
    size_t spkilen, derlen = 0;
    const char *spki = luaL_checklstring(L, 2, &spkilen);
    luaL_checktype(L, 3, LUA_TTABLE);
    opts_known(L, 3, "csr", keys);
    hsm_x509_name name = {opt_str(L, 3, "cn"), opt_str(L, 3, "serial"), opt_str(L, 3, "org")};
    const char *hash = opt_str(L, 3, "hash");
    if (!name.cn)
        luaL_error(L, "csr: option 'cn' is required");
    hsm_err err;
    struct signer sg;
    unsigned char *der = NULL;
    if (signer_init(&sg, key, spki, spkilen, &err) != 0
        || hsm_csr_build(&name, (const unsigned char *)spki, spkilen, hash ? hash : "sha512",
                         sign_on_token, &sg, &der, &derlen, &err) != 0)
        return lhsm_fail(L, &err);
    lua_pushlstring(L, (const char *)der, derlen);
    free(der);
    return 1;
}

static void set_nonempty(lua_State *L, const char *k, const char *v)
{
    if (v && *v) {
        lua_pushstring(L, v);
        lua_setfield(L, -2, k);
    }
}

/* core.csr_info(der) -> {subject=, cn=, serial=, org=, spki=, valid=bool, why=} | nil, err
 *   valid: the request's signature verifies with the key it names; why says why not. */
static int l_csr_info(lua_State *L)
{
    size_t len;
    const char *der = luaL_checklstring(L, 1, &len);
    hsm_csr_details d;
    hsm_err err;
    if (hsm_csr_info((const unsigned char *)der, len, &d, &err) != 0)
        return lhsm_fail(L, &err);
    lua_createtable(L, 0, 7);
    lua_pushlstring(L, (const char *)d.spki, d.spkilen);
    hsm_csr_details_free(&d);
    lua_setfield(L, -2, "spki");
    set_nonempty(L, "subject", d.subject);
    set_nonempty(L, "cn", d.cn);
    set_nonempty(L, "serial", d.serial);
    set_nonempty(L, "org", d.org);
    lua_pushboolean(L, d.valid);
    lua_setfield(L, -2, "valid");
    set_nonempty(L, "why", d.why);
    return 1;
}

/* core.issue_cert(issuer_key, issuer_cert_der, csr_or_spki_der, [opts]) -> DER | nil, err
 *   opts: {cn=, org=, subject_serial= (the subject; required with a bare SPKI, with a CSR cn=
 *   replaces the request's subject), serial= (the certificate serial: integer or hex; random
 *   128-bit by default), days=365, not_before=, hash="sha512", ca=false, pathlen=0}.
 *   A CSR whose signature does not verify is refused. */
static int l_issue_cert(lua_State *L)
{
    static const char *const keys[] = {"cn", "org", "subject_serial", "serial", "days",
                                       "not_before", "hash", "ca", "pathlen", NULL};
    lhsm_object *key = lhsm_checkobject(L, 1);
    size_t ilen, slen, derlen = 0;
    const char *icert = luaL_checklstring(L, 2, &ilen);
    const char *sub = luaL_checklstring(L, 3, &slen);
    int oi = lua_isnoneornil(L, 4) ? 0 : 4;
    if (oi) {
        luaL_checktype(L, 4, LUA_TTABLE);
        opts_known(L, 4, "issue_cert", keys);
    }
    struct cert_args a;
    cert_opts(L, oi, &a, 365, "sha512");
    hsm_cert_subject subj = {0};
    if (oi) {
        subj.name.cn = opt_str(L, oi, "cn");
        subj.name.serial = opt_str(L, oi, "subject_serial");
        subj.name.org = opt_str(L, oi, "org");
    }

    hsm_err err;
    switch (hsm_der_kind_of((const unsigned char *)sub, slen)) {
    case HSM_DER_CSR:
        subj.csr = (const unsigned char *)sub;
        subj.csrlen = slen;
        break;
    case HSM_DER_SPKI:
        subj.spki = (const unsigned char *)sub;
        subj.spkilen = slen;
        break;
    case HSM_DER_CERT:
        hsm_err_set(&err, "a certificate was given where a certificate request or "
                          "SubjectPublicKeyInfo was expected");
        return lhsm_fail(L, &err);
    default:
        hsm_err_set(&err, slen >= 10 && memcmp(sub, "-----BEGIN", 10) == 0
                    ? "the request is PEM text, not DER (decode it with pem_decode first)"
                    : "neither a DER certificate request nor a DER SubjectPublicKeyInfo");
        return lhsm_fail(L, &err);
    }

    /* the issuer's key type picks the mechanism; the backend checks the rest */
    unsigned char *ispki = NULL, *der = NULL;
    size_t ispkilen = 0;
    struct signer sg;
    int rc = hsm_spki_from_cert((const unsigned char *)icert, ilen, &ispki, &ispkilen, &err);
    if (rc != 0) {
        char msg[sizeof err.msg];
        memcpy(msg, err.msg, sizeof msg);
        hsm_err_set(&err, "issuer certificate: %s", msg);
        return lhsm_fail(L, &err);
    }
    rc = signer_init(&sg, key, (const char *)ispki, ispkilen, &err);
    free(ispki);
    if (rc != 0
        || hsm_cert_issue(&subj, (const unsigned char *)icert, ilen, &a.o, sign_on_token, &sg,
                          &der, &derlen, &err) != 0)
        return lhsm_fail(L, &err);
    lua_pushlstring(L, (const char *)der, derlen);
    free(der);
    return 1;
}

/* core.cert_verify(leaf_der, ca_der, [at=now]) -> true | nil, err
 *   err starts with the class of the problem: "signature:", "expired:", "not yet valid:",
 *   "not a CA:", "issuer mismatch:" or "invalid:". */
static int l_cert_verify(lua_State *L)
{
    size_t llen, clen;
    const char *leaf = luaL_checklstring(L, 1, &llen);
    const char *ca = luaL_checklstring(L, 2, &clen);
    lua_Integer at = luaL_optinteger(L, 3, 0);
    hsm_err err;
    if (hsm_cert_verify_chain((const unsigned char *)leaf, llen, (const unsigned char *)ca, clen,
                              (long long)at, &err) != 0)
        return lhsm_fail(L, &err);
    lua_pushboolean(L, 1);
    return 1;
}

static void push_hex(lua_State *L, const unsigned char *p, size_t n)
{
    static const char digits[] = "0123456789abcdef";
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (size_t i = 0; i < n; i++) {
        luaL_addchar(&b, digits[p[i] >> 4]);
        luaL_addchar(&b, digits[p[i] & 15]);
    }
    luaL_pushresult(&b);
}

/* core.cert_info(der) -> {subject=, issuer=, cn=, org=, subject_serial=, issuer_cn=,
 *   serial= (hex), sig_alg=, not_before=, not_after= (unix times), is_ca=, pathlen=,
 *   key_usage={"digitalSignature", ...}, ski=, aki= (hex), spki=, subject_der=, issuer_der=
 *   (DER names, as CKA_SUBJECT / CKA_ISSUER want them)} | nil, err
 *   Absent attributes and extensions are nil. */
static int l_cert_info(lua_State *L)
{
    /* RFC 5280 keyUsage bits as OpenSSL's KU_ flags number them */
    static const struct { unsigned bit; const char *name; } ku[] = {
        {0x80, "digitalSignature"}, {0x40, "nonRepudiation"}, {0x20, "keyEncipherment"},
        {0x10, "dataEncipherment"}, {0x08, "keyAgreement"}, {0x04, "keyCertSign"},
        {0x02, "cRLSign"}, {0x01, "encipherOnly"}, {0x8000, "decipherOnly"},
    };
    size_t len;
    const char *der = luaL_checklstring(L, 1, &len);
    hsm_cert_details d;
    hsm_err err;
    if (hsm_cert_inspect((const unsigned char *)der, len, &d, &err) != 0)
        return lhsm_fail(L, &err);
    lua_createtable(L, 0, 20);
    lua_pushlstring(L, (const char *)d.spki, d.spkilen);
    lua_pushlstring(L, (const char *)d.subject_der, d.subject_derlen);
    lua_pushlstring(L, (const char *)d.issuer_der, d.issuer_derlen);
    hsm_cert_details_free(&d);   /* before anything that could raise */
    lua_setfield(L, -4, "issuer_der");
    lua_setfield(L, -3, "subject_der");
    lua_setfield(L, -2, "spki");
    set_nonempty(L, "subject", d.subject);
    set_nonempty(L, "issuer", d.issuer);
    set_nonempty(L, "cn", d.cn);
    set_nonempty(L, "org", d.org);
    set_nonempty(L, "subject_serial", d.subject_serial);
    set_nonempty(L, "issuer_cn", d.issuer_cn);
    set_nonempty(L, "serial", d.serial);
    set_nonempty(L, "sig_alg", d.sig_alg);
    lua_pushinteger(L, (lua_Integer)d.not_before);
    lua_setfield(L, -2, "not_before");
    lua_pushinteger(L, (lua_Integer)d.not_after);
    lua_setfield(L, -2, "not_after");
    lua_pushboolean(L, d.is_ca);
    lua_setfield(L, -2, "is_ca");
    if (d.pathlen >= 0) {
        lua_pushinteger(L, d.pathlen);
        lua_setfield(L, -2, "pathlen");
    }
    if (d.has_key_usage) {
        lua_newtable(L);
        int n = 0;
        for (size_t i = 0; i < sizeof ku / sizeof ku[0]; i++)
            if (d.key_usage & ku[i].bit) {
                lua_pushstring(L, ku[i].name);
                lua_rawseti(L, -2, ++n);
            }
        lua_setfield(L, -2, "key_usage");
    }
    if (d.skilen) {
        push_hex(L, d.ski, d.skilen);
        lua_setfield(L, -2, "ski");
    }
    if (d.akilen) {
        push_hex(L, d.aki, d.akilen);
        lua_setfield(L, -2, "aki");
    }
    return 1;
}

void lhsm_open_x509(lua_State *L)
{
    static const luaL_Reg fns[] = {
        {"self_signed_cert", l_self_signed_cert}, {"cert_info", l_cert_info},
        {"csr", l_csr}, {"csr_info", l_csr_info}, {"issue_cert", l_issue_cert},
        {"cert_verify", l_cert_verify}, {NULL, NULL}};
    luaL_setfuncs(L, fns, 0);
}
