/* ossl.c - OpenSSL 3 helpers: SubjectPublicKeyInfo from PKCS#11 attributes, digests,
 * certificates signed through a raw HSM signer, PEM. See hsm_ossl.h.
 *
 * Only public data passes through here. OpenSSL's error queue is cleared on every failure
 * path that reads it, so a later caller never sees our stale errors. */
#include "hsm_ossl.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

/* ------------------------------------------------------------------ errors */

/* Sets err from fmt; with_reason appends OpenSSL's last reason. Clears OpenSSL's queue. */
static int vfail(hsm_err *err, int with_reason, const char *fmt, va_list ap)
{
    char buf[400];
    vsnprintf(buf, sizeof buf, fmt, ap);
    const char *reason = NULL;
    if (with_reason) {   /* the first error is the innermost, most specific one */
        unsigned long e = ERR_peek_error();
        if (e)
            reason = ERR_reason_error_string(e);
    }
    ERR_clear_error();
    if (reason)
        return hsm_err_set(err, "%s (OpenSSL: %s)", buf, reason);
    return hsm_err_set(err, "%s", buf);
}

/* Our own failure. Returns -1. */
__attribute__((format(printf, 2, 3)))
static int fail(hsm_err *err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = vfail(err, 0, fmt, ap);
    va_end(ap);
    return r;
}

/* A failure reported by OpenSSL: the sentence plus OpenSSL's reason. Returns -1. */
__attribute__((format(printf, 2, 3)))
static int ofail(hsm_err *err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = vfail(err, 1, fmt, ap);
    va_end(ap);
    return r;
}

static int nomem(hsm_err *err)
{
    return fail(err, "out of memory");
}

/* ------------------------------------------------------------------ small helpers */

static int ascii_ieq(const char *a, const char *b)
{
    for (; *a && *b; a++, b++) {
        int ca = (*a >= 'A' && *a <= 'Z') ? *a + 32 : *a;
        int cb = (*b >= 'A' && *b <= 'Z') ? *b + 32 : *b;
        if (ca != cb)
            return 0;
    }
    return *a == *b;
}

/* Copies an OpenSSL-allocated buffer of n bytes into malloc'd memory. */
static int dup_out(const unsigned char *src, size_t n, unsigned char **out, size_t *outlen,
                   hsm_err *err)
{
    unsigned char *p = malloc(n ? n : 1);
    if (!p)
        return nomem(err);
    if (n)
        memcpy(p, src, n);
    *out = p;
    *outlen = n;
    return 0;
}

static int pubkey_der(EVP_PKEY *pk, unsigned char **der, size_t *derlen, hsm_err *err)
{
    unsigned char *buf = NULL;
    int n = i2d_PUBKEY(pk, &buf);
    if (n <= 0)
        return ofail(err, "cannot encode the SubjectPublicKeyInfo");
    int r = dup_out(buf, (size_t)n, der, derlen, err);
    OPENSSL_free(buf);
    return r;
}

static int cert_der(X509 *x, unsigned char **der, size_t *derlen, hsm_err *err)
{
    unsigned char *buf = NULL;
    int n = i2d_X509(x, &buf);
    if (n <= 0)
        return ofail(err, "cannot encode the certificate");
    int r = dup_out(buf, (size_t)n, der, derlen, err);
    OPENSSL_free(buf);
    return r;
}

/* Copies a string of n bytes into dst (NUL-terminated); dst NULL skips it. */
static int str_out(char *dst, size_t dlen, const char *src, size_t n, const char *what,
                   hsm_err *err)
{
    if (!dst)
        return 0;
    if (n + 1 > dlen)
        return fail(err, "%s (%zu bytes) does not fit in a %zu-byte buffer", what, n + 1, dlen);
    memcpy(dst, src, n);
    dst[n] = '\0';
    return 0;
}

/* Reads a DER tag and definite length at p[0..n): *hdr is the header size, *clen the
 * content length (which may run past n; callers compare). Returns -1 when malformed. */
static int der_header(const unsigned char *p, size_t n, unsigned *tag, size_t *hdr, size_t *clen)
{
    if (n < 2 || (p[0] & 0x1f) == 0x1f)   /* high-tag-number form: not used here */
        return -1;
    *tag = p[0];
    if (p[1] < 0x80) {
        *hdr = 2;
        *clen = p[1];
        return 0;
    }
    size_t nb = p[1] & 0x7f;
    if (nb == 0 || nb > 4 || n < 2 + nb)  /* indefinite or absurd lengths */
        return -1;
    size_t len = 0;
    for (size_t i = 0; i < nb; i++)
        len = (len << 8) | p[2 + i];
    *hdr = 2 + nb;
    *clen = len;
    return 0;
}

/* The checks every DER input gets before it is parsed: present, not too large, not PEM. */
static int der_precheck(const unsigned char *der, size_t len, const char *what, hsm_err *err)
{
    if (!der || len == 0)
        return fail(err, "%s is empty", what);
    if (len > LONG_MAX)
        return fail(err, "%s is too large (%zu bytes)", what, len);
    if (len >= 10 && memcmp(der, "-----BEGIN", 10) == 0)
        return fail(err, "%s is PEM text, not DER (decode it with hsm_pem_decode first)", what);
    return 0;
}

/* After parsing: the object must span exactly len bytes (end = where the parser stopped). */
static int der_exact(const unsigned char *der, size_t len, const unsigned char *end,
                     const char *what, hsm_err *err)
{
    if (end == der + len)
        return 0;
    return fail(err, "%zu unexpected bytes after the DER %s", (size_t)(der + len - end), what);
}

/* Parses a DER certificate that must span exactly len bytes. */
static X509 *cert_parse(const unsigned char *der, size_t len, hsm_err *err)
{
    if (der_precheck(der, len, "certificate", err) != 0)
        return NULL;
    const unsigned char *p = der;
    X509 *x = d2i_X509(NULL, &p, (long)len);
    if (!x) {
        ofail(err, "not a DER X.509 certificate");
        return NULL;
    }
    if (der_exact(der, len, p, "certificate", err) != 0) {
        X509_free(x);
        return NULL;
    }
    return x;
}

/* Parses a DER SubjectPublicKeyInfo that must span exactly len bytes into a usable key. */
static EVP_PKEY *pubkey_parse(const unsigned char *spki, size_t len, hsm_err *err)
{
    if (!spki || len == 0) {
        fail(err, "SubjectPublicKeyInfo is empty");
        return NULL;
    }
    if (len > LONG_MAX) {
        fail(err, "SubjectPublicKeyInfo is too large (%zu bytes)", len);
        return NULL;
    }
    const unsigned char *p = spki;
    X509_PUBKEY *xp = d2i_X509_PUBKEY(NULL, &p, (long)len);
    if (!xp) {
        ofail(err, "not a DER SubjectPublicKeyInfo");
        return NULL;
    }
    if (p != spki + len) {
        X509_PUBKEY_free(xp);
        fail(err, "%zu unexpected bytes after the DER SubjectPublicKeyInfo",
             (size_t)(spki + len - p));
        return NULL;
    }
    EVP_PKEY *pk = X509_PUBKEY_get(xp);
    if (!pk) {
        ASN1_OBJECT *alg = NULL;
        char oid[80] = "?";
        if (X509_PUBKEY_get0_param(&alg, NULL, NULL, NULL, xp) && alg)
            OBJ_obj2txt(oid, sizeof oid, alg, 1);
        ofail(err, "SubjectPublicKeyInfo with algorithm %s cannot be decoded", oid);
    }
    X509_PUBKEY_free(xp);
    return pk;
}

/* ------------------------------------------------------------------ RSA */

int hsm_spki_rsa(const unsigned char *n, size_t nlen, const unsigned char *e, size_t elen,
                 unsigned char **der, size_t *derlen, hsm_err *err)
{
    /* big-endian, possibly with leading zero bytes */
    while (n && nlen > 0 && n[0] == 0) {
        n++;
        nlen--;
    }
    while (e && elen > 0 && e[0] == 0) {
        e++;
        elen--;
    }
    if (!n || nlen == 0)
        return fail(err, "RSA modulus (CKA_MODULUS) is empty or zero");
    if (!e || elen == 0)
        return fail(err, "RSA public exponent (CKA_PUBLIC_EXPONENT) is empty or zero");
    if (nlen > INT_MAX / 8 || elen > INT_MAX / 8)
        return fail(err, "RSA key components are too large");
    if (!(n[nlen - 1] & 1))
        return fail(err, "RSA modulus (CKA_MODULUS) is even");
    if (!(e[elen - 1] & 1) || (elen == 1 && e[0] == 1))
        return fail(err, "RSA public exponent (CKA_PUBLIC_EXPONENT) is not an odd number "
                         "greater than 1");
    if (elen > nlen || (elen == nlen && memcmp(e, n, nlen) >= 0))
        return fail(err, "RSA public exponent (CKA_PUBLIC_EXPONENT) is not smaller than "
                         "the modulus");

    int rc = -1;
    BIGNUM *bn = BN_bin2bn(n, (int)nlen, NULL), *be = BN_bin2bn(e, (int)elen, NULL);
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *ctx = NULL;
    EVP_PKEY *pk = NULL;
    if (!bn || !be || !bld) {
        nomem(err);
        goto out;
    }
    if (!OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn)
        || !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, be)
        || !(params = OSSL_PARAM_BLD_to_param(bld))) {
        ofail(err, "cannot build RSA key parameters");
        goto out;
    }
    ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
    if (!ctx || EVP_PKEY_fromdata_init(ctx) <= 0
        || EVP_PKEY_fromdata(ctx, &pk, EVP_PKEY_PUBLIC_KEY, params) <= 0) {
        ofail(err, "OpenSSL refused the RSA public key (%zu-bit modulus)", nlen * 8);
        goto out;
    }
    rc = pubkey_der(pk, der, derlen, err);
out:
    EVP_PKEY_free(pk);
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    BN_free(bn);
    BN_free(be);
    return rc;
}

/* ------------------------------------------------------------------ EC / EdDSA */

enum curve_kind { CURVE_WEIERSTRASS, CURVE_EDWARDS, CURVE_MONTGOMERY };

typedef struct curve {
    enum curve_kind kind;
    int nid;            /* NID_X9_62_prime256v1 ..., or NID_ED25519 / NID_X25519 ... */
    char name[64];      /* "P-256", "secp256k1", "Ed25519" */
    size_t rawlen;      /* the public key's raw length: 1 + 2 * field bytes, or 32/57/32/56 */
} curve;

