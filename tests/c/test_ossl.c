/* test_ossl.c - backends/ossl: SPKI building, digests, HSM-style certificate signing, PEM.
 *
 * Throwaway software keys stand in for HSM keys; the "HSM" signer below imitates the raw
 * PKCS#11 mechanisms (CKM_RSA_PKCS over a DigestInfo, CKM_ECDSA returning r||s). */
#include "check.h"
#include "ossl/hsm_ossl.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

static int verbose;

/* The message in e contains sub. */
#define CHECK_MSG(e, sub) do { check_count++; \
    if (!strstr((e).msg, (sub))) { check_failures++; \
        fprintf(stderr, "%s:%d: message \"%s\" lacks \"%s\"\n", __FILE__, __LINE__, \
                (e).msg, (sub)); } \
    else if (verbose) printf("  ok: %s\n", (e).msg); } while (0)

#define CHECK_MEM(a, alen, b, blen) CHECK((alen) == (blen) && memcmp((a), (b), (alen)) == 0)

/* ------------------------------------------------------------------ the fake HSM signer */
typedef struct soft_signer {
    EVP_PKEY *key;
    int fail;            /* simulate a C_Sign failure */
    int truncate;        /* drop the last byte of the result */
    size_t last_inlen;   /* what the mechanism was given */
    unsigned char last_in[128];
} soft_signer;

static int soft_sign(void *vctx, const unsigned char *in, size_t inlen, unsigned char **sig,
                     size_t *siglen, hsm_err *err)
{
    soft_signer *s = vctx;
    s->last_inlen = inlen;
    memcpy(s->last_in, in, inlen < sizeof s->last_in ? inlen : sizeof s->last_in);
    if (s->fail)
        return hsm_err_rv(err, "C_Sign", CKR_DEVICE_ERROR);
    int rsa = EVP_PKEY_get_base_id(s->key) == EVP_PKEY_RSA;
    EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_from_pkey(NULL, s->key, NULL);
    unsigned char *buf = NULL, *out = NULL;
    size_t n = 0;
    int rc = -1;
    if (!c || EVP_PKEY_sign_init(c) <= 0
        || (rsa && EVP_PKEY_CTX_set_rsa_padding(c, RSA_PKCS1_PADDING) <= 0)
        || EVP_PKEY_sign(c, NULL, &n, in, inlen) <= 0 || !(buf = malloc(n))
        || EVP_PKEY_sign(c, buf, &n, in, inlen) <= 0) {
        hsm_err_set(err, "soft signer failed");
        goto done;
    }
    if (rsa) {
        out = buf;
        buf = NULL;
    } else {   /* DER ECDSA-Sig-Value -> PKCS#11 r||s */
        size_t half = ((size_t)EVP_PKEY_get_bits(s->key) + 7) / 8;
        const unsigned char *p = buf;
        ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, (long)n);
        out = malloc(2 * half);
        if (!es || !out || BN_bn2binpad(ECDSA_SIG_get0_r(es), out, (int)half) < 0
            || BN_bn2binpad(ECDSA_SIG_get0_s(es), out + half, (int)half) < 0) {
            ECDSA_SIG_free(es);
            hsm_err_set(err, "soft signer: bad ECDSA signature");
            goto done;
        }
        ECDSA_SIG_free(es);
        n = 2 * half;
    }
    if (s->truncate)
        n--;
    *sig = out;
    *siglen = n;
    out = NULL;
    rc = 0;
done:
    free(out);
    free(buf);
    EVP_PKEY_CTX_free(c);
    return rc;
}

/* ------------------------------------------------------------------ helpers */
static unsigned char *pub_der(EVP_PKEY *k, size_t *len)
{
    unsigned char *buf = NULL;
    int n = i2d_PUBKEY(k, &buf);
    *len = n > 0 ? (size_t)n : 0;
    return buf;   /* OPENSSL_free */
}

static size_t oid_der(int nid, unsigned char *out)
{
    unsigned char *p = out;
    int n = i2d_ASN1_OBJECT(OBJ_nid2obj(nid), &p);
    return n > 0 ? (size_t)n : 0;
}

