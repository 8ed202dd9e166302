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

/* ------------------------------------------------------------------ CSRs, issued certificates, chains */

/* Flips one bit of a copy of der at offset off (negative: from the end). Free the result. */
static unsigned char *flipped(const unsigned char *der, size_t len, long off)
{
    unsigned char *c = malloc(len);
    memcpy(c, der, len);
    c[off < 0 ? (long)len + off : off] ^= 0x01;
    return c;
}

static X509 *parse_x509(const unsigned char *der, size_t len)
{
    const unsigned char *p = der;
    X509 *x = d2i_X509(NULL, &p, (long)len);
    CHECK(x != NULL && p == der + len);
    return x;
}

/* The last value of nid in name (static buffer; "" when absent). */
static const char *name_entry(const X509_NAME *nm, int nid)
{
    static char buf[256];
    buf[0] = '\0';
    X509_NAME_get_text_by_NID((X509_NAME *)nm, nid, buf, sizeof buf);
    return buf;
}

static void test_der_kind(EVP_PKEY *k)
{
    size_t spkilen;
    unsigned char *spki = pub_der(k, &spkilen);
    CHECK(hsm_der_kind_of(spki, spkilen) == HSM_DER_SPKI);
    CHECK(hsm_der_kind_of(spki, spkilen - 1) == HSM_DER_UNKNOWN);
    CHECK(hsm_der_kind_of(NULL, 0) == HSM_DER_UNKNOWN);
    static const unsigned char junk[] = {0x30, 0x03, 0x02, 0x01, 0x05};
    CHECK(hsm_der_kind_of(junk, sizeof junk) == HSM_DER_UNKNOWN);
    /* a v1 certificate (serial first, then an AlgorithmIdentifier) is told from a CSR */
    X509 *x = X509_new();
    X509_set_version(x, X509_VERSION_1);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 7);
    X509_NAME *nm = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(nm, "CN", MBSTRING_ASC, (const unsigned char *)"v1", -1, -1, 0);
    X509_set_issuer_name(x, nm);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_set_pubkey(x, k);
    CHECK(X509_sign(x, k, EVP_sha256()) > 0);
    unsigned char *der = NULL;
    int n = i2d_X509(x, &der);
    CHECK(n > 0 && hsm_der_kind_of(der, (size_t)n) == HSM_DER_CERT);
    OPENSSL_free(der);
    X509_free(x);
    OPENSSL_free(spki);
}

static void test_csr(EVP_PKEY *k, const char *hash, int sig_nid)
{
    hsm_err err = {0};
    size_t spkilen, derlen = 0;
    unsigned char *spki = pub_der(k, &spkilen), *der = NULL;
    soft_signer s = {.key = k};
    hsm_x509_name nm = {"HSM 4711", "4711-A", "Owner Org"};
    CHECK(hsm_csr_build(&nm, spki, spkilen, hash, soft_sign, &s, &der, &derlen, &err) == 0);
    if (!der) {
        fprintf(stderr, "  csr %s: %s\n", hash, err.msg);
        OPENSSL_free(spki);
        return;
    }
    /* OpenSSL reads it as a valid PKCS#10 request */
    const unsigned char *p = der;
    X509_REQ *req = d2i_X509_REQ(NULL, &p, (long)derlen);
    CHECK(req && p == der + derlen);
    CHECK(X509_REQ_verify(req, k) == 1);
    CHECK(X509_REQ_get_signature_nid(req) == sig_nid);
    CHECK(X509_REQ_get_version(req) == X509_REQ_VERSION_1);
    CHECK(X509_REQ_get_attr_count(req) == 0);
    const X509_NAME *sn = X509_REQ_get_subject_name(req);
    CHECK(X509_NAME_entry_count(sn) == 3);
    CHECK_STR(name_entry(sn, NID_commonName), "HSM 4711");
    CHECK_STR(name_entry(sn, NID_serialNumber), "4711-A");
    CHECK_STR(name_entry(sn, NID_organizationName), "Owner Org");
    int si = X509_NAME_get_index_by_NID(sn, NID_serialNumber, -1);
    CHECK(si >= 0 && ASN1_STRING_type(X509_NAME_ENTRY_get_data(X509_NAME_get_entry(sn, si)))
                     == V_ASN1_PRINTABLESTRING);
    X509_REQ_free(req);
    CHECK(hsm_der_kind_of(der, derlen) == HSM_DER_CSR);

    /* hsm_csr_info reads it back */
    hsm_csr_details d;
    CHECK(hsm_csr_info(der, derlen, &d, &err) == 0);
    CHECK(d.valid == 1 && d.why[0] == '\0');
    CHECK_STR(d.cn, "HSM 4711");
    CHECK_STR(d.serial, "4711-A");
    CHECK_STR(d.org, "Owner Org");
    CHECK_STR(d.subject, "serialNumber=4711-A,CN=HSM 4711,O=Owner Org");
    CHECK_MEM(d.spki, d.spkilen, spki, spkilen);
    hsm_csr_details_free(&d);

    /* a flipped bit in the signature: it still parses, but does not verify */
    unsigned char *bad = flipped(der, derlen, -2);
    CHECK(hsm_csr_info(bad, derlen, &d, &err) == 0);
    CHECK(d.valid == 0);
    CHECK(strstr(d.why, "does not verify") != NULL);
    hsm_csr_details_free(&d);
    free(bad);

    /* CN only: no other attributes */
    hsm_x509_name cn_only = {"only", NULL, ""};
    unsigned char *der2 = NULL;
    size_t der2len = 0;
    CHECK(hsm_csr_build(&cn_only, spki, spkilen, hash, soft_sign, &s, &der2, &der2len, &err) == 0);
    CHECK(hsm_csr_info(der2, der2len, &d, &err) == 0);
    CHECK_STR(d.subject, "CN=only");
    CHECK(d.serial[0] == '\0' && d.org[0] == '\0' && d.valid);
    hsm_csr_details_free(&d);
    free(der2);
    free(der);
    OPENSSL_free(spki);
}

