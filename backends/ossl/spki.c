/* spki.c - SubjectPublicKeyInfo from PKCS#11 attributes (RSA, EC, EdDSA), from certificates,
 * and back to parts. See hsm_ossl.h. */
#include "ossl_int.h"

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
        return hsm_ossl_fail(err, "RSA modulus (CKA_MODULUS) is empty or zero");
    if (!e || elen == 0)
        return hsm_ossl_fail(err, "RSA public exponent (CKA_PUBLIC_EXPONENT) is empty or zero");
    if (nlen > INT_MAX / 8 || elen > INT_MAX / 8)
        return hsm_ossl_fail(err, "RSA key components are too large");
    if (!(n[nlen - 1] & 1))
        return hsm_ossl_fail(err, "RSA modulus (CKA_MODULUS) is even");
    if (!(e[elen - 1] & 1) || (elen == 1 && e[0] == 1))
        return hsm_ossl_fail(err, "RSA public exponent (CKA_PUBLIC_EXPONENT) is not an odd number "
                         "greater than 1");
    if (elen > nlen || (elen == nlen && memcmp(e, n, nlen) >= 0))
        return hsm_ossl_fail(err, "RSA public exponent (CKA_PUBLIC_EXPONENT) is not smaller than "
                         "the modulus");

    int rc = -1;
    BIGNUM *bn = BN_bin2bn(n, (int)nlen, NULL), *be = BN_bin2bn(e, (int)elen, NULL);
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *ctx = NULL;
    EVP_PKEY *pk = NULL;
    if (!bn || !be || !bld) {
        hsm_ossl_nomem(err);
        goto out;
    }
    if (!OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn)
        || !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, be)
        || !(params = OSSL_PARAM_BLD_to_param(bld))) {
        hsm_ossl_ofail(err, "cannot build RSA key parameters");
        goto out;
    }
    ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
    if (!ctx || EVP_PKEY_fromdata_init(ctx) <= 0
        || EVP_PKEY_fromdata(ctx, &pk, EVP_PKEY_PUBLIC_KEY, params) <= 0) {
        hsm_ossl_ofail(err, "OpenSSL refused the RSA public key (%zu-bit modulus)", nlen * 8);
        goto out;
    }
    rc = hsm_ossl_pubkey_der(pk, der, derlen, err);
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
        return hsm_ossl_fail(err, "CKA_EC_PARAMS is empty");
    if (hsm_ossl_der_header(params, plen, &tag, &hdr, &clen) < 0 || hdr + clen != plen)
        return hsm_ossl_fail(err, "CKA_EC_PARAMS is not a single DER value (%zu bytes starting 0x%02x)",
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
            return hsm_ossl_ofail(err, "CKA_EC_PARAMS holds a malformed OBJECT IDENTIFIER");
        int nid = OBJ_obj2nid(obj);
        char oid[80];
        OBJ_obj2txt(oid, sizeof oid, obj, 1);
        ASN1_OBJECT_free(obj);
        if (curve_ecx(c, nid) || curve_weierstrass(c, nid))
            return 0;
        if (nid != NID_undef)
            return hsm_ossl_fail(err, "CKA_EC_PARAMS names %s (%s), which is not a supported curve",
                        oid, OBJ_nid2sn(nid));
        return hsm_ossl_fail(err, "CKA_EC_PARAMS names the unknown curve OID %s", oid);
    }
    case 0x13:     /* PrintableString curve name (PKCS#11 3.0: "edwards25519" ...) */
    case 0x0c: {   /* UTF8String, seen in the wild */
        char name[64];
        if (clen == 0 || clen >= sizeof name || memchr(params + hdr, 0, clen))
            return hsm_ossl_fail(err, "CKA_EC_PARAMS holds a curve name of bad length %zu", clen);
        memcpy(name, params + hdr, clen);
        name[clen] = '\0';
        static const struct { const char *name; int nid; } names[] = {
            {"edwards25519", NID_ED25519}, {"ed25519", NID_ED25519},
            {"edwards448", NID_ED448}, {"ed448", NID_ED448},
            {"curve25519", NID_X25519}, {"x25519", NID_X25519},
            {"curve448", NID_X448}, {"x448", NID_X448},
        };
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
            if (hsm_ossl_ascii_ieq(name, names[i].name)) {
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
        return hsm_ossl_fail(err, "CKA_EC_PARAMS names the unknown curve \"%s\"", name);
    }
    case 0x30:
        return hsm_ossl_fail(err, "CKA_EC_PARAMS has explicit curve parameters; only named curves are "
                         "supported");
    case 0x05:
        return hsm_ossl_fail(err, "CKA_EC_PARAMS is implicitlyCA (NULL); only named curves are "
                         "supported");
    default:
        return hsm_ossl_fail(err, "CKA_EC_PARAMS is not a curve OID or curve name (DER tag 0x%02x)", tag);
    }
}