/* id-Ed25519 etc. are recognized by NID; GnuPG's pre-RFC 8410 Ed25519 OID
 * 1.3.6.1.4.1.11591.15.1 is recognized by its bytes. */
static const unsigned char OID_GNU_ED25519[] = {
    0x06, 0x09, 0x2b, 0x06, 0x01, 0x04, 0x01, 0xda, 0x47, 0x0f, 0x01};

static int curve_ecx(curve *c, int nid)
{
    static const struct { int nid; enum curve_kind kind; const char *name; size_t len; } ecx[] = {
        {NID_ED25519, CURVE_EDWARDS, "Ed25519", 32},
        {NID_ED448, CURVE_EDWARDS, "Ed448", 57},
        {NID_X25519, CURVE_MONTGOMERY, "X25519", 32},
        {NID_X448, CURVE_MONTGOMERY, "X448", 56},
    };
    for (size_t i = 0; i < sizeof ecx / sizeof ecx[0]; i++)
        if (ecx[i].nid == nid) {
            c->kind = ecx[i].kind;
            c->nid = nid;
            snprintf(c->name, sizeof c->name, "%s", ecx[i].name);
            c->rawlen = ecx[i].len;
            return 1;
        }
    return 0;
}

/* A Weierstrass curve OpenSSL knows by NID. Returns 0 when it is none. */
static int curve_weierstrass(curve *c, int nid)
{
    if (nid == NID_undef)
        return 0;
    EC_GROUP *g = EC_GROUP_new_by_curve_name_ex(NULL, NULL, nid);
    if (!g) {
        ERR_clear_error();
        return 0;
    }
    int deg = EC_GROUP_get_degree(g);
    EC_GROUP_free(g);
    if (deg <= 0)
        return 0;
    const char *nist = EC_curve_nid2nist(nid);
    c->kind = CURVE_WEIERSTRASS;
    c->nid = nid;
    snprintf(c->name, sizeof c->name, "%s", nist ? nist : OBJ_nid2sn(nid));
    c->rawlen = 1 + 2 * (((size_t)deg + 7) / 8);
    return 1;
}

/* Resolves DER CKA_EC_PARAMS to a curve. */
static int curve_from_params(const unsigned char *params, size_t plen, curve *c, hsm_err *err)
{
    unsigned tag;
    size_t hdr, clen;
    if (!params || plen == 0)
        return fail(err, "CKA_EC_PARAMS is empty");
    if (der_header(params, plen, &tag, &hdr, &clen) < 0 || hdr + clen != plen)
        return fail(err, "CKA_EC_PARAMS is not a single DER value (%zu bytes starting 0x%02x)",
                    plen, params[0]);
    switch (tag) {
    case 0x06: {   /* namedCurve OBJECT IDENTIFIER */
        if (plen == sizeof OID_GNU_ED25519 && memcmp(params, OID_GNU_ED25519, plen) == 0) {
            curve_ecx(c, NID_ED25519);
            return 0;
        }
        const unsigned char *p = params;
        ASN1_OBJECT *obj = d2i_ASN1_OBJECT(NULL, &p, (long)plen);
        if (!obj)
            return ofail(err, "CKA_EC_PARAMS holds a malformed OBJECT IDENTIFIER");
        int nid = OBJ_obj2nid(obj);
        char oid[80];
        OBJ_obj2txt(oid, sizeof oid, obj, 1);
        ASN1_OBJECT_free(obj);
        if (curve_ecx(c, nid) || curve_weierstrass(c, nid))
            return 0;
        if (nid != NID_undef)
            return fail(err, "CKA_EC_PARAMS names %s (%s), which is not a supported curve",
                        oid, OBJ_nid2sn(nid));
        return fail(err, "CKA_EC_PARAMS names the unknown curve OID %s", oid);
    }
    case 0x13:     /* PrintableString curve name (PKCS#11 3.0: "edwards25519" ...) */
    case 0x0c: {   /* UTF8String, seen in the wild */
        char name[64];
        if (clen == 0 || clen >= sizeof name || memchr(params + hdr, 0, clen))
            return fail(err, "CKA_EC_PARAMS holds a curve name of bad length %zu", clen);
        memcpy(name, params + hdr, clen);
        name[clen] = '\0';
        static const struct { const char *name; int nid; } names[] = {
            {"edwards25519", NID_ED25519}, {"ed25519", NID_ED25519},
            {"edwards448", NID_ED448}, {"ed448", NID_ED448},
            {"curve25519", NID_X25519}, {"x25519", NID_X25519},
            {"curve448", NID_X448}, {"x448", NID_X448},
        };
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
            if (ascii_ieq(name, names[i].name)) {
                curve_ecx(c, names[i].nid);
                return 0;
            }
        int nid = EC_curve_nist2nid(name);
        if (nid == NID_undef)
            nid = OBJ_sn2nid(name);
        if (nid == NID_undef)
            nid = OBJ_ln2nid(name);
        if (curve_weierstrass(c, nid))
            return 0;
        return fail(err, "CKA_EC_PARAMS names the unknown curve \"%s\"", name);
    }
    case 0x30:
        return fail(err, "CKA_EC_PARAMS has explicit curve parameters; only named curves are "
                         "supported");
    case 0x05:
        return fail(err, "CKA_EC_PARAMS is implicitlyCA (NULL); only named curves are "
                         "supported");
    default:
        return fail(err, "CKA_EC_PARAMS is not a curve OID or curve name (DER tag 0x%02x)", tag);
    }
}

/* Picks the raw public key out of CKA_EC_POINT: an OCTET STRING whose content is exactly
 * the curve's key length is unwrapped; otherwise the bytes must be the raw key. */
static int point_raw(const curve *c, const unsigned char *pt, size_t ptlen,
                     const unsigned char **raw, hsm_err *err)
{
    unsigned tag;
    size_t hdr, clen;
    if (pt && ptlen > 0 && der_header(pt, ptlen, &tag, &hdr, &clen) == 0 && tag == 0x04
        && hdr + clen == ptlen && clen == c->rawlen) {
        *raw = pt + hdr;
        return 0;
    }
    if (pt && ptlen == c->rawlen) {
        *raw = pt;
        return 0;
    }
    if (c->kind == CURVE_WEIERSTRASS)
        return fail(err, "EC point is not an uncompressed point on %s: %zu bytes, expected %zu "
                         "(raw) or %zu (in an OCTET STRING)", c->name, ptlen, c->rawlen,
                    c->rawlen + (c->rawlen < 128 ? 2 : 3));
    return fail(err, "%s public key (CKA_EC_POINT) must be %zu bytes, raw or in an OCTET "
                     "STRING; got %zu bytes", c->name, c->rawlen, ptlen);
}

int hsm_spki_ec(const unsigned char *params, size_t plen, const unsigned char *point, size_t ptlen,
                unsigned char **der, size_t *derlen, hsm_err *err)
{
    curve c = {0};
    const unsigned char *raw = NULL;
    if (curve_from_params(params, plen, &c, err) < 0 || point_raw(&c, point, ptlen, &raw, err) < 0)
        return -1;

    if (c.kind != CURVE_WEIERSTRASS) {
        EVP_PKEY *pk = EVP_PKEY_new_raw_public_key(c.nid, NULL, raw, c.rawlen);
        if (!pk)
            return ofail(err, "OpenSSL refused the %s public key", c.name);
        int rc = pubkey_der(pk, der, derlen, err);
        EVP_PKEY_free(pk);
        return rc;
    }

    if (raw[0] != 0x04)
        return fail(err, "EC point is not an uncompressed point on %s: it starts with 0x%02x%s, "
                         "not 0x04", c.name, raw[0],
                    raw[0] == 0x02 || raw[0] == 0x03 ? " (compressed)" : "");
    int rc = -1;
    EVP_PKEY_CTX *ctx = NULL, *chk = NULL;
    EVP_PKEY *pk = NULL;
    OSSL_PARAM op[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME,
                                         (char *)OBJ_nid2sn(c.nid), 0),
        OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, (void *)raw, c.rawlen),
        OSSL_PARAM_construct_end(),
    };
    ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    if (!ctx || EVP_PKEY_fromdata_init(ctx) <= 0) {
        ofail(err, "cannot create an EC key context");
        goto out;
    }
    if (EVP_PKEY_fromdata(ctx, &pk, EVP_PKEY_PUBLIC_KEY, op) <= 0) {
        ofail(err, "EC point is not an uncompressed point on %s: it is not on the curve", c.name);
        goto out;
    }
    chk = EVP_PKEY_CTX_new_from_pkey(NULL, pk, NULL);
    if (!chk || EVP_PKEY_public_check(chk) <= 0) {
        ofail(err, "EC point is not an uncompressed point on %s: public key check failed", c.name);
        goto out;
    }
    rc = pubkey_der(pk, der, derlen, err);
out:
    EVP_PKEY_CTX_free(chk);
    EVP_PKEY_free(pk);
    EVP_PKEY_CTX_free(ctx);
    return rc;
}

/* ------------------------------------------------------------------ SPKI from certs, info */

int hsm_spki_from_cert(const unsigned char *der, size_t len, unsigned char **spki,
                       size_t *spkilen, hsm_err *err)
{
    X509 *x = cert_parse(der, len, err);
    if (!x)
        return -1;
    unsigned char *buf = NULL;
    int n = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(x), &buf);
    int rc = n > 0 ? dup_out(buf, (size_t)n, spki, spkilen, err)
                   : ofail(err, "cannot encode the certificate's SubjectPublicKeyInfo");
    OPENSSL_free(buf);
    X509_free(x);
    return rc;
}