static void test_csr_errors(EVP_PKEY *ec, EVP_PKEY *ec2, EVP_PKEY *ed)
{
    hsm_err err = {0};
    size_t spkilen, dlen, derlen = 0;
    unsigned char *spki = pub_der(ec, &spkilen), *dspki = pub_der(ed, &dlen), *der = NULL;
    soft_signer s = {.key = ec};
    hsm_x509_name nm = {"x", NULL, NULL};

    hsm_x509_name nocn = {NULL, "1", NULL};
    CHECK(hsm_csr_build(&nocn, spki, spkilen, "sha256", soft_sign, &s, &der, &derlen, &err) == -1);
    CHECK_MSG(err, "common name (CN) is empty");
    hsm_x509_name badser = {"x", "J\xc3\xbcrgen", NULL};
    CHECK(hsm_csr_build(&badser, spki, spkilen, "sha256", soft_sign, &s, &der, &derlen, &err) == -1);
    CHECK_MSG(err, "is not 1 to 64 PrintableString characters");
    char longorg[80];
    memset(longorg, 'o', 65);
    longorg[65] = 0;
    hsm_x509_name badorg = {"x", NULL, longorg};
    CHECK(hsm_csr_build(&badorg, spki, spkilen, "sha256", soft_sign, &s, &der, &derlen, &err) == -1);
    CHECK_MSG(err, "organization (O)");
    CHECK(hsm_csr_build(&nm, dspki, dlen, "sha256", soft_sign, &s, &der, &derlen, &err) == -1);
    CHECK_MSG(err, "Ed25519 keys are not supported yet");
    CHECK(hsm_csr_build(&nm, spki, spkilen, "md5", soft_sign, &s, &der, &derlen, &err) == -1);
    CHECK_MSG(err, "signature hash \"md5\"");
    CHECK(hsm_csr_build(&nm, spki, spkilen, "sha256", NULL, &s, &der, &derlen, &err) == -1);
    CHECK_MSG(err, "no signer given");
    s.fail = 1;
    CHECK(hsm_csr_build(&nm, spki, spkilen, "sha256", soft_sign, &s, &der, &derlen, &err) == -1);
    CHECK_STR(err.fn, "C_Sign");
    s.fail = 0;
    s.key = ec2;   /* the HSM signed with another key of the same curve */
    CHECK(hsm_csr_build(&nm, spki, spkilen, "sha256", soft_sign, &s, &der, &derlen, &err) == -1);
    CHECK_MSG(err, "does not verify with the request's public key");
    s.key = ec;
    s.truncate = 1;
    CHECK(hsm_csr_build(&nm, spki, spkilen, "sha256", soft_sign, &s, &der, &derlen, &err) == -1);
    CHECK_MSG(err, "expected ECDSA r||s");
    s.truncate = 0;
    CHECK(der == NULL);

    /* parsing: empty, garbage, PEM, trailing bytes */
    hsm_csr_details d;
    CHECK(hsm_csr_info(NULL, 0, &d, &err) == -1);
    CHECK_MSG(err, "certificate request is empty");
    static const unsigned char garbage[] = {0x30, 0x03, 0x02, 0x01, 0x05};
    CHECK(hsm_csr_info(garbage, sizeof garbage, &d, &err) == -1);
    CHECK_MSG(err, "not a DER PKCS#10 certificate request");
    CHECK(hsm_csr_build(&nm, spki, spkilen, "sha256", soft_sign, &s, &der, &derlen, &err) == 0);
    char *pem = NULL;
    CHECK(hsm_pem_encode("CERTIFICATE REQUEST", der, derlen, &pem, &err) == 0);
    CHECK(hsm_csr_info((const unsigned char *)pem, strlen(pem), &d, &err) == -1);
    CHECK_MSG(err, "certificate request is PEM text, not DER");
    unsigned char *longer = malloc(derlen + 1);
    memcpy(longer, der, derlen);
    longer[derlen] = 0;
    CHECK(hsm_csr_info(longer, derlen + 1, &d, &err) == -1);
    CHECK_MSG(err, "1 unexpected bytes after the DER certificate request");
    CHECK(d.spki == NULL);
    free(longer);
    free(pem);
    free(der);
    OPENSSL_free(spki);
    OPENSSL_free(dspki);
}

