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

/* Parses a DER certificate that must span exactly len bytes. */
static X509 *cert_parse(const unsigned char *der, size_t len, hsm_err *err)
{
    if (!der || len == 0) {
        fail(err, "certificate is empty");
        return NULL;
    }
    if (len > LONG_MAX) {
        fail(err, "certificate is too large (%zu bytes)", len);
        return NULL;
    }
    if (len >= 10 && memcmp(der, "-----BEGIN", 10) == 0) {
        fail(err, "certificate is PEM text, not DER (decode it with hsm_pem_decode first)");
        return NULL;
    }
    const unsigned char *p = der;
    X509 *x = d2i_X509(NULL, &p, (long)len);
    if (!x) {
        ofail(err, "not a DER X.509 certificate");
        return NULL;
    }
    if (p != der + len) {
        X509_free(x);
        fail(err, "%zu unexpected bytes after the DER certificate", (size_t)(der + len - p));
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
    int ok = 0;
    if (!x) {
        nomem(err);
        goto out;
    }

    /* random positive 128-bit serial with its top byte in 0x40..0x7f: always 16 bytes */
    unsigned char sn[16];
    if (RAND_bytes(sn, sizeof sn) != 1) {
        ofail(err, "cannot draw a random serial number");
        goto out;
    }
    sn[0] = (unsigned char)((sn[0] & 0x3f) | 0x40);
    if (!(bn = BN_bin2bn(sn, sizeof sn, NULL)) || !(serial = BN_to_ASN1_INTEGER(bn, NULL))
        || !X509_set_version(x, X509_VERSION_3) || !X509_set_serialNumber(x, serial)
        || !X509_set_subject_name(x, cs->subject) || !X509_set_issuer_name(x, cs->issuer)) {
        ofail(err, "cannot fill the certificate");
        goto out;
    }
    if (!X509_gmtime_adj(X509_getm_notBefore(x), 0)
        || !X509_time_adj_ex(X509_getm_notAfter(x), (int)cs->days, 0, NULL)) {
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
    ok = 1;
out:
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