/* Names pk as hsm_spki_info does. */
static int key_describe(EVP_PKEY *pk, char *alg, size_t alglen, int *bits, hsm_err *err)
{
    char name[80];
    int b = EVP_PKEY_get_bits(pk);
    int id = EVP_PKEY_get_base_id(pk);
    switch (id) {
    case EVP_PKEY_RSA:
        snprintf(name, sizeof name, "RSA");
        break;
    case EVP_PKEY_RSA_PSS:
        snprintf(name, sizeof name, "RSA-PSS");
        break;
    case EVP_PKEY_EC: {
        char group[64];
        size_t glen = 0;
        if (!EVP_PKEY_get_group_name(pk, group, sizeof group, &glen))
            return ofail(err, "EC public key has no named curve");
        int nid = OBJ_txt2nid(group);
        const char *nist = nid != NID_undef ? EC_curve_nid2nist(nid) : NULL;
        snprintf(name, sizeof name, "EC %s", nist ? nist : group);
        break;
    }
    case EVP_PKEY_ED25519: case EVP_PKEY_ED448: case EVP_PKEY_X25519: case EVP_PKEY_X448: {
        curve c = {0};
        size_t rl = 0;
        curve_ecx(&c, id);
        snprintf(name, sizeof name, "%s", c.name);
        if (EVP_PKEY_get_raw_public_key(pk, NULL, &rl) && rl > 0)
            b = (int)(rl * 8);
        break;
    }
    default: {
        const char *sn = OBJ_nid2sn(id);
        snprintf(name, sizeof name, "%s", sn ? sn : "unknown");
        break;
    }
    }
    ERR_clear_error();
    if (alg && str_out(alg, alglen, name, strlen(name), "key algorithm name", err) < 0)
        return -1;
    if (bits)
        *bits = b;
    return 0;
}

int hsm_spki_info(const unsigned char *spki, size_t len, char *alg, size_t alglen, int *bits,
                  hsm_err *err)
{
    EVP_PKEY *pk = pubkey_parse(spki, len, err);
    if (!pk)
        return -1;
    int rc = key_describe(pk, alg, alglen, bits, err);
    EVP_PKEY_free(pk);
    return rc;
}

void hsm_pubparts_free(hsm_pubparts *p)
{
    free(p->a);
    free(p->b);
    memset(p, 0, sizeof *p);
}

static unsigned char *der_of_obj(const ASN1_OBJECT *o, size_t *len)
{
    int n = i2d_ASN1_OBJECT(o, NULL);
    unsigned char *buf = n > 0 ? malloc((size_t)n) : NULL, *q = buf;
    if (buf && i2d_ASN1_OBJECT(o, &q) != n) {
        free(buf);
        return NULL;
    }
    *len = buf ? (size_t)n : 0;
    return buf;
}

/* DER OCTET STRING around raw[0..n) (n < 65536). */
static unsigned char *der_octets(const unsigned char *raw, size_t n, size_t *len)
{
    size_t hdr = n < 128 ? 2 : n < 256 ? 3 : 4;
    unsigned char *buf = malloc(hdr + n);
    if (!buf)
        return NULL;
    buf[0] = 0x04;
    if (n < 128) {
        buf[1] = (unsigned char)n;
    } else if (n < 256) {
        buf[1] = 0x81;
        buf[2] = (unsigned char)n;
    } else {
        buf[1] = 0x82;
        buf[2] = (unsigned char)(n >> 8);
        buf[3] = (unsigned char)n;
    }
    memcpy(buf + hdr, raw, n);
    *len = hdr + n;
    return buf;
}

static unsigned char *bn_param(EVP_PKEY *pk, const char *name, size_t *len)
{
    BIGNUM *bn = NULL;
    if (!EVP_PKEY_get_bn_param(pk, name, &bn))
        return NULL;
    int n = BN_num_bytes(bn);
    unsigned char *buf = malloc(n > 0 ? (size_t)n : 1);
    if (buf)
        BN_bn2bin(bn, buf);
    *len = (size_t)n;
    BN_free(bn);
    return buf;
}

int hsm_spki_parts(const unsigned char *spki, size_t len, hsm_pubparts *out, hsm_err *err)
{
    memset(out, 0, sizeof *out);
    EVP_PKEY *pk = pubkey_parse(spki, len, err);
    if (!pk)
        return -1;
    unsigned char raw[200];
    size_t rawlen = 0;
    int id = EVP_PKEY_get_base_id(pk);
    if (id == EVP_PKEY_RSA) {
        out->kind = "RSA";
        out->a = bn_param(pk, OSSL_PKEY_PARAM_RSA_N, &out->alen);
        out->b = bn_param(pk, OSSL_PKEY_PARAM_RSA_E, &out->blen);
    } else if (id == EVP_PKEY_EC) {
        char group[64];
        out->kind = "EC";
        ASN1_OBJECT *oid = NULL;
        if (EVP_PKEY_get_utf8_string_param(pk, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group, NULL))
            oid = OBJ_txt2obj(group, 0);
        if (oid)
            out->a = der_of_obj(oid, &out->alen);
        ASN1_OBJECT_free(oid);
        if (EVP_PKEY_get_octet_string_param(pk, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, raw,
                                            sizeof raw, &rawlen))
            out->b = der_octets(raw, rawlen, &out->blen);
    } else if (id == EVP_PKEY_ED25519 || id == EVP_PKEY_ED448) {
        out->kind = "EDWARDS";
        out->a = der_of_obj(OBJ_nid2obj(id == EVP_PKEY_ED25519 ? NID_ED25519 : NID_ED448), &out->alen);
        rawlen = sizeof raw;
        if (EVP_PKEY_get_raw_public_key(pk, raw, &rawlen))
            out->b = der_octets(raw, rawlen, &out->blen);
    } else {
        EVP_PKEY_free(pk);
        return fail(err, "public keys of type %s cannot be imported", OBJ_nid2sn(id));
    }
    EVP_PKEY_free(pk);
    if (!out->a || !out->b) {
        hsm_pubparts_free(out);
        return ofail(err, "cannot decode the public key");
    }
    return 0;
}

/* ------------------------------------------------------------------ digests */

static const struct digest_name {
    const char *name, *alt;
    const EVP_MD *(*md)(void);
} DIGESTS[] = {
    {"sha1", "SHA-1", EVP_sha1},
    {"sha224", "SHA-224", EVP_sha224},
    {"sha256", "SHA-256", EVP_sha256},
    {"sha384", "SHA-384", EVP_sha384},
    {"sha512", "SHA-512", EVP_sha512},
};

static const EVP_MD *md_by_name(const char *alg)
{
    if (!alg)
        return NULL;
    for (size_t i = 0; i < sizeof DIGESTS / sizeof DIGESTS[0]; i++)
        if (ascii_ieq(alg, DIGESTS[i].name) || ascii_ieq(alg, DIGESTS[i].alt))
            return DIGESTS[i].md();
    return NULL;
}

void hsm_sha256(const void *data, size_t len, unsigned char out[32])
{
    if (!EVP_Digest(data ? data : "", data ? len : 0, out, NULL, EVP_sha256(), NULL)) {
        memset(out, 0, 32);
        ERR_clear_error();
    }
}

int hsm_digest(const char *alg, const void *data, size_t len, unsigned char *out, size_t *outlen,
               hsm_err *err)
{
    const EVP_MD *md = md_by_name(alg);
    if (!md)
        return fail(err, "unknown digest \"%s\" (expected sha1, sha224, sha256, sha384 or sha512)",
                    alg ? alg : "(null)");
    if (!data && len)
        return fail(err, "digest input is NULL");
    size_t need = (size_t)EVP_MD_get_size(md);
    if (!out || !outlen || *outlen < need)
        return fail(err, "%s digest needs a %zu-byte output buffer", alg, need);
    unsigned int n = 0;
    if (!EVP_Digest(data ? data : "", len, out, &n, md, NULL))
        return ofail(err, "%s digest failed", alg);
    *outlen = n;
    return 0;
}

/* ------------------------------------------------------------------ signing through an HSM */

/* A signature algorithm for a signer's public key: what to hash, how to wrap it for the
 * raw mechanism, and which AlgorithmIdentifier to write. */
typedef struct sig_alg {
    int key_type;                  /* EVP_PKEY_RSA or EVP_PKEY_EC */
    const EVP_MD *md;
    int sig_nid;                   /* NID_sha256WithRSAEncryption, NID_ecdsa_with_SHA256 ... */
    size_t sig_bytes;              /* RSA: modulus bytes; EC: bytes of each of r and s */
    const unsigned char *prefix;   /* RSA: DER DigestInfo header before the hash */
    size_t prefix_len;
} sig_alg;

/* DigestInfo headers, RFC 8017 section 9.2 note 1. */
static const unsigned char DI_SHA256[] = {0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48,
    0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20};
static const unsigned char DI_SHA384[] = {0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48,
    0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05, 0x00, 0x04, 0x30};
static const unsigned char DI_SHA512[] = {0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48,
    0x01, 0x65, 0x03, 0x04, 0x02, 0x03, 0x05, 0x00, 0x04, 0x40};

static int sig_alg_for(EVP_PKEY *signer, const char *hash, sig_alg *sa, hsm_err *err)
{
    static const struct { const char *name; int md_nid; const unsigned char *di; size_t dilen; }
    hashes[] = {
        {"sha256", NID_sha256, DI_SHA256, sizeof DI_SHA256},
        {"sha384", NID_sha384, DI_SHA384, sizeof DI_SHA384},
        {"sha512", NID_sha512, DI_SHA512, sizeof DI_SHA512},
    };
    size_t h;
    const char *hname = hash ? hash : "sha256";
    for (h = 0; h < sizeof hashes / sizeof hashes[0]; h++)
        if (ascii_ieq(hname, hashes[h].name))
            break;
    if (h == sizeof hashes / sizeof hashes[0])
        return fail(err, "signature hash \"%s\" is not supported (use sha256, sha384 or sha512)",
                    hname);

    memset(sa, 0, sizeof *sa);
    sa->key_type = EVP_PKEY_get_base_id(signer);
    sa->md = md_by_name(hashes[h].name);
    int bits = EVP_PKEY_get_bits(signer);
    switch (sa->key_type) {
    case EVP_PKEY_RSA:
        sa->sig_nid = hashes[h].md_nid == NID_sha256 ? NID_sha256WithRSAEncryption
                    : hashes[h].md_nid == NID_sha384 ? NID_sha384WithRSAEncryption
                    : NID_sha512WithRSAEncryption;
        sa->prefix = hashes[h].di;
        sa->prefix_len = hashes[h].dilen;
        break;
    case EVP_PKEY_EC:
        sa->sig_nid = hashes[h].md_nid == NID_sha256 ? NID_ecdsa_with_SHA256
                    : hashes[h].md_nid == NID_sha384 ? NID_ecdsa_with_SHA384
                    : NID_ecdsa_with_SHA512;
        break;
    case EVP_PKEY_ED25519:
        return fail(err, "certificates for Ed25519 keys are not supported yet");
    case EVP_PKEY_ED448:
        return fail(err, "certificates for Ed448 keys are not supported yet");
    default: {
        char name[80] = "unknown";
        key_describe(signer, name, sizeof name, NULL, err);
        return fail(err, "certificates for %s keys are not supported (RSA and EC only)", name);
    }
    }
    if (!sa->md || bits <= 0)
        return ofail(err, "cannot size the %s signature", hname);
    sa->sig_bytes = ((size_t)bits + 7) / 8;
    return 0;
}