/* Picks the raw public key out of CKA_EC_POINT: an OCTET STRING whose content is exactly
 * the curve's key length is unwrapped; otherwise the bytes must be the raw key. */
static int point_raw(const curve *c, const unsigned char *pt, size_t ptlen,
                     const unsigned char **raw, hsm_err *err)
{
    unsigned tag;
    size_t hdr, clen;
    if (pt && ptlen > 0 && hsm_ossl_der_header(pt, ptlen, &tag, &hdr, &clen) == 0 && tag == 0x04
        && hdr + clen == ptlen && clen == c->rawlen) {
        *raw = pt + hdr;
        return 0;
    }
    if (pt && ptlen == c->rawlen) {
        *raw = pt;
        return 0;
    }
    if (c->kind == CURVE_WEIERSTRASS)
        return hsm_ossl_fail(err, "EC point is not an uncompressed point on %s: %zu bytes, expected %zu "
                         "(raw) or %zu (in an OCTET STRING)", c->name, ptlen, c->rawlen,
                    c->rawlen + (c->rawlen < 128 ? 2 : 3));
    return hsm_ossl_fail(err, "%s public key (CKA_EC_POINT) must be %zu bytes, raw or in an OCTET "
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
            return hsm_ossl_ofail(err, "OpenSSL refused the %s public key", c.name);
        int rc = hsm_ossl_pubkey_der(pk, der, derlen, err);
        EVP_PKEY_free(pk);
        return rc;
    }

    if (raw[0] != 0x04)
        return hsm_ossl_fail(err, "EC point is not an uncompressed point on %s: it starts with 0x%02x%s, "
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
        hsm_ossl_ofail(err, "cannot create an EC key context");
        goto out;
    }
    if (EVP_PKEY_fromdata(ctx, &pk, EVP_PKEY_PUBLIC_KEY, op) <= 0) {
        hsm_ossl_ofail(err, "EC point is not an uncompressed point on %s: it is not on the curve", c.name);
        goto out;
    }
    chk = EVP_PKEY_CTX_new_from_pkey(NULL, pk, NULL);
    if (!chk || EVP_PKEY_public_check(chk) <= 0) {
        hsm_ossl_ofail(err, "EC point is not an uncompressed point on %s: public key check failed", c.name);
        goto out;
    }
    rc = hsm_ossl_pubkey_der(pk, der, derlen, err);
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
    X509 *x = hsm_ossl_cert_parse(der, len, err);
    if (!x)
        return -1;
    unsigned char *buf = NULL;
    int n = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(x), &buf);
    int rc = n > 0 ? hsm_ossl_dup_out(buf, (size_t)n, spki, spkilen, err)
                   : hsm_ossl_ofail(err, "cannot encode the certificate's SubjectPublicKeyInfo");
    OPENSSL_free(buf);
    X509_free(x);
    return rc;
}

/* Names pk as hsm_spki_info does. */
int hsm_ossl_key_describe(EVP_PKEY *pk, char *alg, size_t alglen, int *bits, hsm_err *err)
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
            return hsm_ossl_ofail(err, "EC public key has no named curve");
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
    if (alg && hsm_ossl_str_out(alg, alglen, name, strlen(name), "key algorithm name", err) < 0)
        return -1;
    if (bits)
        *bits = b;
    return 0;
}

int hsm_spki_info(const unsigned char *spki, size_t len, char *alg, size_t alglen, int *bits,
                  hsm_err *err)
{
    EVP_PKEY *pk = hsm_ossl_pubkey_parse(spki, len, err);
    if (!pk)
        return -1;
    int rc = hsm_ossl_key_describe(pk, alg, alglen, bits, err);
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
    EVP_PKEY *pk = hsm_ossl_pubkey_parse(spki, len, err);
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
        return hsm_ossl_fail(err, "public keys of type %s cannot be imported", OBJ_nid2sn(id));
    }
    EVP_PKEY_free(pk);
    if (!out->a || !out->b) {
        hsm_pubparts_free(out);
        return hsm_ossl_ofail(err, "cannot decode the public key");
    }
    return 0;
}