/* A self-signed CA (ca_key), a CSR by leaf_key, the CA issues the leaf; both are checked with
 * OpenSSL directly and with hsm_cert_inspect / hsm_cert_verify_chain. */
static void test_issue(EVP_PKEY *ca_key, EVP_PKEY *leaf_key, const char *hash, int sig_nid,
                       const char *sig_name)
{
    hsm_err err = {0};
    size_t caspki_len, lspki_len, cadlen = 0, csrlen = 0, leaflen = 0;
    unsigned char *caspki = pub_der(ca_key, &caspki_len), *lspki = pub_der(leaf_key, &lspki_len);
    unsigned char *cader = NULL, *csr = NULL, *leaf = NULL;
    soft_signer cas = {.key = ca_key}, ls = {.key = leaf_key};
    int leaf_ec = EVP_PKEY_get_base_id(leaf_key) == EVP_PKEY_EC;

    /* the owner's self-signed CA certificate (POC) */
    hsm_x509_name caname = {"Owner POC", "OWNER-1", "hsmsh lab"};
    static const unsigned char ca_serial[] = {0x00, 0x00, 0x01, 0x02};   /* leading zeros dropped */
    hsm_cert_opts co = {.serial = ca_serial, .serial_len = sizeof ca_serial, .days = 3650,
                        .hash = hash, .ca = 1, .pathlen = 0};
    CHECK(hsm_x509_self_signed_ex(caspki, caspki_len, &caname, &co, soft_sign, &cas, &cader,
                                  &cadlen, &err) == 0);
    if (!cader) {
        fprintf(stderr, "  CA %s: %s\n", hash, err.msg);
        goto done;
    }
    X509 *cx = parse_x509(cader, cadlen);
    CHECK(X509_verify(cx, ca_key) == 1);
    CHECK(X509_check_ca(cx) == 1);
    CHECK(X509_get_extension_flags(cx) & EXFLAG_CA);
    CHECK(X509_get_pathlen(cx) == 0);
    CHECK(X509_get_key_usage(cx) == (KU_KEY_CERT_SIGN | KU_CRL_SIGN));
    CHECK(X509_get_signature_nid(cx) == sig_nid);
    CHECK(ASN1_INTEGER_get(X509_get0_serialNumber(cx)) == 0x0102);
    CHECK(X509_check_issued(cx, cx) == X509_V_OK);
    const ASN1_OCTET_STRING *ca_ski = X509_get0_subject_key_id(cx);
    const ASN1_OCTET_STRING *ca_aki = X509_get0_authority_key_id(cx);
    CHECK(ca_ski && ca_aki && ASN1_OCTET_STRING_cmp(ca_ski, ca_aki) == 0);
    CHECK(hsm_cert_verify_chain(cader, cadlen, cader, cadlen, 0, &err) == 0);

    /* the identity's CSR, signed by its own key */
    hsm_x509_name lname = {"HSM 0042", "0042", NULL};
    CHECK(hsm_csr_build(&lname, lspki, lspki_len, hash, soft_sign, &ls, &csr, &csrlen, &err) == 0);

    /* the CA issues it */
    static const unsigned char serial[] = {0x2a};
    time_t nb = time(NULL) - 3600;
    hsm_cert_opts lo = {.serial = serial, .serial_len = 1, .not_before = (long long)nb,
                        .days = 365, .hash = hash};
    hsm_cert_subject subj = {.csr = csr, .csrlen = csrlen};
    CHECK(hsm_cert_issue(&subj, cader, cadlen, &lo, soft_sign, &cas, &leaf, &leaflen, &err) == 0);
    if (!leaf) {
        fprintf(stderr, "  issue %s: %s\n", hash, err.msg);
        X509_free(cx);
        goto done;
    }
    X509 *lx = parse_x509(leaf, leaflen);
    CHECK(X509_verify(lx, ca_key) == 1);
    CHECK(X509_get_signature_nid(lx) == sig_nid);
    CHECK(X509_get_version(lx) == X509_VERSION_3);
    CHECK(X509_NAME_cmp(X509_get_issuer_name(lx), X509_get_subject_name(cx)) == 0);
    CHECK_STR(name_entry(X509_get_subject_name(lx), NID_commonName), "HSM 0042");
    CHECK_STR(name_entry(X509_get_subject_name(lx), NID_serialNumber), "0042");
    CHECK(ASN1_INTEGER_get(X509_get0_serialNumber(lx)) == 42);
    CHECK(ASN1_TIME_cmp_time_t(X509_get0_notBefore(lx), nb) == 0);
    CHECK(ASN1_TIME_cmp_time_t(X509_get0_notAfter(lx), nb + 365 * 86400) == 0);
    CHECK(!(X509_get_extension_flags(lx) & EXFLAG_CA));
    CHECK(X509_get_extension_flags(lx) & EXFLAG_BCONS);
    CHECK(X509_get_key_usage(lx) == (leaf_ec ? (KU_DIGITAL_SIGNATURE | KU_KEY_AGREEMENT)
                                             : KU_DIGITAL_SIGNATURE));
    CHECK(ASN1_OCTET_STRING_cmp(X509_get0_authority_key_id(lx), ca_ski) == 0);
    CHECK(X509_check_issued(cx, lx) == X509_V_OK);
    int crit = -1;
    BASIC_CONSTRAINTS *bc = X509_get_ext_d2i(lx, NID_basic_constraints, &crit, NULL);
    CHECK(bc && crit == 1 && !bc->ca && !bc->pathlen);
    BASIC_CONSTRAINTS_free(bc);
    unsigned char *back = NULL;
    size_t backlen = 0;
    CHECK(hsm_spki_from_cert(leaf, leaflen, &back, &backlen, &err) == 0);
    CHECK_MEM(back, backlen, lspki, lspki_len);
    free(back);

    /* OpenSSL's own strict chain verification agrees */
    X509_STORE *st = X509_STORE_new();
    X509_STORE_CTX *sc = X509_STORE_CTX_new();
    X509_STORE_add_cert(st, cx);
    X509_STORE_CTX_init(sc, st, lx, NULL);
    X509_VERIFY_PARAM_set_flags(X509_STORE_CTX_get0_param(sc), X509_V_FLAG_X509_STRICT);
    CHECK(X509_verify_cert(sc) == 1);
    if (verbose)
        printf("  strict verify: %s\n", X509_verify_cert_error_string(X509_STORE_CTX_get_error(sc)));
    X509_STORE_CTX_free(sc);
    X509_STORE_free(st);

    CHECK(hsm_cert_verify_chain(leaf, leaflen, cader, cadlen, 0, &err) == 0);

    /* hsm_cert_inspect */
    hsm_cert_details d;
    CHECK(hsm_cert_inspect(leaf, leaflen, &d, &err) == 0);
    CHECK_STR(d.subject, "serialNumber=0042,CN=HSM 0042");
    CHECK_STR(d.issuer, "serialNumber=OWNER-1,CN=Owner POC,O=hsmsh lab");
    CHECK_STR(d.cn, "HSM 0042");
    CHECK_STR(d.subject_serial, "0042");
    CHECK_STR(d.org, "");
    CHECK_STR(d.issuer_cn, "Owner POC");
    CHECK_STR(d.serial, "2a");
    CHECK_STR(d.sig_alg, sig_name);
    CHECK(d.not_before == (long long)nb && d.not_after == (long long)nb + 365 * 86400);
    CHECK(d.is_ca == 0 && d.pathlen == -1 && d.has_key_usage);
    CHECK(d.skilen == 20 && d.akilen == 20);
    CHECK(d.akilen == (size_t)ASN1_STRING_length(ca_ski)
          && memcmp(d.aki, ASN1_STRING_get0_data(ca_ski), d.akilen) == 0);
    CHECK_MEM(d.spki, d.spkilen, lspki, lspki_len);
    hsm_cert_details_free(&d);
    CHECK(hsm_cert_inspect(cader, cadlen, &d, &err) == 0);
    CHECK(d.is_ca == 1 && d.pathlen == 0);
    CHECK(d.key_usage == (KU_KEY_CERT_SIGN | KU_CRL_SIGN));
    CHECK_STR(d.serial, "0102");
    CHECK_STR(d.org, "hsmsh lab");
    hsm_cert_details_free(&d);

    /* from a bare SubjectPublicKeyInfo and name; a random serial */
    unsigned char *leaf2 = NULL;
    size_t leaf2len = 0;
    hsm_cert_opts lo2 = {.days = 30, .hash = hash};
    hsm_cert_subject subj2 = {.spki = lspki, .spkilen = lspki_len,
                              .name = {"bare", NULL, "org"}};
    CHECK(hsm_cert_issue(&subj2, cader, cadlen, &lo2, soft_sign, &cas, &leaf2, &leaf2len, &err) == 0);
    CHECK(hsm_cert_verify_chain(leaf2, leaf2len, cader, cadlen, 0, &err) == 0);
    CHECK(hsm_cert_inspect(leaf2, leaf2len, &d, &err) == 0);
    CHECK_STR(d.subject, "CN=bare,O=org");
    CHECK(strlen(d.serial) == 32);
    hsm_cert_details_free(&d);
    free(leaf2);

    X509_free(lx);
    X509_free(cx);
done:
    free(leaf);
    free(csr);
    free(cader);
    OPENSSL_free(caspki);
    OPENSSL_free(lspki);
}