static int set_algor(X509_ALGOR *a, const sig_alg *sa)
{
    /* RSA PKCS#1 v1.5 carries NULL parameters; ECDSA omits them (RFC 5758). */
    return X509_ALGOR_set0(a, OBJ_nid2obj(sa->sig_nid),
                           sa->key_type == EVP_PKEY_RSA ? V_ASN1_NULL : V_ASN1_UNDEF, NULL)
           ? 0 : -1;
}

/* Signs the DER to-be-signed bytes through the raw signer: hashes them, builds the
 * mechanism input (DigestInfo for RSA, the bare hash for ECDSA), and returns the signature
 * as X.509 carries it (PKCS#1 bytes at full modulus length; DER ECDSA-Sig-Value). Shared by
 * certificates (and, later, CSRs and certificates signed by another key). */
static int sign_tbs(const sig_alg *sa, const unsigned char *tbs, size_t tbslen,
                    hsm_raw_signer sign, void *ctx, unsigned char **sig, size_t *siglen,
                    hsm_err *err)
{
    unsigned char in[32 + EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    size_t inlen = sa->prefix_len;
    if (sa->prefix_len)
        memcpy(in, sa->prefix, sa->prefix_len);
    if (!EVP_Digest(tbs, tbslen, in + inlen, &mdlen, sa->md, NULL))
        return ofail(err, "cannot hash the data to be signed");
    inlen += mdlen;

    unsigned char *raw = NULL;
    size_t rawlen = 0;
    hsm_err_clear(err);
    if (sign(ctx, in, inlen, &raw, &rawlen, err) != 0) {
        free(raw);
        if (!err->msg[0])
            fail(err, "the signer failed without saying why");
        return -1;
    }
    if (!raw || rawlen == 0) {
        free(raw);
        return fail(err, "the signer returned an empty signature");
    }

    int rc = -1;
    if (sa->key_type == EVP_PKEY_RSA) {
        if (rawlen > sa->sig_bytes) {
            fail(err, "the signer returned a %zu-byte RSA signature for a %zu-byte modulus",
                 rawlen, sa->sig_bytes);
            goto out;
        }
        unsigned char *s = calloc(1, sa->sig_bytes);   /* left-pad short results with zeros */
        if (!s) {
            nomem(err);
            goto out;
        }
        memcpy(s + sa->sig_bytes - rawlen, raw, rawlen);
        *sig = s;
        *siglen = sa->sig_bytes;
        rc = 0;
        goto out;
    }

    /* ECDSA: r||s, each half at most the order's length */
    if (rawlen % 2 || rawlen / 2 > sa->sig_bytes) {
        fail(err, "the signer returned %zu bytes; expected ECDSA r||s of 2 x %zu bytes",
             rawlen, sa->sig_bytes);
        goto out;
    }
    size_t half = rawlen / 2;
    ECDSA_SIG *es = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(raw, (int)half, NULL), *s = BN_bin2bn(raw + half, (int)half, NULL);
    if (!es || !r || !s) {
        nomem(err);
    } else if (BN_is_zero(r) || BN_is_zero(s)) {
        fail(err, "the signer returned an ECDSA signature with r or s = 0");
    } else if (!ECDSA_SIG_set0(es, r, s)) {
        ofail(err, "cannot assemble the ECDSA signature");
    } else {
        r = s = NULL;   /* owned by es now */
        unsigned char *d = NULL;
        int n = i2d_ECDSA_SIG(es, &d);
        if (n <= 0)
            ofail(err, "cannot encode the ECDSA signature");
        else
            rc = dup_out(d, (size_t)n, sig, siglen, err);
        OPENSSL_free(d);
    }
    BN_free(r);
    BN_free(s);
    ECDSA_SIG_free(es);
out:
    free(raw);
    return rc;
}

/* Puts a finished signature into an X.509 BIT STRING (no unused bits). */
static int set_signature(ASN1_BIT_STRING *bs, const unsigned char *sig, size_t siglen,
                         hsm_err *err)
{
    if (siglen > INT_MAX || !ASN1_BIT_STRING_set(bs, (unsigned char *)sig, (int)siglen))
        return ofail(err, "cannot store the signature");
    bs->flags &= ~(ASN1_STRING_FLAG_BITS_LEFT | 0x07);
    bs->flags |= ASN1_STRING_FLAG_BITS_LEFT;
    return 0;
}

/* Signs a built certificate: signature algorithm in the TBS and the outer structure,
 * TBS DER through sign_tbs, signature installed. */
static int x509_sign_raw(X509 *x, const sig_alg *sa, hsm_raw_signer sign, void *ctx,
                         hsm_err *err)
{
    const ASN1_BIT_STRING *csig = NULL;
    const X509_ALGOR *calg = NULL;
    X509_get0_signature(&csig, &calg, x);
    if (set_algor((X509_ALGOR *)X509_get0_tbs_sigalg(x), sa) < 0
        || set_algor((X509_ALGOR *)calg, sa) < 0)
        return ofail(err, "cannot set the signature algorithm");

    unsigned char *tbs = NULL;
    int tbslen = i2d_re_X509_tbs(x, &tbs);
    if (tbslen <= 0)
        return ofail(err, "cannot encode the TBSCertificate");
    unsigned char *sig = NULL;
    size_t siglen = 0;
    int rc = sign_tbs(sa, tbs, (size_t)tbslen, sign, ctx, &sig, &siglen, err);
    OPENSSL_free(tbs);
    if (rc == 0)
        rc = set_signature((ASN1_BIT_STRING *)csig, sig, siglen, err);
    free(sig);
    return rc;
}

/* What a certificate says besides its signature. Self-signed: issuer == subject. */
typedef struct cert_spec {
    EVP_PKEY *subject_key;
    const X509_NAME *subject;
    const X509_NAME *issuer;
    long days;
    int ca;          /* basicConstraints cA */
    int key_usage;   /* KU_DIGITAL_SIGNATURE | KU_KEY_CERT_SIGN ... (x509v3.h) */
    /* For CA and issued certificates; all zero keeps the plain self-signed defaults. */
    const unsigned char *serial;   /* big-endian; NULL = random 128-bit */
    size_t serial_len;
    long long not_before;          /* unix time; 0 = now */
    int pathlen;                   /* ca only: >= 0 sets pathLenConstraint */
    enum { AKID_NONE, AKID_SELF, AKID_GIVEN } akid_mode;   /* authorityKeyIdentifier */
    const ASN1_OCTET_STRING *akid; /* AKID_GIVEN: the issuer's key identifier */
} cert_spec;

static int add_ext(X509 *x, int nid, void *value, int critical, hsm_err *err)
{
    if (X509_add1_ext_i2d(x, nid, value, critical, X509V3_ADD_DEFAULT) != 1)
        return ofail(err, "cannot add the %s extension", OBJ_nid2ln(nid));
    return 0;
}

/* Builds an unsigned v3 certificate: serial, names, validity, key, extensions. */
static X509 *cert_build(const cert_spec *cs, hsm_err *err)
{
    X509 *x = X509_new();
    BIGNUM *bn = NULL;
    ASN1_INTEGER *serial = NULL;
    BASIC_CONSTRAINTS *bc = NULL;
    ASN1_BIT_STRING *ku = NULL;
    ASN1_OCTET_STRING *ski = NULL;
    AUTHORITY_KEYID *akid = NULL;
    int ok = 0;
    if (!x) {
        nomem(err);
        goto out;
    }

    /* the caller's serial, or a random positive 128-bit one with its top byte in
     * 0x40..0x7f: always 16 bytes */
    unsigned char sn[16];
    const unsigned char *snp = cs->serial;
    size_t snlen = cs->serial_len;
    if (!snp) {
        if (RAND_bytes(sn, sizeof sn) != 1) {
            ofail(err, "cannot draw a random serial number");
            goto out;
        }
        sn[0] = (unsigned char)((sn[0] & 0x3f) | 0x40);
        snp = sn;
        snlen = sizeof sn;
    }
    if (!(bn = BN_bin2bn(snp, (int)snlen, NULL)) || !(serial = BN_to_ASN1_INTEGER(bn, NULL))
        || !X509_set_version(x, X509_VERSION_3) || !X509_set_serialNumber(x, serial)
        || !X509_set_subject_name(x, cs->subject) || !X509_set_issuer_name(x, cs->issuer)) {
        ofail(err, "cannot fill the certificate");
        goto out;
    }
    time_t base = cs->not_before ? (time_t)cs->not_before : time(NULL);
    if (!X509_time_adj_ex(X509_getm_notBefore(x), 0, 0, &base)
        || !X509_time_adj_ex(X509_getm_notAfter(x), (int)cs->days, 0, &base)) {
        ofail(err, "validity of %ld days is out of range", cs->days);
        goto out;
    }
    if (!X509_set_pubkey(x, cs->subject_key)) {
        ofail(err, "cannot set the certificate's public key");
        goto out;
    }

    if (!(bc = BASIC_CONSTRAINTS_new())) {
        nomem(err);
        goto out;
    }
    bc->ca = cs->ca ? 0xff : 0;
    if (cs->ca && cs->pathlen >= 0
        && (!(bc->pathlen = ASN1_INTEGER_new()) || !ASN1_INTEGER_set(bc->pathlen, cs->pathlen))) {
        nomem(err);
        goto out;
    }
    if (add_ext(x, NID_basic_constraints, bc, 1, err) < 0)
        goto out;

    if (cs->key_usage) {
        if (!(ku = ASN1_BIT_STRING_new())) {
            nomem(err);
            goto out;
        }
        for (int bit = 0; bit < 9; bit++) {   /* KU_ flags: bit 0 = 0x80 ... bit 7 = 0x01, bit 8 = 0x8000 */
            int flag = bit < 8 ? 0x80 >> bit : 0x8000;
            if ((cs->key_usage & flag) && !ASN1_BIT_STRING_set_bit(ku, bit, 1)) {
                nomem(err);
                goto out;
            }
        }
        if (add_ext(x, NID_key_usage, ku, 1, err) < 0)
            goto out;
    }

    /* subjectKeyIdentifier: SHA-1 of the subjectPublicKey bits (RFC 5280 4.2.1.2 (1)) */
    const unsigned char *pkbits = NULL;
    int pkbitslen = 0;
    unsigned char id[20];
    if (!X509_PUBKEY_get0_param(NULL, &pkbits, &pkbitslen, NULL, X509_get_X509_PUBKEY(x))
        || !EVP_Digest(pkbits, (size_t)pkbitslen, id, NULL, EVP_sha1(), NULL)) {
        ofail(err, "cannot compute the subject key identifier");
        goto out;
    }
    if (!(ski = ASN1_OCTET_STRING_new()) || !ASN1_OCTET_STRING_set(ski, id, sizeof id)) {
        nomem(err);
        goto out;
    }
    if (add_ext(x, NID_subject_key_identifier, ski, 0, err) < 0)
        goto out;

    /* authorityKeyIdentifier: keyIdentifier only (RFC 5280 4.2.1.1) */
    if (cs->akid_mode != AKID_NONE) {
        const ASN1_OCTET_STRING *kid = cs->akid_mode == AKID_SELF ? ski : cs->akid;
        if (!kid) {
            fail(err, "no authority key identifier given");
            goto out;
        }
        if (!(akid = AUTHORITY_KEYID_new()) || !(akid->keyid = ASN1_OCTET_STRING_dup(kid))) {
            nomem(err);
            goto out;
        }
        if (add_ext(x, NID_authority_key_identifier, akid, 0, err) < 0)
            goto out;
    }
    ok = 1;
out:
    AUTHORITY_KEYID_free(akid);
    ASN1_OCTET_STRING_free(ski);
    ASN1_BIT_STRING_free(ku);
    BASIC_CONSTRAINTS_free(bc);
    ASN1_INTEGER_free(serial);
    BN_free(bn);
    if (!ok) {
        X509_free(x);
        return NULL;
    }
    return x;
}

int hsm_x509_self_signed(const unsigned char *spki, size_t spkilen, const char *cn, long days,
                         const char *hash, hsm_raw_signer sign, void *ctx,
                         unsigned char **der, size_t *derlen, hsm_err *err)
{
    if (!cn || !*cn)
        return fail(err, "certificate common name is empty");
    if (days < 1 || days > INT_MAX)
        return fail(err, "certificate validity must be at least 1 day (got %ld)", days);
    if (!sign)
        return fail(err, "no signer given");
    if (!der || !derlen)
        return fail(err, "no output given");

    int rc = -1;
    X509_NAME *name = NULL;
    X509 *x = NULL, *back = NULL;
    unsigned char *out = NULL;
    size_t outlen = 0;
    sig_alg sa;
    EVP_PKEY *pk = pubkey_parse(spki, spkilen, err);
    if (!pk || sig_alg_for(pk, hash, &sa, err) < 0)
        goto out;
    if (!(name = X509_NAME_new())) {
        nomem(err);
        goto out;
    }
    if (!X509_NAME_add_entry_by_NID(name, NID_commonName, MBSTRING_UTF8,
                                    (const unsigned char *)cn, -1, -1, 0)) {
        ofail(err, "common name \"%.80s\" is not 1 to 64 characters of UTF-8", cn);
        goto out;
    }
    cert_spec cs = {
        .subject_key = pk, .subject = name, .issuer = name, .days = days,
        .ca = 0, .key_usage = KU_DIGITAL_SIGNATURE,
    };
    if (!(x = cert_build(&cs, err)) || x509_sign_raw(x, &sa, sign, ctx, err) < 0
        || cert_der(x, &out, &outlen, err) < 0)
        goto out;

    /* The HSM signed it: check it really was the key of spki before handing it out. */
    if (!(back = cert_parse(out, outlen, err)))
        goto out;
    int v = X509_verify(back, pk);
    if (v != 1) {
        if (v == 0)
            fail(err, "the signer's signature does not verify with the certificate's public key "
                      "(wrong key or mechanism?)");
        else
            ofail(err, "cannot verify the signer's signature");
        goto out;
    }
    *der = out;
    *derlen = outlen;
    out = NULL;
    rc = 0;
out:
    free(out);
    X509_free(back);
    X509_free(x);
    X509_NAME_free(name);
    EVP_PKEY_free(pk);
    return rc;
}

/* ------------------------------------------------------------------ certificate info */

static int name_out(const X509_NAME *nm, char *dst, size_t dlen, const char *what, hsm_err *err)
{
    if (!dst)
        return 0;
    BIO *b = BIO_new(BIO_s_mem());
    if (!b)
        return nomem(err);
    int rc;
    /* RFC 2253, one line, UTF-8 left as is (specials and controls escaped) */
    if (X509_NAME_print_ex(b, nm, 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB) < 0) {
        rc = ofail(err, "cannot print the certificate %s", what);
    } else {
        char *p = NULL;
        long n = BIO_get_mem_data(b, &p);
        rc = str_out(dst, dlen, n > 0 ? p : "", n > 0 ? (size_t)n : 0, what, err);
    }
    BIO_free(b);
    return rc;
}

int hsm_cert_info(const unsigned char *der, size_t len, char *subject, size_t slen,
                  char *issuer, size_t ilen, char *not_after, size_t nalen, hsm_err *err)
{
    X509 *x = cert_parse(der, len, err);
    if (!x)
        return -1;
    int rc = -1;
    if (name_out(X509_get_subject_name(x), subject, slen, "subject", err) < 0
        || name_out(X509_get_issuer_name(x), issuer, ilen, "issuer", err) < 0)
        goto out;
    if (not_after) {
        struct tm tm;
        char buf[32];
        if (!ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm)) {
            ofail(err, "certificate notAfter is not a valid time");
            goto out;
        }
        int n = snprintf(buf, sizeof buf, "%04d-%02d-%02d", tm.tm_year + 1900, tm.tm_mon + 1,
                         tm.tm_mday);
        if (str_out(not_after, nalen, buf, (size_t)n, "notAfter", err) < 0)
            goto out;
    }
    rc = 0;
out:
    X509_free(x);
    return rc;
}