/* CKA_EC_POINT as SoftHSM2 gives it: the raw point in a DER OCTET STRING. */
static size_t wrap_octets(const unsigned char *raw, size_t n, unsigned char *out)
{
    size_t h = 0;
    out[h++] = 0x04;
    if (n >= 128)
        out[h++] = 0x81;
    out[h++] = (unsigned char)n;
    memcpy(out + h, raw, n);
    return h + n;
}

static size_t ec_point(EVP_PKEY *k, unsigned char *out, size_t cap)
{
    size_t n = 0;
    if (!EVP_PKEY_get_octet_string_param(k, OSSL_PKEY_PARAM_PUB_KEY, out, cap, &n))
        return 0;
    return n;
}

static void expect_date(long days, char *buf, size_t len)
{
    time_t t = time(NULL) + (time_t)days * 86400;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, len, "%Y-%m-%d", &tm);
}

/* ------------------------------------------------------------------ SPKI */
static void test_rsa_spki(EVP_PKEY *rsa)
{
    hsm_err err = {0};
    BIGNUM *n = NULL, *e = NULL;
    CHECK(EVP_PKEY_get_bn_param(rsa, OSSL_PKEY_PARAM_RSA_N, &n));
    CHECK(EVP_PKEY_get_bn_param(rsa, OSSL_PKEY_PARAM_RSA_E, &e));
    unsigned char nb[1 + 512], eb[8];
    int nl = BN_bn2bin(n, nb + 1), el = BN_bn2bin(e, eb);
    nb[0] = 0;

    size_t want_len;
    unsigned char *want = pub_der(rsa, &want_len);
    unsigned char *der = NULL;
    size_t derlen = 0;
    CHECK(hsm_spki_rsa(nb + 1, (size_t)nl, eb, (size_t)el, &der, &derlen, &err) == 0);
    CHECK_MEM(der, derlen, want, want_len);
    free(der);
    der = NULL;
    /* a leading zero byte (signed big-endian from some modules) changes nothing */
    CHECK(hsm_spki_rsa(nb, (size_t)nl + 1, eb, (size_t)el, &der, &derlen, &err) == 0);
    CHECK_MEM(der, derlen, want, want_len);

    char alg[32];
    int bits = 0;
    CHECK(hsm_spki_info(der, derlen, alg, sizeof alg, &bits, &err) == 0);
    CHECK_STR(alg, "RSA");
    CHECK(bits == 2048);
    free(der);
    der = NULL;

    /* bad inputs */
    unsigned char zero[4] = {0}, one = 1, even[2] = {0xc1, 0x02};
    CHECK(hsm_spki_rsa(zero, sizeof zero, eb, (size_t)el, &der, &derlen, &err) == -1);
    CHECK_MSG(err, "RSA modulus (CKA_MODULUS) is empty");
    CHECK(hsm_spki_rsa(nb + 1, (size_t)nl, &one, 1, &der, &derlen, &err) == -1);
    CHECK_MSG(err, "public exponent");
    CHECK(hsm_spki_rsa(nb + 1, (size_t)nl, NULL, 0, &der, &derlen, &err) == -1);
    CHECK_MSG(err, "public exponent (CKA_PUBLIC_EXPONENT) is empty");
    CHECK(hsm_spki_rsa(even, sizeof even, eb, (size_t)el, &der, &derlen, &err) == -1);
    CHECK_MSG(err, "modulus (CKA_MODULUS) is even");
    CHECK(der == NULL);
    char small[3];
    CHECK(hsm_spki_info(want, want_len, small, sizeof small, &bits, &err) == -1);
    CHECK_MSG(err, "does not fit");

    OPENSSL_free(want);
    BN_free(n);
    BN_free(e);
}