/* Makes a certificate with hsm_x509_self_signed_ex or, with issuer, hsm_cert_issue. */
static unsigned char *make_cert(EVP_PKEY *subject, const char *cn, const hsm_cert_opts *o,
                                const unsigned char *issuer, size_t issuerlen, EVP_PKEY *ikey,
                                size_t *len)
{
    hsm_err err = {0};
    size_t spkilen;
    unsigned char *spki = pub_der(subject, &spkilen), *der = NULL;
    soft_signer s = {.key = issuer ? ikey : subject};
    hsm_x509_name nm = {cn, NULL, NULL};
    int rc;
    if (issuer) {
        hsm_cert_subject subj = {.spki = spki, .spkilen = spkilen, .name = nm};
        rc = hsm_cert_issue(&subj, issuer, issuerlen, o, soft_sign, &s, &der, len, &err);
    } else {
        rc = hsm_x509_self_signed_ex(spki, spkilen, &nm, o, soft_sign, &s, &der, len, &err);
    }
    CHECK(rc == 0);
    if (rc)
        fprintf(stderr, "  make_cert %s: %s\n", cn, err.msg);
    OPENSSL_free(spki);
    return der;
}

static void test_issue_errors(EVP_PKEY *ca_key, EVP_PKEY *other, EVP_PKEY *leaf_key)
{
    hsm_err err = {0};
    size_t calen = 0, eelen = 0, csrlen = 0, lspki_len, derlen = 0;
    hsm_cert_opts cao = {.days = 10, .hash = "sha512", .ca = 1, .pathlen = 0};
    hsm_cert_opts eeo = {.days = 10, .hash = "sha512"};
    unsigned char *ca = make_cert(ca_key, "CA", &cao, NULL, 0, NULL, &calen);
    unsigned char *ee = make_cert(other, "EE", &eeo, NULL, 0, NULL, &eelen);
    unsigned char *lspki = pub_der(leaf_key, &lspki_len), *csr = NULL, *der = NULL;
    soft_signer ls = {.key = leaf_key}, cas = {.key = ca_key};
    hsm_x509_name nm = {"leaf", NULL, NULL};
    CHECK(hsm_csr_build(&nm, lspki, lspki_len, "sha512", soft_sign, &ls, &csr, &csrlen, &err) == 0);
    hsm_cert_subject subj = {.csr = csr, .csrlen = csrlen};
    hsm_cert_opts o = {.days = 10, .hash = "sha512"};

    /* the issuer is not a CA: an identity (keyUsage without keyCertSign) */
    soft_signer es = {.key = other};
    CHECK(hsm_cert_issue(&subj, ee, eelen, &o, soft_sign, &es, &der, &derlen, &err) == -1);
    CHECK_MSG(err, "the issuer certificate \"CN=EE\" is not a CA: its keyUsage lacks keyCertSign");
    /* ... or the plain self-signed profile; or a v1 certificate */
    size_t spkilen;
    unsigned char *ospki = pub_der(other, &spkilen), *plain = NULL;
    size_t plainlen = 0;
    CHECK(hsm_x509_self_signed(ospki, spkilen, "plain", 10, "sha256", soft_sign, &es, &plain,
                               &plainlen, &err) == 0);
    CHECK(hsm_cert_issue(&subj, plain, plainlen, &o, soft_sign, &es, &der, &derlen, &err) == -1);
    CHECK_MSG(err, "is not a CA");
    free(plain);
    OPENSSL_free(ospki);
    /* a CA under a pathlen:0 CA */
    o.ca = 1;
    CHECK(hsm_cert_issue(&subj, ca, calen, &o, soft_sign, &cas, &der, &derlen, &err) == -1);
    CHECK_MSG(err, "has pathlen:0: it may certify end entities only");
    o.ca = 0;
    /* the issuer's private key is not the one signing */
    CHECK(hsm_cert_issue(&subj, ca, calen, &o, soft_sign, &es, &der, &derlen, &err) == -1);
    CHECK_MSG(err, "does not verify with the issuer certificate's public key");
    /* the HSM fails */
    cas.fail = 1;
    CHECK(hsm_cert_issue(&subj, ca, calen, &o, soft_sign, &cas, &der, &derlen, &err) == -1);
    CHECK_STR(err.fn, "C_Sign");
    cas.fail = 0;
    /* a CSR with a flipped signature bit, or flipped subject bit */
    hsm_cert_subject bad = subj;
    unsigned char *fl = flipped(csr, csrlen, -2);
    bad.csr = fl;
    CHECK(hsm_cert_issue(&bad, ca, calen, &o, soft_sign, &cas, &der, &derlen, &err) == -1);
    CHECK_MSG(err, "the certificate request's signature does not verify");
    free(fl);
    const unsigned char *cnpos = memmem(csr, csrlen, "leaf", 4);
    CHECK(cnpos != NULL);
    fl = flipped(csr, csrlen, cnpos - csr);   /* "leaf" -> "meaf" */
    bad.csr = fl;
    CHECK(hsm_cert_issue(&bad, ca, calen, &o, soft_sign, &cas, &der, &derlen, &err) == -1);
    CHECK_MSG(err, "the certificate request's signature does not verify");
    free(fl);
    /* bad options */
    static const unsigned char zero[] = {0, 0}, big[21] = {1};
    static unsigned char top[20] = {0x80};
    o.serial = zero;
    o.serial_len = sizeof zero;
    CHECK(hsm_cert_issue(&subj, ca, calen, &o, soft_sign, &cas, &der, &derlen, &err) == -1);
    CHECK_MSG(err, "serial number must be positive");
    o.serial = big;
    o.serial_len = sizeof big;
    CHECK(hsm_cert_issue(&subj, ca, calen, &o, soft_sign, &cas, &der, &derlen, &err) == -1);
    CHECK_MSG(err, "at most 20 octets");
    o.serial = top;
    o.serial_len = sizeof top;
    CHECK(hsm_cert_issue(&subj, ca, calen, &o, soft_sign, &cas, &der, &derlen, &err) == -1);
    CHECK_MSG(err, "at most 20 octets");
    top[0] = 0x7f;   /* 159 bits: the largest allowed */
    CHECK(hsm_cert_issue(&subj, ca, calen, &o, soft_sign, &cas, &der, &derlen, &err) == 0);
    free(der);
    der = NULL;
    o.serial = NULL;
    o.days = 0;
    CHECK(hsm_cert_issue(&subj, ca, calen, &o, soft_sign, &cas, &der, &derlen, &err) == -1);
    CHECK_MSG(err, "at least 1 day");
    o.days = 10;
    CHECK(hsm_cert_issue(&subj, ca, calen, NULL, soft_sign, &cas, &der, &derlen, &err) == -1);
    CHECK_MSG(err, "no certificate options");
    hsm_cert_subject none = {0};
    CHECK(hsm_cert_issue(&none, ca, calen, &o, soft_sign, &cas, &der, &derlen, &err) == -1);
    CHECK_MSG(err, "no certificate request or SubjectPublicKeyInfo");
    hsm_cert_subject bare = {.spki = lspki, .spkilen = lspki_len};
    CHECK(hsm_cert_issue(&bare, ca, calen, &o, soft_sign, &cas, &der, &derlen, &err) == -1);
    CHECK_MSG(err, "needs a subject common name");
    CHECK(hsm_cert_issue(&subj, csr, csrlen, &o, soft_sign, &cas, &der, &derlen, &err) == -1);
    CHECK_MSG(err, "issuer certificate: not a DER X.509 certificate");
    CHECK(der == NULL);

    /* a CSR's subject replaced by the CA */
    hsm_cert_subject over = {.csr = csr, .csrlen = csrlen, .name = {"renamed", "9", NULL}};
    CHECK(hsm_cert_issue(&over, ca, calen, &o, soft_sign, &cas, &der, &derlen, &err) == 0);
    hsm_cert_details d;
    CHECK(hsm_cert_inspect(der, derlen, &d, &err) == 0);
    CHECK_STR(d.subject, "serialNumber=9,CN=renamed");
    hsm_cert_details_free(&d);
    free(der);
    der = NULL;

    /* a CSR with an empty subject (made by OpenSSL itself) needs a name */
    X509_REQ *r = X509_REQ_new();
    X509_REQ_set_pubkey(r, leaf_key);
    CHECK(X509_REQ_sign(r, leaf_key, EVP_sha256()) > 0);
    unsigned char *rder = NULL;
    int rlen = i2d_X509_REQ(r, &rder);
    hsm_cert_subject empty = {.csr = rder, .csrlen = (size_t)rlen};
    CHECK(hsm_cert_issue(&empty, ca, calen, &o, soft_sign, &cas, &der, &derlen, &err) == -1);
    CHECK_MSG(err, "has an empty subject");
    empty.name.cn = "named";
    CHECK(hsm_cert_issue(&empty, ca, calen, &o, soft_sign, &cas, &der, &derlen, &err) == 0);
    free(der);
    OPENSSL_free(rder);
    X509_REQ_free(r);

    free(csr);
    free(ca);
    free(ee);
    OPENSSL_free(lspki);
}