int hsm_cert_verify_self(const unsigned char *der, size_t len, hsm_err *err)
{
    X509 *x = cert_parse(der, len, err);
    if (!x)
        return -1;
    int rc = -1;
    EVP_PKEY *pk = X509_get0_pubkey(x);
    if (!pk)
        ofail(err, "the certificate's public key cannot be decoded");
    else if ((rc = X509_verify(x, pk)) == 1)
        rc = 0;
    else if (rc == 0)
        rc = fail(err, "certificate signature does not verify with its own public key");
    else
        rc = ofail(err, "cannot verify the certificate signature");
    X509_free(x);
    return rc;
}

/* ------------------------------------------------------------------ PEM */

/* RFC 7468 label: printable ASCII without '-', single inner spaces. */
static int pem_label_ok(const char *l)
{
    size_t n = l ? strlen(l) : 0;
    if (n == 0 || n > 64 || l[0] == ' ' || l[n - 1] == ' ')
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (l[i] < 0x20 || l[i] > 0x7e || l[i] == '-' || (l[i] == ' ' && l[i + 1] == ' '))
            return 0;
    }
    return 1;
}

int hsm_pem_encode(const char *label, const unsigned char *der, size_t len, char **pem,
                   hsm_err *err)
{
    if (!pem_label_ok(label))
        return fail(err, "PEM label \"%.80s\" is not 1 to 64 printable characters without '-'",
                    label ? label : "(null)");
    if (!der || len == 0)
        return fail(err, "nothing to PEM-encode");
    if (len > LONG_MAX / 2)
        return fail(err, "too large to PEM-encode (%zu bytes)", len);
    BIO *b = BIO_new(BIO_s_mem());
    if (!b)
        return nomem(err);
    int rc = -1;
    if (PEM_write_bio(b, label, "", der, (long)len) <= 0) {
        ofail(err, "PEM encoding failed");
    } else {
        char *p = NULL;
        long n = BIO_get_mem_data(b, &p);
        char *s = malloc((size_t)n + 1);
        if (!s) {
            nomem(err);
        } else {
            memcpy(s, p, (size_t)n);
            s[n] = '\0';
            *pem = s;
            rc = 0;
        }
    }
    BIO_free(b);
    return rc;
}

int hsm_pem_decode(const char *pem, size_t len, char *label_out, size_t lablen,
                   unsigned char **der, size_t *derlen, hsm_err *err)
{
    if (!pem || len == 0)
        return fail(err, "PEM text is empty");
    if (len > INT_MAX)
        return fail(err, "PEM text is too large (%zu bytes)", len);
    BIO *b = BIO_new_mem_buf(pem, (int)len);
    if (!b)
        return nomem(err);
    char *name = NULL, *header = NULL;
    unsigned char *data = NULL;
    long dlen = 0;
    int rc = -1;
    if (!PEM_read_bio(b, &name, &header, &data, &dlen)) {
        unsigned long e = ERR_peek_last_error();
        if (ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE)
            fail(err, "no PEM block (-----BEGIN ...-----) found");
        else
            ofail(err, "malformed PEM block");
    } else if (header && *header) {
        fail(err, "PEM block \"%.64s\" has headers (encrypted?); refused", name);
    } else if (dlen <= 0) {
        fail(err, "PEM block \"%.64s\" is empty", name);
    } else if (str_out(label_out, lablen, name, strlen(name), "PEM label", err) == 0) {
        rc = dup_out(data, (size_t)dlen, der, derlen, err);
    }
    OPENSSL_free(name);
    OPENSSL_free(header);
    OPENSSL_free(data);
    BIO_free(b);
    return rc;
}

/* ------------------------------------------------------------------ CSRs, issued certificates, chains */

/* Prefixes the message in err with "<what>: " (for errors about one of several inputs). */
static int prefix_err(hsm_err *err, const char *what)
{
    char msg[sizeof err->msg];
    snprintf(msg, sizeof msg, "%s", err->msg);
    return hsm_err_set(err, "%s: %s", what, msg);
}