static void test_ec_spki(EVP_PKEY *k, int nid, const char *name, int bits_want,
                         EVP_PKEY *other_curve)
{
    hsm_err err = {0};
    unsigned char params[16], raw[200], wrapped[210], bad[210];
    size_t plen = oid_der(nid, params), rawlen = ec_point(k, raw, sizeof raw);
    size_t wlen = wrap_octets(raw, rawlen, wrapped);
    CHECK(plen > 0 && rawlen > 0 && raw[0] == 0x04);

    size_t want_len;
    unsigned char *want = pub_der(k, &want_len);
    unsigned char *der = NULL;
    size_t derlen = 0;
    CHECK(hsm_spki_ec(params, plen, wrapped, wlen, &der, &derlen, &err) == 0);
    CHECK_MEM(der, derlen, want, want_len);
    free(der);
    der = NULL;
    CHECK(hsm_spki_ec(params, plen, raw, rawlen, &der, &derlen, &err) == 0);
    CHECK_MEM(der, derlen, want, want_len);

    char alg[32];
    int bits = 0;
    CHECK(hsm_spki_info(der, derlen, alg, sizeof alg, &bits, &err) == 0);
    CHECK_STR(alg, name);
    CHECK(bits == bits_want);
    free(der);
    der = NULL;

    /* the curve named as a PrintableString ("P-256") works too */
    unsigned char ps[16];
    size_t nl = strlen(name + 3);
    ps[0] = 0x13;
    ps[1] = (unsigned char)nl;
    memcpy(ps + 2, name + 3, nl);
    CHECK(hsm_spki_ec(ps, nl + 2, wrapped, wlen, &der, &derlen, &err) == 0);
    CHECK_MEM(der, derlen, want, want_len);
    free(der);
    der = NULL;

    /* truncated point, raw and wrapped */
    char expect[64];
    snprintf(expect, sizeof expect, "not an uncompressed point on %s", name + 3);
    CHECK(hsm_spki_ec(params, plen, raw, rawlen - 1, &der, &derlen, &err) == -1);
    CHECK_MSG(err, expect);
    CHECK(hsm_spki_ec(params, plen, wrapped, wlen - 1, &der, &derlen, &err) == -1);
    CHECK_MSG(err, expect);
    /* a point of another curve */
    unsigned char oraw[200];
    size_t olen = ec_point(other_curve, oraw, sizeof oraw);
    CHECK(hsm_spki_ec(params, plen, oraw, olen, &der, &derlen, &err) == -1);
    CHECK_MSG(err, expect);
    /* right length, not on the curve */
    memcpy(bad, raw, rawlen);
    bad[rawlen - 1] ^= 0x01;
    CHECK(hsm_spki_ec(params, plen, bad, rawlen, &der, &derlen, &err) == -1);
    CHECK_MSG(err, "not on the curve");
    /* compressed */
    memcpy(bad, raw, rawlen);
    bad[0] = 0x02;
    CHECK(hsm_spki_ec(params, plen, bad, rawlen, &der, &derlen, &err) == -1);
    CHECK_MSG(err, "(compressed)");
    CHECK(hsm_spki_ec(params, plen, NULL, 0, &der, &derlen, &err) == -1);
    CHECK_MSG(err, expect);
    CHECK(der == NULL);
    OPENSSL_free(want);
}

static void test_ecx_spki(EVP_PKEY *k, const unsigned char *oid, size_t oidlen,
                          const char *psname, const char *name, int bits_want)
{
    hsm_err err = {0};
    unsigned char raw[64], wrapped[80], ps[32];
    size_t rawlen = sizeof raw;
    CHECK(EVP_PKEY_get_raw_public_key(k, raw, &rawlen));
    size_t wlen = wrap_octets(raw, rawlen, wrapped);
    size_t pslen = strlen(psname);
    ps[0] = 0x13;
    ps[1] = (unsigned char)pslen;
    memcpy(ps + 2, psname, pslen);
    pslen += 2;

    size_t want_len;
    unsigned char *want = pub_der(k, &want_len);
    const unsigned char *params[2] = {oid, ps};
    size_t plens[2] = {oidlen, pslen};
    for (int i = 0; i < 2; i++) {
        unsigned char *der = NULL;
        size_t derlen = 0;
        CHECK(hsm_spki_ec(params[i], plens[i], raw, rawlen, &der, &derlen, &err) == 0);
        CHECK_MEM(der, derlen, want, want_len);
        free(der);
        der = NULL;
        CHECK(hsm_spki_ec(params[i], plens[i], wrapped, wlen, &der, &derlen, &err) == 0);
        CHECK_MEM(der, derlen, want, want_len);
        char alg[32];
        int bits = 0;
        CHECK(hsm_spki_info(der, derlen, alg, sizeof alg, &bits, &err) == 0);
        CHECK_STR(alg, name);
        CHECK(bits == bits_want);
        free(der);
        der = NULL;
        CHECK(hsm_spki_ec(params[i], plens[i], raw, rawlen - 1, &der, &derlen, &err) == -1);
        CHECK_MSG(err, "public key (CKA_EC_POINT) must be");
        CHECK(der == NULL);
    }
    OPENSSL_free(want);
}