static void test_verify_chain(EVP_PKEY *ca_key, EVP_PKEY *other, EVP_PKEY *leaf_key,
                              EVP_PKEY *rsa)
{
    hsm_err err = {0};
    long long now = (long long)time(NULL);
    size_t calen, ca2len, ca3len, eelen, l1len, l2len, l3len, l4len, l5len, rlen, rllen,
           sublen, l6len;
    hsm_cert_opts cao = {.days = 100, .hash = "sha512", .ca = 1, .pathlen = -1};
    hsm_cert_opts eeo = {.days = 10, .hash = "sha512"};
    unsigned char *ca = make_cert(ca_key, "Owner CA", &cao, NULL, 0, NULL, &calen);
    unsigned char *ca2 = make_cert(other, "Other CA", &cao, NULL, 0, NULL, &ca2len);
    unsigned char *ca3 = make_cert(other, "Owner CA", &cao, NULL, 0, NULL, &ca3len);
    /* the same key and name as the CA, but an identity certificate */
    unsigned char *ee = make_cert(ca_key, "Owner CA", &eeo, NULL, 0, NULL, &eelen);
    unsigned char *l1 = make_cert(leaf_key, "leaf", &eeo, ca, calen, ca_key, &l1len);
    unsigned char *l2 = make_cert(leaf_key, "leaf", &eeo, ca2, ca2len, other, &l2len);
    unsigned char *l3 = make_cert(leaf_key, "leaf", &eeo, ca3, ca3len, other, &l3len);
    hsm_cert_opts old = {.days = 1, .not_before = now - 10 * 86400};
    unsigned char *l4 = make_cert(leaf_key, "old", &old, ca, calen, ca_key, &l4len);
    hsm_cert_opts future = {.days = 1, .not_before = now + 10 * 86400};
    unsigned char *l5 = make_cert(leaf_key, "future", &future, ca, calen, ca_key, &l5len);
    /* an RSA CA certifying an EC identity */
    hsm_cert_opts rco = {.days = 10, .hash = "sha256", .ca = 1};
    unsigned char *rca = make_cert(rsa, "RSA CA", &rco, NULL, 0, NULL, &rlen);
    unsigned char *rl = make_cert(leaf_key, "leaf", &eeo, rca, rlen, rsa, &rllen);
    /* an intermediate CA (pathlen -1 root) as the trust anchor */
    unsigned char *sub = make_cert(other, "Sub CA", &cao, ca, calen, ca_key, &sublen);
    unsigned char *l6 = make_cert(leaf_key, "leaf", &eeo, sub, sublen, other, &l6len);
    if (!(ca && ca2 && ca3 && ee && l1 && l2 && l3 && l4 && l5 && rca && rl && sub && l6))
        goto done;

    CHECK(hsm_cert_verify_chain(l1, l1len, ca, calen, 0, &err) == 0);
    CHECK(hsm_cert_verify_chain(rl, rllen, rca, rlen, 0, &err) == 0);
    CHECK(hsm_cert_verify_chain(l6, l6len, sub, sublen, 0, &err) == 0);
    CHECK(hsm_cert_verify_chain(sub, sublen, ca, calen, 0, &err) == 0);
    CHECK(hsm_cert_verify_chain(ca, calen, ca, calen, 0, &err) == 0);
    CHECK(hsm_cert_verify_chain(ee, eelen, ee, eelen, 0, &err) == 0);   /* self-signed identity */

    CHECK(hsm_cert_verify_chain(l2, l2len, ca, calen, 0, &err) == -1);
    CHECK_MSG(err, "issuer mismatch: the certificate \"CN=leaf\" was issued by \"CN=Other CA\", "
                   "not by the CA \"CN=Owner CA\"");
    CHECK(hsm_cert_verify_chain(l3, l3len, ca, calen, 0, &err) == -1);
    CHECK_MSG(err, "issuer mismatch: ");
    CHECK_MSG(err, "authority key identifier");
    CHECK(hsm_cert_verify_chain(l1, l1len, ee, eelen, 0, &err) == -1);
    CHECK_MSG(err, "not a CA: \"CN=Owner CA\"");
    CHECK(hsm_cert_verify_chain(l4, l4len, ca, calen, 0, &err) == -1);
    CHECK_MSG(err, "expired: the certificate \"CN=old\" expired at ");
    CHECK(hsm_cert_verify_chain(l5, l5len, ca, calen, 0, &err) == -1);
    CHECK_MSG(err, "not yet valid: the certificate \"CN=future\" is valid from ");
    /* at a given time: the future one is valid then, the current one has expired */
    CHECK(hsm_cert_verify_chain(l5, l5len, ca, calen, now + 10 * 86400 + 60, &err) == 0);
    CHECK(hsm_cert_verify_chain(l1, l1len, ca, calen, now + 50 * 86400, &err) == -1);
    CHECK_MSG(err, "expired: the certificate \"CN=leaf\"");
    CHECK(hsm_cert_verify_chain(l1, l1len, ca, calen, now + 200 * 86400, &err) == -1);
    CHECK_MSG(err, "expired: ");   /* the leaf, or the CA itself */
    CHECK(hsm_cert_verify_chain(l1, l1len, ca, calen, now - 86400, &err) == -1);
    CHECK_MSG(err, "not yet valid: ");

    /* altered signatures */
    unsigned char *bad = flipped(l1, l1len, -2);
    CHECK(hsm_cert_verify_chain(bad, l1len, ca, calen, 0, &err) == -1);
    CHECK_MSG(err, "signature: the certificate \"CN=leaf\" is not signed by the CA");
    free(bad);
    bad = flipped(ca, calen, -2);
    CHECK(hsm_cert_verify_chain(l1, l1len, bad, calen, 0, &err) == -1);
    CHECK_MSG(err, "signature: the CA certificate \"CN=Owner CA\" is self-signed but its signature");
    free(bad);

    /* inputs */
    CHECK(hsm_cert_verify_chain(l1, l1len, NULL, 0, 0, &err) == -1);
    CHECK_MSG(err, "CA certificate: certificate is empty");
    CHECK(hsm_cert_verify_chain(l1, l1len - 1, ca, calen, 0, &err) == -1);
    CHECK_MSG(err, "not a DER X.509 certificate");
done:
    free(ca);
    free(ca2);
    free(ca3);
    free(ee);
    free(l1);
    free(l2);
    free(l3);
    free(l4);
    free(l5);
    free(rca);
    free(rl);
    free(sub);
    free(l6);
}