hsm_der_kind hsm_der_kind_of(const unsigned char *der, size_t len)
{
    unsigned tag;
    size_t hdr, clen, h, c;
    /* SEQUENCE { SEQUENCE { first, second ... } ... } spanning exactly len bytes */
    if (!der || der_header(der, len, &tag, &hdr, &clen) < 0 || tag != 0x30 || hdr + clen != len)
        return HSM_DER_UNKNOWN;
    const unsigned char *p = der + hdr;
    if (der_header(p, clen, &tag, &h, &c) < 0 || tag != 0x30 || h + c > clen)
        return HSM_DER_UNKNOWN;
    const unsigned char *q = p + h;
    size_t n = c;
    if (der_header(q, n, &tag, &h, &c) < 0 || h + c > n)
        return HSM_DER_UNKNOWN;
    if (tag == 0x06)   /* AlgorithmIdentifier { OID ... }: a SubjectPublicKeyInfo */
        return HSM_DER_SPKI;
    if (tag == 0xa0)   /* TBSCertificate { [0] version ... } */
        return HSM_DER_CERT;
    if (tag != 0x02)
        return HSM_DER_UNKNOWN;
    /* INTEGER: a CSR's version or a v1 certificate's serial. Next comes the CSR's subject
     * Name (SEQUENCE OF SET) or the certificate's AlgorithmIdentifier (SEQUENCE { OID }). */
    q += h + c;
    n -= h + c;
    if (der_header(q, n, &tag, &h, &c) < 0 || tag != 0x30 || h + c > n)
        return HSM_DER_UNKNOWN;
    return c > 0 && q[h] == 0x06 ? HSM_DER_CERT : HSM_DER_CSR;
}

/* Builds O, CN, serialNumber. */
static int name_build(const hsm_x509_name *nm, X509_NAME **out, hsm_err *err)
{
    *out = NULL;
    if (!nm || !nm->cn || !*nm->cn)
        return fail(err, "common name (CN) is empty");
    X509_NAME *n = X509_NAME_new();
    if (!n)
        return nomem(err);
    if (nm->org && *nm->org
        && !X509_NAME_add_entry_by_NID(n, NID_organizationName, MBSTRING_UTF8,
                                       (const unsigned char *)nm->org, -1, -1, 0)) {
        ofail(err, "organization (O) \"%.80s\" is not 1 to 64 characters of UTF-8", nm->org);
        goto bad;
    }
    if (!X509_NAME_add_entry_by_NID(n, NID_commonName, MBSTRING_UTF8,
                                    (const unsigned char *)nm->cn, -1, -1, 0)) {
        ofail(err, "common name \"%.80s\" is not 1 to 64 characters of UTF-8", nm->cn);
        goto bad;
    }
    /* serialNumber is a PrintableString (RFC 5280 appendix A.1): OpenSSL refuses others */
    if (nm->serial && *nm->serial
        && !X509_NAME_add_entry_by_NID(n, NID_serialNumber, MBSTRING_UTF8,
                                       (const unsigned char *)nm->serial, -1, -1, 0)) {
        ofail(err, "serialNumber \"%.80s\" is not 1 to 64 PrintableString characters "
                   "(letters, digits, space and '()+,-./:=?)", nm->serial);
        goto bad;
    }
    *out = n;
    return 0;
bad:
    X509_NAME_free(n);
    return -1;
}

/* The value of the last nid attribute of nm, as UTF-8, into dst ("" when there is none). */
static int attr_out(const X509_NAME *nm, int nid, char *dst, size_t dlen, const char *what,
                    hsm_err *err)
{
    int idx = -1;
    for (int i = -1; (i = X509_NAME_get_index_by_NID(nm, nid, i)) >= 0;)
        idx = i;
    if (idx < 0)
        return str_out(dst, dlen, "", 0, what, err);
    unsigned char *u = NULL;
    int n = ASN1_STRING_to_UTF8(&u, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(nm, idx)));
    if (n < 0)
        return ofail(err, "the %s cannot be converted to UTF-8", what);
    int rc = memchr(u, 0, (size_t)n) ? fail(err, "the %s contains a NUL byte", what)
                                     : str_out(dst, dlen, (const char *)u, (size_t)n, what, err);
    OPENSSL_free(u);
    return rc;
}

/* Parses a DER PKCS#10 request that must span exactly len bytes. */
static X509_REQ *csr_parse(const unsigned char *der, size_t len, hsm_err *err)
{
    if (der_precheck(der, len, "certificate request", err) != 0)
        return NULL;
    const unsigned char *p = der;
    X509_REQ *r = d2i_X509_REQ(NULL, &p, (long)len);
    if (!r) {
        ofail(err, "not a DER PKCS#10 certificate request");
        return NULL;
    }
    if (der_exact(der, len, p, "certificate request", err) != 0) {
        X509_REQ_free(r);
        return NULL;
    }
    return r;
}

/* DER of a certificate's or request's X509_PUBKEY into malloc'd memory. */
static int xpub_der(X509_PUBKEY *xp, unsigned char **der, size_t *derlen, hsm_err *err)
{
    unsigned char *buf = NULL;
    int n = xp ? i2d_X509_PUBKEY(xp, &buf) : -1;
    int rc = n > 0 ? dup_out(buf, (size_t)n, der, derlen, err)
                   : ofail(err, "cannot encode the SubjectPublicKeyInfo");
    OPENSSL_free(buf);
    return rc;
}

/* The DER encoding of a name (for CKA_SUBJECT / CKA_ISSUER), malloc'd. */
static int name_der(const X509_NAME *name, unsigned char **der, size_t *derlen, hsm_err *err)
{
    unsigned char *buf = NULL;
    int n = i2d_X509_NAME(name, &buf);
    int rc = n > 0 ? dup_out(buf, (size_t)n, der, derlen, err)
                   : ofail(err, "cannot encode a certificate name");
    OPENSSL_free(buf);
    return rc;
}

int hsm_csr_build(const hsm_x509_name *subject, const unsigned char *spki, size_t spkilen,
                  const char *hash, hsm_raw_signer sign, void *ctx, unsigned char **der,
                  size_t *derlen, hsm_err *err)
{
    if (!sign)
        return fail(err, "no signer given");
    if (!der || !derlen)
        return fail(err, "no output given");

    int rc = -1;
    X509_NAME *name = NULL;
    X509_REQ *req = NULL, *back = NULL;
    unsigned char *tbs = NULL, *sig = NULL, *buf = NULL;
    size_t siglen = 0;
    sig_alg sa;
    EVP_PKEY *pk = pubkey_parse(spki, spkilen, err);
    if (!pk || sig_alg_for(pk, hash, &sa, err) < 0 || name_build(subject, &name, err) < 0)
        goto out;
    if (!(req = X509_REQ_new())) {
        nomem(err);
        goto out;
    }
    if (!X509_REQ_set_version(req, X509_REQ_VERSION_1) || !X509_REQ_set_subject_name(req, name)
        || !X509_REQ_set_pubkey(req, pk)) {
        ofail(err, "cannot fill the certificate request");
        goto out;
    }

    /* sign the CertificationRequestInfo through the HSM, as x509_sign_raw does for certificates */
    const ASN1_BIT_STRING *csig = NULL;
    const X509_ALGOR *calg = NULL;
    X509_REQ_get0_signature(req, &csig, &calg);
    if (set_algor((X509_ALGOR *)calg, &sa) < 0) {
        ofail(err, "cannot set the signature algorithm");
        goto out;
    }
    int tbslen = i2d_re_X509_REQ_tbs(req, &tbs);
    if (tbslen <= 0) {
        ofail(err, "cannot encode the CertificationRequestInfo");
        goto out;
    }
    if (sign_tbs(&sa, tbs, (size_t)tbslen, sign, ctx, &sig, &siglen, err) < 0
        || set_signature((ASN1_BIT_STRING *)csig, sig, siglen, err) < 0)
        goto out;
    int n = i2d_X509_REQ(req, &buf);
    if (n <= 0) {
        ofail(err, "cannot encode the certificate request");
        goto out;
    }

    /* The HSM signed it: check it really was the key of spki before handing it out. */
    if (!(back = csr_parse(buf, (size_t)n, err)))
        goto out;
    int v = X509_REQ_verify(back, pk);
    if (v != 1) {
        if (v == 0)
            fail(err, "the signer's signature does not verify with the request's public key "
                      "(wrong key or mechanism?)");
        else
            ofail(err, "cannot verify the signer's signature");
        goto out;
    }
    rc = dup_out(buf, (size_t)n, der, derlen, err);
out:
    OPENSSL_free(buf);
    OPENSSL_free(tbs);
    free(sig);
    X509_REQ_free(back);
    X509_REQ_free(req);
    X509_NAME_free(name);
    EVP_PKEY_free(pk);
    return rc;
}

void hsm_csr_details_free(hsm_csr_details *d)
{
    if (!d)
        return;
    free(d->spki);
    d->spki = NULL;
    d->spkilen = 0;
}

int hsm_csr_info(const unsigned char *der, size_t len, hsm_csr_details *out, hsm_err *err)
{
    memset(out, 0, sizeof *out);
    X509_REQ *req = csr_parse(der, len, err);
    if (!req)
        return -1;
    int rc = -1;
    const X509_NAME *nm = X509_REQ_get_subject_name(req);
    if (name_out(nm, out->subject, sizeof out->subject, "subject", err) < 0
        || attr_out(nm, NID_commonName, out->cn, sizeof out->cn, "common name", err) < 0
        || attr_out(nm, NID_serialNumber, out->serial, sizeof out->serial, "serialNumber", err) < 0
        || attr_out(nm, NID_organizationName, out->org, sizeof out->org, "organization", err) < 0
        || xpub_der(X509_REQ_get_X509_PUBKEY(req), &out->spki, &out->spkilen, err) < 0)
        goto out;

    EVP_PKEY *pk = X509_REQ_get0_pubkey(req);
    int v = pk ? X509_REQ_verify(req, pk) : -1;
    out->valid = v == 1;
    if (!pk)
        snprintf(out->why, sizeof out->why, "its public key cannot be decoded");
    else if (v == 0)
        snprintf(out->why, sizeof out->why, "its signature does not verify with the public key "
                 "it names (altered, or signed by another key)");
    else if (v < 0)
        snprintf(out->why, sizeof out->why, "its signature cannot be checked (malformed or "
                 "unsupported signature)");
    ERR_clear_error();
    rc = 0;
out:
    if (rc < 0)
        hsm_csr_details_free(out);
    X509_REQ_free(req);
    return rc;
}