static void test_bad_params(void)
{
    hsm_err err = {0};
    unsigned char *der = NULL;
    size_t derlen = 0;
    unsigned char pt[65] = {0x04};
    static const unsigned char garbage[] = {0x01, 0x02, 0x03};
    static const unsigned char trailing[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03,
                                             0x01, 0x07, 0x00};
    static const unsigned char sha256_oid[] = {0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03,
                                               0x04, 0x02, 0x01};
    static const unsigned char unknown_oid[] = {0x06, 0x03, 0x2a, 0x03, 0x04};
    static const unsigned char explicit_params[] = {0x30, 0x03, 0x02, 0x01, 0x01};
    static const unsigned char bad_name[] = {0x13, 0x05, 'c', 'u', 'r', 'v', 'y'};

    static const unsigned char integer[] = {0x02, 0x01, 0x05};
    CHECK(hsm_spki_ec(garbage, sizeof garbage, pt, sizeof pt, &der, &derlen, &err) == -1);
    CHECK_MSG(err, "CKA_EC_PARAMS is not a single DER value");
    CHECK(hsm_spki_ec(integer, sizeof integer, pt, sizeof pt, &der, &derlen, &err) == -1);
    CHECK_MSG(err, "CKA_EC_PARAMS is not a curve OID or curve name (DER tag 0x02)");
    CHECK(hsm_spki_ec(trailing, sizeof trailing, pt, sizeof pt, &der, &derlen, &err) == -1);
    CHECK_MSG(err, "CKA_EC_PARAMS is not a single DER value");
    CHECK(hsm_spki_ec(sha256_oid, sizeof sha256_oid, pt, sizeof pt, &der, &derlen, &err) == -1);
    CHECK_MSG(err, "2.16.840.1.101.3.4.2.1 (SHA256), which is not a supported curve");
    CHECK(hsm_spki_ec(unknown_oid, sizeof unknown_oid, pt, sizeof pt, &der, &derlen, &err) == -1);
    CHECK_MSG(err, "unknown curve OID 1.2.3.4");
    CHECK(hsm_spki_ec(explicit_params, sizeof explicit_params, pt, sizeof pt, &der, &derlen,
                      &err) == -1);
    CHECK_MSG(err, "explicit curve parameters");
    CHECK(hsm_spki_ec(bad_name, sizeof bad_name, pt, sizeof pt, &der, &derlen, &err) == -1);
    CHECK_MSG(err, "unknown curve \"curvy\"");
    CHECK(hsm_spki_ec(NULL, 0, pt, sizeof pt, &der, &derlen, &err) == -1);
    CHECK_MSG(err, "CKA_EC_PARAMS is empty");
    CHECK(der == NULL);

    char alg[32];
    int bits;
    CHECK(hsm_spki_info(garbage, sizeof garbage, alg, sizeof alg, &bits, &err) == -1);
    CHECK_MSG(err, "not a DER SubjectPublicKeyInfo");
    ERR_clear_error();
    CHECK(ERR_peek_error() == 0);
}

/* ------------------------------------------------------------------ digests */
static void hex(const unsigned char *b, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", b[i]);
}