int main(void)
{
    verbose = getenv("VERBOSE") != NULL;
    EVP_PKEY *rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    EVP_PKEY *rsa2 = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    EVP_PKEY *p256 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    EVP_PKEY *p384 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
    EVP_PKEY *p521 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-521");
    EVP_PKEY *p521b = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-521");
    EVP_PKEY *p256b = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    EVP_PKEY *ed25519 = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    EVP_PKEY *ed448 = EVP_PKEY_Q_keygen(NULL, NULL, "ED448");
    CHECK(rsa && rsa2 && p256 && p384 && p521 && ed25519 && ed448 && p521b && p256b);
    if (!(rsa && rsa2 && p256 && p384 && p521 && ed25519 && ed448 && p521b && p256b))
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

    test_der_kind(p256);
    test_csr(p521, "sha512", NID_ecdsa_with_SHA512);
    test_csr(p256, "sha256", NID_ecdsa_with_SHA256);
    test_csr(rsa, "sha384", NID_sha384WithRSAEncryption);
    test_csr_errors(p256, p256b, ed25519);
    test_issue(p521, p521b, "sha512", NID_ecdsa_with_SHA512, "ecdsa-with-SHA512");
    test_issue(rsa, p384, "sha256", NID_sha256WithRSAEncryption, "sha256WithRSAEncryption");
    test_issue(p384, rsa2, "sha384", NID_ecdsa_with_SHA384, "ecdsa-with-SHA384");
    test_issue_errors(p521, p521b, p384);
    test_verify_chain(p521, p521b, p384, rsa);

    CHECK(ERR_peek_error() == 0);   /* no stale OpenSSL errors left behind */
    EVP_PKEY_free(rsa);
    EVP_PKEY_free(rsa2);
    EVP_PKEY_free(p256);
    EVP_PKEY_free(p384);
    EVP_PKEY_free(p521);
    EVP_PKEY_free(p521b);
    EVP_PKEY_free(p256b);
    EVP_PKEY_free(ed25519);
    EVP_PKEY_free(ed448);
    return CHECK_DONE();
}