/* Checks the caller's options; *serial and *serial_len get the serial without leading zeros. */
static int opts_check(const hsm_cert_opts *o, const unsigned char **serial, size_t *serial_len,
                      hsm_err *err)
{
    if (!o)
        return fail(err, "no certificate options given");
    if (o->days < 1 || o->days > INT_MAX)
        return fail(err, "certificate validity must be at least 1 day (got %ld)", o->days);
    *serial = NULL;
    *serial_len = 0;
    if (o->serial) {
        const unsigned char *p = o->serial;
        size_t n = o->serial_len;
        while (n > 0 && *p == 0) {
            p++;
            n--;
        }
        if (n == 0)
            return fail(err, "certificate serial number must be positive (it is zero or empty)");
        if (n > 20 || (n == 20 && (p[0] & 0x80)))
            return fail(err, "certificate serial number is too long: RFC 5280 allows at most "
                             "20 octets (159 bits)");
        *serial = p;
        *serial_len = n;
    }
    return 0;
}

/* keyUsage of an end-entity (identity) certificate for key: EC keys sign and agree keys. */
static int ee_key_usage(EVP_PKEY *key)
{
    switch (EVP_PKEY_get_base_id(key)) {
    case EVP_PKEY_EC:
        return KU_DIGITAL_SIGNATURE | KU_KEY_AGREEMENT;
    case EVP_PKEY_X25519: case EVP_PKEY_X448:
        return KU_KEY_AGREEMENT;
    default:
        return KU_DIGITAL_SIGNATURE;
    }
}

/* Signs x through the raw signer, encodes it and checks the signature with key (the public key
 * that must have made it; whose names it in the message) before handing out the DER. */
static int cert_finish(X509 *x, const sig_alg *sa, hsm_raw_signer sign, void *ctx,
                       EVP_PKEY *key, const char *whose, unsigned char **der, size_t *derlen,
                       hsm_err *err)
{
    unsigned char *out = NULL;
    size_t outlen = 0;
    X509 *back = NULL;
    int rc = -1;
    if (x509_sign_raw(x, sa, sign, ctx, err) < 0 || cert_der(x, &out, &outlen, err) < 0
        || !(back = cert_parse(out, outlen, err)))
        goto out;
    int v = X509_verify(back, key);
    if (v != 1) {
        if (v == 0)
            fail(err, "the signer's signature does not verify with %s", whose);
        else
            ofail(err, "cannot verify the signer's signature");
        goto out;
    }
    *der = out;
    *derlen = outlen;
    out = NULL;
    rc = 0;
out:
    free(out);
    X509_free(back);
    return rc;
}

int hsm_x509_self_signed_ex(const unsigned char *spki, size_t spkilen,
                            const hsm_x509_name *subject, const hsm_cert_opts *opts,
                            hsm_raw_signer sign, void *ctx, unsigned char **der, size_t *derlen,
                            hsm_err *err)
{
    const unsigned char *serial;
    size_t serial_len;
    if (!sign)
        return fail(err, "no signer given");
    if (!der || !derlen)
        return fail(err, "no output given");
    if (opts_check(opts, &serial, &serial_len, err) < 0)
        return -1;

    int rc = -1;
    X509_NAME *name = NULL;
    X509 *x = NULL;
    sig_alg sa;
    EVP_PKEY *pk = pubkey_parse(spki, spkilen, err);
    if (!pk || sig_alg_for(pk, opts->hash, &sa, err) < 0 || name_build(subject, &name, err) < 0)
        goto out;
    cert_spec cs = {
        .subject_key = pk, .subject = name, .issuer = name, .days = opts->days,
        .ca = opts->ca != 0,
        .key_usage = opts->ca ? KU_KEY_CERT_SIGN | KU_CRL_SIGN : ee_key_usage(pk),
        .serial = serial, .serial_len = serial_len, .not_before = opts->not_before,
        .pathlen = opts->pathlen, .akid_mode = AKID_SELF,
    };
    if ((x = cert_build(&cs, err)))
        rc = cert_finish(x, &sa, sign, ctx, pk, "the certificate's public key (wrong key or "
                         "mechanism?)", der, derlen, err);
out:
    X509_free(x);
    X509_NAME_free(name);
    EVP_PKEY_free(pk);
    return rc;
}

int hsm_cert_issue(const hsm_cert_subject *subj, const unsigned char *issuer, size_t issuerlen,
                   const hsm_cert_opts *opts, hsm_raw_signer sign, void *ctx,
                   unsigned char **der, size_t *derlen, hsm_err *err)
{
    const unsigned char *serial;
    size_t serial_len;
    if (!subj || (!subj->csr && !subj->spki))
        return fail(err, "no certificate request or SubjectPublicKeyInfo given");
    if (!sign)
        return fail(err, "no signer given");
    if (!der || !derlen)
        return fail(err, "no output given");
    if (opts_check(opts, &serial, &serial_len, err) < 0)
        return -1;

    int rc = -1;
    X509 *ix = NULL, *x = NULL;
    X509_REQ *req = NULL;
    X509_NAME *name = NULL;
    EVP_PKEY *spk = NULL;
    ASN1_OCTET_STRING *kid = NULL;
    sig_alg sa;
    char iname[256] = "";

    /* the issuer: a CA that may sign this kind of certificate */
    if (!(ix = cert_parse(issuer, issuerlen, err))) {
        prefix_err(err, "issuer certificate");
        goto out;
    }
    name_out(X509_get_subject_name(ix), iname, sizeof iname, "issuer", err);   /* best effort */
    uint32_t xf = X509_get_extension_flags(ix);
    if (X509_check_ca(ix) != 1) {
        if ((xf & EXFLAG_KUSAGE) && !(X509_get_key_usage(ix) & KU_KEY_CERT_SIGN))
            fail(err, "the issuer certificate \"%s\" is not a CA: its keyUsage lacks keyCertSign",
                 iname);
        else
            fail(err, "the issuer certificate \"%s\" is not a CA (no basicConstraints CA:TRUE)",
                 iname);
        goto out;
    }
    if (opts->ca && X509_get_pathlen(ix) == 0) {
        fail(err, "the issuer \"%s\" has pathlen:0: it may certify end entities only, not "
                  "another CA", iname);
        goto out;
    }
    EVP_PKEY *ipk = X509_get0_pubkey(ix);
    if (!ipk) {
        ofail(err, "the issuer certificate's public key cannot be decoded");
        goto out;
    }
    if (sig_alg_for(ipk, opts->hash, &sa, err) < 0)
        goto out;

    /* the subject: from a CSR whose signature verifies, or a bare key and name */
    const X509_NAME *subject = NULL;
    if (subj->csr) {
        if (!(req = csr_parse(subj->csr, subj->csrlen, err)))
            goto out;
        if (!(spk = X509_REQ_get_pubkey(req))) {
            ofail(err, "the certificate request's public key cannot be decoded");
            goto out;
        }
        if (X509_REQ_verify(req, spk) != 1) {
            fail(err, "the certificate request's signature does not verify with the public key it "
                      "names (altered, or signed by another key); refused");
            goto out;
        }
        if (subj->name.cn) {
            if (name_build(&subj->name, &name, err) < 0)
                goto out;
            subject = name;
        } else {
            subject = X509_REQ_get_subject_name(req);
            if (X509_NAME_entry_count(subject) == 0) {
                fail(err, "the certificate request has an empty subject; give a common name");
                goto out;
            }
        }
    } else {
        if (!subj->name.cn || !*subj->name.cn) {
            fail(err, "a certificate for a bare SubjectPublicKeyInfo needs a subject common "
                      "name (CN)");
            goto out;
        }
        if (!(spk = pubkey_parse(subj->spki, subj->spkilen, err))
            || name_build(&subj->name, &name, err) < 0)
            goto out;
        subject = name;
    }

    /* authorityKeyIdentifier = the issuer's subjectKeyIdentifier, or its RFC 5280 method (1) */
    const ASN1_OCTET_STRING *ikid = X509_get0_subject_key_id(ix);
    if (!ikid) {
        unsigned char id[EVP_MAX_MD_SIZE];
        unsigned int idlen = 0;
        if (!X509_pubkey_digest(ix, EVP_sha1(), id, &idlen)) {
            ofail(err, "cannot compute the issuer's key identifier");
            goto out;
        }
        if (!(kid = ASN1_OCTET_STRING_new()) || !ASN1_OCTET_STRING_set(kid, id, (int)idlen)) {
            nomem(err);
            goto out;
        }
        ikid = kid;
    }

    cert_spec cs = {
        .subject_key = spk, .subject = subject, .issuer = X509_get_subject_name(ix),
        .days = opts->days, .ca = opts->ca != 0,
        .key_usage = opts->ca ? KU_KEY_CERT_SIGN | KU_CRL_SIGN : ee_key_usage(spk),
        .serial = serial, .serial_len = serial_len, .not_before = opts->not_before,
        .pathlen = opts->pathlen, .akid_mode = AKID_GIVEN, .akid = ikid,
    };
    if ((x = cert_build(&cs, err)))
        rc = cert_finish(x, &sa, sign, ctx, ipk, "the issuer certificate's public key (is the "
                         "signer the issuer's private key?)", der, derlen, err);
out:
    ERR_clear_error();
    ASN1_OCTET_STRING_free(kid);
    EVP_PKEY_free(spk);
    X509_NAME_free(name);
    X509_REQ_free(req);
    X509_free(x);
    X509_free(ix);
    return rc;
}

/* ASN1_TIME as unix time. */
static int time_out(const ASN1_TIME *t, long long *out, const char *what, hsm_err *err)
{
    struct tm tm;
    if (!t || !ASN1_TIME_to_tm(t, &tm))
        return ofail(err, "certificate %s is not a valid time", what);
    *out = (long long)timegm(&tm);
    return 0;
}

/* "YYYY-MM-DD HH:MM:SS UTC" */
static const char *fmt_time(long long t, char *buf, size_t len)
{
    time_t tt = (time_t)t;
    struct tm tm;
    if (!gmtime_r(&tt, &tm) || !strftime(buf, len, "%Y-%m-%d %H:%M:%S UTC", &tm))
        snprintf(buf, len, "%lld", t);
    return buf;
}

static int keyid_out(const ASN1_OCTET_STRING *id, unsigned char *dst, size_t cap, size_t *len)
{
    *len = 0;
    if (!id)
        return 0;
    int n = ASN1_STRING_length(id);
    if (n < 0 || (size_t)n > cap)
        return -1;
    memcpy(dst, ASN1_STRING_get0_data(id), (size_t)n);
    *len = (size_t)n;
    return 0;
}

