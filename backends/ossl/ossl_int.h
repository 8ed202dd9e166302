/* ossl_int.h - what the files of backends/ossl share among themselves (not an API: the
 * API is hsm_ossl.h). One file per concern:
 *   ossl_util.c   errors, small helpers, DER pre-checks, certificate and SPKI parsing
 *   spki.c        SubjectPublicKeyInfo from PKCS#11 attributes, from certificates, to parts
 *   digest.c      digests by name
 *   x509_sign.c   signing through a raw HSM signer, building certificates, self-signed
 *   cert_info.c   certificate information and inspection
 *   pem.c         PEM
 *   csr.c         CSRs, X.509 names, the kind of a DER blob
 *   cert_issue.c  issued and CA certificates
 *   chain.c       chain verification naming why
 *   sha256.c      incremental SHA-256 / SHA-512
 *
 * Only public data passes through here. OpenSSL's error queue is cleared on every failure
 * path that reads it, so a later caller never sees our stale errors. */
#ifndef HSMSH_OSSL_INT_H
#define HSMSH_OSSL_INT_H

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

const char *hsm_ossl_fmt_time(long long t, char *buf, size_t len);
int hsm_ossl_name_out(const X509_NAME *nm, char *dst, size_t dlen, const char *what, hsm_err *err);
int hsm_ossl_time_out(const ASN1_TIME *t, long long *out, const char *what, hsm_err *err);
int hsm_ossl_attr_out(const X509_NAME *nm, int nid, char *dst, size_t dlen, const char *what,
                    hsm_err *err);
X509_REQ *hsm_ossl_csr_parse(const unsigned char *der, size_t len, hsm_err *err);
int hsm_ossl_name_build(const hsm_x509_name *nm, X509_NAME **out, hsm_err *err);
int hsm_ossl_name_der(const X509_NAME *name, unsigned char **der, size_t *derlen, hsm_err *err);
int hsm_ossl_prefix_err(hsm_err *err, const char *what);
int hsm_ossl_xpub_der(X509_PUBKEY *xp, unsigned char **der, size_t *derlen, hsm_err *err);
const EVP_MD *hsm_ossl_md_by_name(const char *alg);
int hsm_ossl_ascii_ieq(const char *a, const char *b);
int hsm_ossl_cert_der(X509 *x, unsigned char **der, size_t *derlen, hsm_err *err);
X509 *hsm_ossl_cert_parse(const unsigned char *der, size_t len, hsm_err *err);
int hsm_ossl_der_exact(const unsigned char *der, size_t len, const unsigned char *end,
                     const char *what, hsm_err *err);
int hsm_ossl_der_header(const unsigned char *p, size_t n, unsigned *tag, size_t *hdr, size_t *clen);
int hsm_ossl_der_precheck(const unsigned char *der, size_t len, const char *what, hsm_err *err);
int hsm_ossl_dup_out(const unsigned char *src, size_t n, unsigned char **out, size_t *outlen,
                   hsm_err *err);
__attribute__((format(printf, 2, 3)))
int hsm_ossl_fail(hsm_err *err, const char *fmt, ...);
int hsm_ossl_nomem(hsm_err *err);
__attribute__((format(printf, 2, 3)))
int hsm_ossl_ofail(hsm_err *err, const char *fmt, ...);
int hsm_ossl_pubkey_der(EVP_PKEY *pk, unsigned char **der, size_t *derlen, hsm_err *err);
EVP_PKEY *hsm_ossl_pubkey_parse(const unsigned char *spki, size_t len, hsm_err *err);
int hsm_ossl_str_out(char *dst, size_t dlen, const char *src, size_t n, const char *what,
                   hsm_err *err);
int hsm_ossl_key_describe(EVP_PKEY *pk, char *alg, size_t alglen, int *bits, hsm_err *err);
X509 *hsm_ossl_cert_build(const cert_spec *cs, hsm_err *err);
int hsm_ossl_set_algor(X509_ALGOR *a, const sig_alg *sa);
int hsm_ossl_set_signature(ASN1_BIT_STRING *bs, const unsigned char *sig, size_t siglen,
                         hsm_err *err);
int hsm_ossl_sig_alg_for(EVP_PKEY *signer, const char *hash, sig_alg *sa, hsm_err *err);
int hsm_ossl_sign_tbs(const sig_alg *sa, const unsigned char *tbs, size_t tbslen,
                    hsm_raw_signer sign, void *ctx, unsigned char **sig, size_t *siglen,
                    hsm_err *err);
int hsm_ossl_x509_sign_raw(X509 *x, const sig_alg *sa, hsm_raw_signer sign, void *ctx,
                         hsm_err *err);

#endif