static void test_digests(void)
{
    hsm_err err = {0};
    unsigned char out[HSM_DIGEST_MAX];
    char h[2 * HSM_DIGEST_MAX + 1];
    hsm_sha256("abc", 3, out);
    hex(out, 32, h);
    CHECK_STR(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    hsm_sha256(NULL, 0, out);
    hex(out, 32, h);
    CHECK_STR(h, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");

    size_t n = sizeof out;
    CHECK(hsm_digest("sha1", "abc", 3, out, &n, &err) == 0);
    hex(out, n, h);
    CHECK_STR(h, "a9993e364706816aba3e25717850c26c9cd0d89d");
    n = sizeof out;
    CHECK(hsm_digest("SHA-384", "abc", 3, out, &n, &err) == 0 && n == 48);
    hex(out, 8, h);
    CHECK_STR(h, "cb00753f45a35e8b");
    n = sizeof out;
    CHECK(hsm_digest("sha512", "abc", 3, out, &n, &err) == 0 && n == 64);
    hex(out, 8, h);
    CHECK_STR(h, "ddaf35a193617aba");
    n = sizeof out;
    CHECK(hsm_digest("sha256", "abc", 3, out, &n, &err) == 0 && n == 32);

    n = sizeof out;
    CHECK(hsm_digest("md5", "abc", 3, out, &n, &err) == -1);
    CHECK_MSG(err, "unknown digest \"md5\"");
    n = 20;
    CHECK(hsm_digest("sha256", "abc", 3, out, &n, &err) == -1);
    CHECK_MSG(err, "needs a 32-byte output buffer");
}

/* ------------------------------------------------------------------ certificates */
static void test_cert(EVP_PKEY *k, const char *hash, int sig_nid, const char *alg_want)
{
    hsm_err err = {0};
    size_t spkilen;
    unsigned char *spki = pub_der(k, &spkilen);
    soft_signer s = {.key = k};
    unsigned char *der = NULL;
    size_t derlen = 0;
    CHECK(hsm_x509_self_signed(spki, spkilen, "hsmsh test", 30, hash, soft_sign, &s, &der,
                               &derlen, &err) == 0);
    if (!der) {
        fprintf(stderr, "  self-signed %s/%s: %s\n", alg_want, hash, err.msg);
        OPENSSL_free(spki);
        return;
    }
    if (EVP_PKEY_get_base_id(k) == EVP_PKEY_RSA) {   /* the mechanism got a DigestInfo */
        CHECK(s.last_inlen == 19 + (size_t)EVP_MD_get_size(EVP_get_digestbyname(hash)));
        CHECK(s.last_in[0] == 0x30);
    } else {                                          /* ... or the bare hash */
        CHECK(s.last_inlen == (size_t)EVP_MD_get_size(EVP_get_digestbyname(hash)));
    }

    const unsigned char *p = der;
    X509 *x = d2i_X509(NULL, &p, (long)derlen);
    CHECK(x != NULL && p == der + derlen);
    CHECK(X509_verify(x, k) == 1);
    CHECK(X509_get_signature_nid(x) == sig_nid);
    CHECK(X509_get_version(x) == X509_VERSION_3);
    const ASN1_INTEGER *serial = X509_get0_serialNumber(x);
    CHECK(ASN1_STRING_length(serial) == 16 && ASN1_STRING_type(serial) == V_ASN1_INTEGER);
    CHECK(!(X509_get_extension_flags(x) & EXFLAG_CA));
    CHECK(X509_get_extension_flags(x) & EXFLAG_BCONS);
    CHECK(X509_get_key_usage(x) == KU_DIGITAL_SIGNATURE);
    const ASN1_OCTET_STRING *ski = X509_get0_subject_key_id(x);
    unsigned char keyid[20];
    unsigned int keyidlen = 0;
    CHECK(X509_pubkey_digest(x, EVP_sha1(), keyid, &keyidlen) && keyidlen == 20);
    CHECK(ski && ASN1_STRING_length(ski) == 20
          && memcmp(ASN1_STRING_get0_data(ski), keyid, 20) == 0);   /* RFC 5280 method (1) */
    int crit = -1;
    BASIC_CONSTRAINTS *bc = X509_get_ext_d2i(x, NID_basic_constraints, &crit, NULL);
    CHECK(bc && crit == 1 && !bc->ca);
    BASIC_CONSTRAINTS_free(bc);
    /* the outer and the TBS algorithm identifiers agree (X509_verify checks too) */
    const X509_ALGOR *outer;
    X509_get0_signature(NULL, &outer, x);
    CHECK(X509_ALGOR_cmp(outer, X509_get0_tbs_sigalg(x)) == 0);

    CHECK(hsm_cert_verify_self(der, derlen, &err) == 0);

    unsigned char *back = NULL;
    size_t backlen = 0;
    CHECK(hsm_spki_from_cert(der, derlen, &back, &backlen, &err) == 0);
    CHECK_MEM(back, backlen, spki, spkilen);
    char alg[32];
    int bits = 0;
    CHECK(hsm_spki_info(back, backlen, alg, sizeof alg, &bits, &err) == 0);
    CHECK_STR(alg, alg_want);
    CHECK(bits == EVP_PKEY_get_bits(k));
    free(back);

    char subject[128], issuer[128], na[16], want_na[16];
    CHECK(hsm_cert_info(der, derlen, subject, sizeof subject, issuer, sizeof issuer, na,
                        sizeof na, &err) == 0);
    CHECK_STR(subject, "CN=hsmsh test");
    CHECK_STR(issuer, "CN=hsmsh test");
    expect_date(30, want_na, sizeof want_na);
    CHECK_STR(na, want_na);

    /* a flipped signature bit is caught */
    der[derlen - 5] ^= 0x01;
    CHECK(hsm_cert_verify_self(der, derlen, &err) == -1);
    CHECK_MSG(err, "does not verify with its own public key");

    /* PEM round trip, byte-identical to OpenSSL's own writer */
    char *pem = NULL;
    CHECK(hsm_pem_encode("CERTIFICATE", der, derlen, &pem, &err) == 0);
    BIO *b = BIO_new(BIO_s_mem());
    PEM_write_bio_X509(b, x);
    char *bp = NULL;
    long bl = BIO_get_mem_data(b, &bp);
    der[derlen - 5] ^= 0x01;   /* x was parsed before the flip; compare with the original */
    char *pem2 = NULL;
    CHECK(hsm_pem_encode("CERTIFICATE", der, derlen, &pem2, &err) == 0);
    CHECK(pem2 && (long)strlen(pem2) == bl && memcmp(pem2, bp, (size_t)bl) == 0);
    BIO_free(b);
    char label[32];
    unsigned char *dec = NULL;
    size_t declen = 0;
    CHECK(hsm_pem_decode(pem2, strlen(pem2), label, sizeof label, &dec, &declen, &err) == 0);
    CHECK_STR(label, "CERTIFICATE");
    CHECK_MEM(dec, declen, der, derlen);
    free(dec);
    free(pem);
    free(pem2);

    X509_free(x);
    free(der);
    OPENSSL_free(spki);
}

static void test_cert_errors(EVP_PKEY *rsa, EVP_PKEY *rsa2, EVP_PKEY *ec, EVP_PKEY *ed)
{
    hsm_err err = {0};
    unsigned char *der = NULL;
    size_t derlen = 0, rlen, elen, dlen;
    unsigned char *rspki = pub_der(rsa, &rlen), *espki = pub_der(ec, &elen),
                  *dspki = pub_der(ed, &dlen);
    soft_signer s = {.key = rsa};

    CHECK(hsm_x509_self_signed(dspki, dlen, "ed", 1, "sha256", soft_sign, &s, &der, &derlen,
                               &err) == -1);
    CHECK_MSG(err, "certificates for Ed25519 keys are not supported yet");
    CHECK(hsm_x509_self_signed(rspki, rlen, "x", 1, "md5", soft_sign, &s, &der, &derlen,
                               &err) == -1);
    CHECK_MSG(err, "signature hash \"md5\" is not supported");
    CHECK(hsm_x509_self_signed(rspki, rlen, "x", 0, "sha256", soft_sign, &s, &der, &derlen,
                               &err) == -1);
    CHECK_MSG(err, "at least 1 day");
    CHECK(hsm_x509_self_signed(rspki, rlen, "x", 5000000, "sha256", soft_sign, &s, &der, &derlen,
                               &err) == -1);
    CHECK_MSG(err, "validity of 5000000 days is out of range");
    CHECK(hsm_x509_self_signed(rspki, rlen, "", 1, "sha256", soft_sign, &s, &der, &derlen,
                               &err) == -1);
    CHECK_MSG(err, "common name is empty");
    char longcn[80];
    memset(longcn, 'a', 65);
    longcn[65] = 0;
    CHECK(hsm_x509_self_signed(rspki, rlen, longcn, 1, "sha256", soft_sign, &s, &der, &derlen,
                               &err) == -1);
    CHECK_MSG(err, "is not 1 to 64 characters of UTF-8");
    CHECK(hsm_x509_self_signed(rspki, rlen - 1, "x", 1, "sha256", soft_sign, &s, &der, &derlen,
                               &err) == -1);
    CHECK_MSG(err, "not a DER SubjectPublicKeyInfo");

    /* the HSM fails: its error comes through unchanged */
    s.fail = 1;
    CHECK(hsm_x509_self_signed(rspki, rlen, "x", 1, "sha256", soft_sign, &s, &der, &derlen,
                               &err) == -1);
    CHECK_STR(err.fn, "C_Sign");
    CHECK(err.rv == CKR_DEVICE_ERROR);
    s.fail = 0;
    /* signed with another key of the same size */
    s.key = rsa2;
    CHECK(hsm_x509_self_signed(rspki, rlen, "x", 1, "sha256", soft_sign, &s, &der, &derlen,
                               &err) == -1);
    CHECK_MSG(err, "does not verify with the certificate's public key");
    /* an EC signature of the wrong length; an RSA signature too long */
    s.key = ec;
    s.truncate = 1;
    CHECK(hsm_x509_self_signed(espki, elen, "x", 1, "sha256", soft_sign, &s, &der, &derlen,
                               &err) == -1);
    CHECK_MSG(err, "expected ECDSA r||s of 2 x 32 bytes");
    s.truncate = 0;
    s.key = rsa;
    CHECK(hsm_x509_self_signed(espki, elen, "x", 1, "sha256", soft_sign, &s, &der, &derlen,
                               &err) == -1);
    CHECK_MSG(err, "expected ECDSA r||s of 2 x 32 bytes");
    CHECK(der == NULL);

    /* UTF-8 and RFC 2253 escaping in names */
    s.key = rsa;
    CHECK(hsm_x509_self_signed(rspki, rlen, "J\xc3\xbcrgen, \"Ops\"", 365, "sha512", soft_sign,
                               &s, &der, &derlen, &err) == 0);
    char subject[64], na[11], small[8];
    CHECK(hsm_cert_info(der, derlen, subject, sizeof subject, NULL, 0, na, sizeof na, &err) == 0);
    CHECK_STR(subject, "CN=J\xc3\xbcrgen\\, \\\"Ops\\\"");
    CHECK(hsm_cert_info(der, derlen, small, sizeof small, NULL, 0, NULL, 0, &err) == -1);
    CHECK_MSG(err, "subject (21 bytes) does not fit in a 8-byte buffer");

    /* garbage, trailing bytes, PEM where DER is expected */
    unsigned char *spki = NULL;
    size_t spkilen = 0;
    static const unsigned char garbage[] = {0x30, 0x03, 0x02, 0x01, 0x05};
    CHECK(hsm_spki_from_cert(garbage, sizeof garbage, &spki, &spkilen, &err) == -1);
    CHECK_MSG(err, "not a DER X.509 certificate");
    CHECK(hsm_spki_from_cert(der, derlen / 2, &spki, &spkilen, &err) == -1);
    CHECK_MSG(err, "not a DER X.509 certificate");
    unsigned char *longer = malloc(derlen + 2);
    memcpy(longer, der, derlen);
    longer[derlen] = longer[derlen + 1] = 0;
    CHECK(hsm_spki_from_cert(longer, derlen + 2, &spki, &spkilen, &err) == -1);
    CHECK_MSG(err, "2 unexpected bytes after the DER certificate");
    CHECK(hsm_cert_verify_self(garbage, sizeof garbage, &err) == -1);
    CHECK_MSG(err, "not a DER X.509 certificate");
    CHECK(hsm_cert_info(NULL, 0, NULL, 0, NULL, 0, NULL, 0, &err) == -1);
    CHECK_MSG(err, "certificate is empty");
    char *pem = NULL;
    CHECK(hsm_pem_encode("CERTIFICATE", der, derlen, &pem, &err) == 0);
    CHECK(hsm_spki_from_cert((const unsigned char *)pem, strlen(pem), &spki, &spkilen, &err) == -1);
    CHECK_MSG(err, "certificate is PEM text, not DER");
    CHECK(spki == NULL);
    free(longer);

    /* PEM: surrounding text, errors */
    size_t pl = strlen(pem);
    char *text = malloc(pl + 64);
    snprintf(text, pl + 64, "Subject: whatever\n%strailing\n", pem);
    unsigned char *dec = NULL;
    size_t declen = 0;
    char label[16];
    CHECK(hsm_pem_decode(text, strlen(text), label, sizeof label, &dec, &declen, &err) == 0);
    CHECK_STR(label, "CERTIFICATE");
    CHECK_MEM(dec, declen, der, derlen);
    free(dec);
    dec = NULL;
    CHECK(hsm_pem_decode(text, strlen(text), label, 5, &dec, &declen, &err) == -1);
    CHECK_MSG(err, "PEM label (12 bytes) does not fit");
    CHECK(hsm_pem_decode("hello", 5, label, sizeof label, &dec, &declen, &err) == -1);
    CHECK_MSG(err, "no PEM block");
    char *cut = strstr(text, "-----END");
    memcpy(cut - 10, "!!!!", 4);   /* corrupt the base64 */
    CHECK(hsm_pem_decode(text, strlen(text), label, sizeof label, &dec, &declen, &err) == -1);
    CHECK_MSG(err, "malformed PEM block");
    static const char enc[] = "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n"
        "DEK-Info: AES-128-CBC,00000000000000000000000000000000\n\nAAAA\n"
        "-----END RSA PRIVATE KEY-----\n";
    CHECK(hsm_pem_decode(enc, sizeof enc - 1, label, sizeof label, &dec, &declen, &err) == -1);
    CHECK_MSG(err, "has headers (encrypted?)");
    CHECK(hsm_pem_encode("BAD-LABEL", der, derlen, &pem, &err) == -1);
    CHECK_MSG(err, "PEM label \"BAD-LABEL\"");
    CHECK(dec == NULL);
    free(text);
    free(pem);

    free(der);
    OPENSSL_free(rspki);
    OPENSSL_free(espki);
    OPENSSL_free(dspki);
}

int main(void)
{
    verbose = getenv("VERBOSE") != NULL;
    EVP_PKEY *rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    EVP_PKEY *rsa2 = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    EVP_PKEY *p256 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    EVP_PKEY *p384 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
    EVP_PKEY *p521 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-521");
    EVP_PKEY *ed25519 = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    EVP_PKEY *ed448 = EVP_PKEY_Q_keygen(NULL, NULL, "ED448");
    CHECK(rsa && rsa2 && p256 && p384 && p521 && ed25519 && ed448);
    if (!(rsa && rsa2 && p256 && p384 && p521 && ed25519 && ed448))
        return CHECK_DONE();

    test_rsa_spki(rsa);
    test_ec_spki(p256, NID_X9_62_prime256v1, "EC P-256", 256, p384);
    test_ec_spki(p384, NID_secp384r1, "EC P-384", 384, p256);
    test_ec_spki(p521, NID_secp521r1, "EC P-521", 521, p384);
    static const unsigned char oid_ed25519[] = {0x06, 0x03, 0x2b, 0x65, 0x70};
    static const unsigned char oid_ed448[] = {0x06, 0x03, 0x2b, 0x65, 0x71};
    test_ecx_spki(ed25519, oid_ed25519, sizeof oid_ed25519, "edwards25519", "Ed25519", 256);
    test_ecx_spki(ed448, oid_ed448, sizeof oid_ed448, "edwards448", "Ed448", 456);
    test_bad_params();
    test_digests();

    test_cert(rsa, "sha256", NID_sha256WithRSAEncryption, "RSA");
    test_cert(rsa, "sha384", NID_sha384WithRSAEncryption, "RSA");
    test_cert(rsa, "sha512", NID_sha512WithRSAEncryption, "RSA");
    test_cert(p256, "sha256", NID_ecdsa_with_SHA256, "EC P-256");
    test_cert(p384, "sha384", NID_ecdsa_with_SHA384, "EC P-384");
    test_cert(p521, "sha512", NID_ecdsa_with_SHA512, "EC P-521");
    test_cert(p521, "sha256", NID_ecdsa_with_SHA256, "EC P-521");
    test_cert_errors(rsa, rsa2, p256, ed25519);

    CHECK(ERR_peek_error() == 0);   /* no stale OpenSSL errors left behind */
    EVP_PKEY_free(rsa);
    EVP_PKEY_free(rsa2);
    EVP_PKEY_free(p256);
    EVP_PKEY_free(p384);
    EVP_PKEY_free(p521);
    EVP_PKEY_free(ed25519);
    EVP_PKEY_free(ed448);
    return CHECK_DONE();
}