void hsm_cert_details_free(hsm_cert_details *d)
{
    if (!d)
        return;
    free(d->spki);
    free(d->subject_der);
    free(d->issuer_der);
    d->spki = d->subject_der = d->issuer_der = NULL;
    d->spkilen = d->subject_derlen = d->issuer_derlen = 0;
}

int hsm_cert_inspect(const unsigned char *der, size_t len, hsm_cert_details *out, hsm_err *err)
{
    memset(out, 0, sizeof *out);
    out->pathlen = -1;
    X509 *x = cert_parse(der, len, err);
    if (!x)
        return -1;
    int rc = -1;
    BIGNUM *bn = NULL;
    char *hex = NULL;
    const X509_NAME *sn = X509_get_subject_name(x), *in = X509_get_issuer_name(x);
    if (name_out(sn, out->subject, sizeof out->subject, "subject", err) < 0
        || name_out(in, out->issuer, sizeof out->issuer, "issuer", err) < 0
        || attr_out(sn, NID_commonName, out->cn, sizeof out->cn, "common name", err) < 0
        || attr_out(sn, NID_organizationName, out->org, sizeof out->org, "organization", err) < 0
        || attr_out(sn, NID_serialNumber, out->subject_serial, sizeof out->subject_serial,
                    "serialNumber", err) < 0
        || attr_out(in, NID_commonName, out->issuer_cn, sizeof out->issuer_cn,
                    "issuer common name", err) < 0
        || time_out(X509_get0_notBefore(x), &out->not_before, "notBefore", err) < 0
        || time_out(X509_get0_notAfter(x), &out->not_after, "notAfter", err) < 0)
        goto out;

    if (!(bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL)) || !(hex = BN_bn2hex(bn))) {
        ofail(err, "cannot read the certificate serial number");
        goto out;
    }
    for (char *p = hex; *p; p++)
        if (*p >= 'A' && *p <= 'F')
            *p = (char)(*p + 32);
    if (str_out(out->serial, sizeof out->serial, hex, strlen(hex), "serial number", err) < 0)
        goto out;

    int sig_nid = X509_get_signature_nid(x);
    const char *sig_name = sig_nid != NID_undef ? OBJ_nid2ln(sig_nid) : NULL;
    if (sig_name) {
        snprintf(out->sig_alg, sizeof out->sig_alg, "%s", sig_name);
    } else {
        const X509_ALGOR *alg = NULL;
        const ASN1_OBJECT *oid = NULL;
        X509_get0_signature(NULL, &alg, x);
        X509_ALGOR_get0(&oid, NULL, NULL, alg);
        OBJ_obj2txt(out->sig_alg, sizeof out->sig_alg, oid, 1);
    }

    uint32_t xf = X509_get_extension_flags(x);
    out->is_ca = (xf & EXFLAG_CA) != 0;
    out->pathlen = out->is_ca ? (int)X509_get_pathlen(x) : -1;
    out->has_key_usage = (xf & EXFLAG_KUSAGE) != 0;
    out->key_usage = out->has_key_usage ? X509_get_key_usage(x) : 0;
    if (keyid_out(X509_get0_subject_key_id(x), out->ski, sizeof out->ski, &out->skilen) < 0
        || keyid_out(X509_get0_authority_key_id(x), out->aki, sizeof out->aki, &out->akilen) < 0) {
        fail(err, "certificate key identifier is longer than %zu bytes", sizeof out->ski);
        goto out;
    }
    if (xpub_der(X509_get_X509_PUBKEY(x), &out->spki, &out->spkilen, err) < 0
        || name_der(sn, &out->subject_der, &out->subject_derlen, err) < 0
        || name_der(in, &out->issuer_der, &out->issuer_derlen, err) < 0)
        goto out;
    rc = 0;
out:
    ERR_clear_error();
    OPENSSL_free(hex);
    BN_free(bn);
    if (rc < 0)
        hsm_cert_details_free(out);
    X509_free(x);
    return rc;
}

/* Why X509_verify_cert refused leaf under ca, as a sentence starting with the class of the
 * problem (see hsm_cert_verify_chain). */
static int chain_fail(X509_STORE_CTX *sc, X509 *leaf, X509 *ca, long long at, hsm_err *err)
{
    int e = X509_STORE_CTX_get_error(sc);
    X509 *cur = X509_STORE_CTX_get_current_cert(sc);
    int is_ca = cur && X509_cmp(cur, ca) == 0 && X509_cmp(leaf, ca) != 0;
    const char *which = is_ca ? "the CA certificate" : "the certificate";
    char lname[200] = "?", cname[200] = "?", iname[200] = "?", t1[40], t2[40];
    name_out(X509_get_subject_name(leaf), lname, sizeof lname, "subject", err);
    name_out(X509_get_subject_name(ca), cname, sizeof cname, "subject", err);
    name_out(X509_get_issuer_name(leaf), iname, sizeof iname, "issuer", err);
    long long when = 0;
    fmt_time(at, t2, sizeof t2);

    switch (e) {
    case X509_V_ERR_CERT_SIGNATURE_FAILURE:
        if (is_ca)
            return fail(err, "signature: the CA certificate \"%s\" is self-signed but its "
                             "signature does not verify (altered?)", cname);
        return fail(err, "signature: the certificate \"%s\" is not signed by the CA \"%s\" "
                         "(its signature does not verify with the CA's public key)", lname, cname);
    case X509_V_ERR_UNABLE_TO_DECRYPT_CERT_SIGNATURE:
    case X509_V_ERR_UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY:
        return fail(err, "signature: %s's signature cannot be checked (%s)", which,
                    X509_verify_cert_error_string(e));
    case X509_V_ERR_CERT_HAS_EXPIRED:
        if (cur && time_out(X509_get0_notAfter(cur), &when, "notAfter", err) == 0)
            fmt_time(when, t1, sizeof t1);
        else
            snprintf(t1, sizeof t1, "?");
        return fail(err, "expired: %s \"%s\" expired at %s (checked at %s)", which,
                    is_ca ? cname : lname, t1, t2);
    case X509_V_ERR_CERT_NOT_YET_VALID:
        if (cur && time_out(X509_get0_notBefore(cur), &when, "notBefore", err) == 0)
            fmt_time(when, t1, sizeof t1);
        else
            snprintf(t1, sizeof t1, "?");
        return fail(err, "not yet valid: %s \"%s\" is valid from %s (checked at %s)", which,
                    is_ca ? cname : lname, t1, t2);
    case X509_V_ERR_INVALID_CA:
    case X509_V_ERR_KEYUSAGE_NO_CERTSIGN: {
        uint32_t xf = X509_get_extension_flags(ca);
        if ((xf & EXFLAG_KUSAGE) && !(X509_get_key_usage(ca) & KU_KEY_CERT_SIGN) && (xf & EXFLAG_CA))
            return fail(err, "not a CA: \"%s\" has basicConstraints CA:TRUE but its keyUsage "
                             "lacks keyCertSign", cname);
        return fail(err, "not a CA: \"%s\" has no basicConstraints CA:TRUE%s", cname,
                    (xf & EXFLAG_KUSAGE) && !(X509_get_key_usage(ca) & KU_KEY_CERT_SIGN)
                    ? " and its keyUsage lacks keyCertSign" : "");
    }
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN: {
        int why = X509_check_issued(ca, leaf);
        switch (why) {
        case X509_V_ERR_SUBJECT_ISSUER_MISMATCH:
            return fail(err, "issuer mismatch: the certificate \"%s\" was issued by \"%s\", not "
                             "by the CA \"%s\"", lname, iname, cname);
        case X509_V_ERR_AKID_SKID_MISMATCH:
        case X509_V_ERR_AKID_ISSUER_SERIAL_MISMATCH:
            return fail(err, "issuer mismatch: the certificate \"%s\" names the issuer \"%s\" but "
                             "another key (its authority key identifier is not the CA's subject "
                             "key identifier)", lname, cname);
        case X509_V_ERR_KEYUSAGE_NO_CERTSIGN:
            return fail(err, "not a CA: \"%s\" has a keyUsage without keyCertSign", cname);
        default:
            return fail(err, "issuer mismatch: the certificate \"%s\" does not chain to the CA "
                             "\"%s\" (%s)", lname, cname,
                        X509_verify_cert_error_string(why != X509_V_OK ? why : e));
        }
    }
    default:
        return fail(err, "invalid: %s \"%s\": %s", which, is_ca ? cname : lname,
                    X509_verify_cert_error_string(e));
    }
}

int hsm_cert_verify_chain(const unsigned char *leaf, size_t leaflen, const unsigned char *ca,
                          size_t calen, long long at, hsm_err *err)
{
    X509 *lx = NULL, *cx = NULL;
    X509_STORE *st = NULL;
    X509_STORE_CTX *sc = NULL;
    int rc = -1;
    if (!(lx = cert_parse(leaf, leaflen, err)))
        goto out;
    if (!(cx = cert_parse(ca, calen, err))) {
        prefix_err(err, "CA certificate");
        goto out;
    }
    if (!(st = X509_STORE_new()) || !(sc = X509_STORE_CTX_new())) {
        nomem(err);
        goto out;
    }
    if (!X509_STORE_add_cert(st, cx) || !X509_STORE_CTX_init(sc, st, lx, NULL)) {
        ofail(err, "cannot set up the certificate verification");
        goto out;
    }
    /* ca is the trust anchor whether or not it is self-signed (PARTIAL_CHAIN); a self-signed
     * anchor's own signature is checked too (CHECK_SS_SIGNATURE). */
    if (at == 0)
        at = (long long)time(NULL);
    X509_VERIFY_PARAM *vp = X509_STORE_CTX_get0_param(sc);
    X509_VERIFY_PARAM_set_flags(vp, X509_V_FLAG_PARTIAL_CHAIN | X509_V_FLAG_CHECK_SS_SIGNATURE);
    X509_VERIFY_PARAM_set_time(vp, (time_t)at);
    int v = X509_verify_cert(sc);
    if (v == 1)
        rc = 0;
    else if (v == 0)
        chain_fail(sc, lx, cx, at, err);
    else
        ofail(err, "cannot verify the certificate chain");
out:
    ERR_clear_error();
    X509_STORE_CTX_free(sc);
    X509_STORE_free(st);
    X509_free(cx);
    X509_free(lx);
    return rc;
}
