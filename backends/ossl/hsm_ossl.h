/* hsm_ossl.h - OpenSSL 3 helpers of hsmsh: public keys, certificates, digests, PEM.
 *
 * Pure C (no Lua). Key material never passes through here: only public keys,
 * certificates, digests and signatures. Private-key operations are done by the HSM
 * through an hsm_raw_signer callback.
 *
 * Conventions: functions return 0 on success and -1 on failure, filling an hsm_err
 * with a sentence that names the problem (err->rv stays CKR_OK). Every output buffer
 * (der, pem, sig ...) is allocated with malloc and freed by the caller with free().
 */
#ifndef HSM_OSSL_H
#define HSM_OSSL_H

#include <stddef.h>
#include "pkcs11/hsm_p11.h"   /* hsm_err */

/* Largest digest hsm_digest produces (SHA-512). */
#define HSM_DIGEST_MAX 64

/* ------------------------------------------------------------ public keys */
/* DER SubjectPublicKeyInfo (rsaEncryption) from CKA_MODULUS and CKA_PUBLIC_EXPONENT (big-endian). */
int hsm_spki_rsa(const unsigned char *n, size_t nlen, const unsigned char *e, size_t elen,
                 unsigned char **der, size_t *derlen, hsm_err *err);
/* DER SubjectPublicKeyInfo from CKA_EC_PARAMS (namedCurve OID, Ed25519/Ed448/X25519/X448
 * OID, or a PrintableString curve name such as "edwards25519") and CKA_EC_POINT (either
 * DER OCTET STRING-wrapped or raw). Weierstrass points must be uncompressed and on the curve. */
int hsm_spki_ec(const unsigned char *params, size_t plen, const unsigned char *point, size_t ptlen,
                unsigned char **der, size_t *derlen, hsm_err *err);
/* The SubjectPublicKeyInfo of a DER X.509 certificate, byte for byte as the certificate has it. */
int hsm_spki_from_cert(const unsigned char *der, size_t len, unsigned char **spki,
                       size_t *spkilen, hsm_err *err);
/* Names a public key: alg = "RSA", "EC P-256", "EC P-384", "EC P-521", "EC secp256k1",
 * "Ed25519", "Ed448", "X25519", "X448"; bits = modulus / group order size, or 8 times the
 * raw key length for Edwards and Montgomery keys (Ed25519 256, Ed448 456). alg or bits may be NULL. */
int hsm_spki_info(const unsigned char *spki, size_t len, char *alg, size_t alglen, int *bits,
                  hsm_err *err);

/* The PKCS#11 attributes of the public key in a SubjectPublicKeyInfo. kind "RSA": a = CKA_MODULUS,
 * b = CKA_PUBLIC_EXPONENT (big-endian); kind "EC" or "EDWARDS": a = CKA_EC_PARAMS (DER OID),
 * b = CKA_EC_POINT (DER OCTET STRING). Free with hsm_pubparts_free. */
typedef struct hsm_pubparts {
    const char *kind;
    unsigned char *a, *b;
    size_t alen, blen;
} hsm_pubparts;
int hsm_spki_parts(const unsigned char *spki, size_t len, hsm_pubparts *out, hsm_err *err);
void hsm_pubparts_free(hsm_pubparts *p);

/* ------------------------------------------------------------ digests */
/* Incremental SHA-256 or SHA-512 (sha256.c), for data hashed as it streams past, such as a
 * sealed file's plaintext or a token image, one chunk at a time. File plaintext and public
 * data only. */
typedef struct hsm_sha256_ctx hsm_sha256_ctx;

/* A fresh context for bits = 256 or 512, or NULL (other sizes, out of memory). */
hsm_sha256_ctx *hsm_sha256_new(int bits);
/* Adds len bytes; 0 on success, -1 on failure. */
int hsm_sha256_update(hsm_sha256_ctx *c, const void *data, size_t len);
/* The digest of everything added (bits / 8 bytes into out); the context is spent afterwards.
 * 0 or -1. */
int hsm_sha256_final(hsm_sha256_ctx *c, unsigned char out[64]);
/* Frees a context (NULL is fine). */
void hsm_sha256_free(hsm_sha256_ctx *c);

/* SHA-256 of data. */
void hsm_sha256(const void *data, size_t len, unsigned char out[32]);
/* Digest by name ("sha1" "sha224" "sha256" "sha384" "sha512", any case, "SHA-256" too);
 * *outlen is the size of out on entry (HSM_DIGEST_MAX is always enough), the digest length on return. */
int hsm_digest(const char *alg, const void *data, size_t len, unsigned char *out, size_t *outlen,
               hsm_err *err);

/* ------------------------------------------------------------ certificates */
/* Signs with a raw HSM mechanism. RSA: in is the DER DigestInfo (the input of CKM_RSA_PKCS),
 * *sig the PKCS#1 v1.5 signature. ECDSA: in is the hash (the input of CKM_ECDSA), *sig is
 * PKCS#11's r||s. *sig must be malloc'd; the caller frees it. Returns 0, or -1 with err filled. */
typedef int (*hsm_raw_signer)(void *ctx, const unsigned char *in, size_t inlen,
                              unsigned char **sig, size_t *siglen, hsm_err *err);

/* A v3 self-signed certificate for spki (RSA or EC): random positive 128-bit serial,
 * subject = issuer = CN=cn, valid from now for days days, basicConstraints CA:FALSE and
 * keyUsage digitalSignature (both critical), subjectKeyIdentifier; signature
 * sha{256,384,512}WithRSAEncryption or ecdsa-with-SHA{256,384,512} by hash ("sha256"
 * "sha384" "sha512"; NULL = "sha256"), made by sign(ctx, ...) and checked against spki
 * before returning. */
int hsm_x509_self_signed(const unsigned char *spki, size_t spkilen, const char *cn, long days,
                         const char *hash, hsm_raw_signer sign, void *ctx,
                         unsigned char **der, size_t *derlen, hsm_err *err);
/* One-line RFC 2253 subject and issuer (UTF-8 kept, specials escaped) and notAfter as
 * "YYYY-MM-DD" of a DER certificate. Any output buffer may be NULL (with length 0) to skip it. */
int hsm_cert_info(const unsigned char *der, size_t len, char *subject, size_t slen,
                  char *issuer, size_t ilen, char *not_after, size_t nalen, hsm_err *err);
/* 0 when the DER certificate's signature verifies with its own public key, else -1 and why. */
int hsm_cert_verify_self(const unsigned char *der, size_t len, hsm_err *err);

/* ------------------------------------------------------------ PEM */
/* PEM text (NUL-terminated, malloc'd) of der under "-----BEGIN <label>-----" (e.g. "CERTIFICATE"). */
int hsm_pem_encode(const char *label, const unsigned char *der, size_t len, char **pem,
                   hsm_err *err);
/* Decodes the first PEM block in pem[0..len): its label into label_out (may be NULL) and its
 * bytes into *der. Blocks with headers (encrypted PEM) are refused. */
int hsm_pem_decode(const char *pem, size_t len, char *label_out, size_t lablen,
                   unsigned char **der, size_t *derlen, hsm_err *err);

/* ------------------------------------------------------------ CSRs, issued certificates, chains
 * For HSM identities (ProtectServer owner and identity certificates, seed 001): an owner CA
 * whose key never leaves its HSM signs the identity certificates of other HSMs from their
 * PKCS#10 requests, themselves signed on the requesting HSM. Every signature is made through
 * an hsm_raw_signer and checked with the expected public key before anything is returned. */

/* A subject or issuer name: CN (required, 1 to 64 characters of UTF-8), and optionally
 * serialNumber (2.5.4.5, 1 to 64 PrintableString characters: the HSM's serial number) and
 * O. Encoded as O, CN, serialNumber (printed RFC 2253 style in reverse). NULL or "" = absent. */
typedef struct hsm_x509_name {
    const char *cn;
    const char *serial;
    const char *org;
} hsm_x509_name;

/* What a DER blob is, told apart by its outer structure only (nothing is verified). */
typedef enum hsm_der_kind {
    HSM_DER_UNKNOWN = 0,
    HSM_DER_SPKI,   /* SubjectPublicKeyInfo */
    HSM_DER_CSR,    /* PKCS#10 CertificationRequest */
    HSM_DER_CERT,   /* X.509 Certificate */
} hsm_der_kind;
hsm_der_kind hsm_der_kind_of(const unsigned char *der, size_t len);

/* A PKCS#10 request (version 1, no attributes) for the key of spki with the given subject,
 * signed by sign(ctx, ...) with the private key of spki (ecdsa-with-SHA* or sha*WithRSA
 * by hash, NULL = "sha256") and checked against spki before returning. */
int hsm_csr_build(const hsm_x509_name *subject, const unsigned char *spki, size_t spkilen,
                  const char *hash, hsm_raw_signer sign, void *ctx, unsigned char **der,
                  size_t *derlen, hsm_err *err);

/* A parsed CSR. Strings are "" when the attribute is absent; spki is malloc'd. */
typedef struct hsm_csr_details {
    char subject[1024];        /* RFC 2253 */
    char cn[512], serial[512], org[512];
    unsigned char *spki;       /* DER SubjectPublicKeyInfo, byte for byte as in the CSR */
    size_t spkilen;
    int valid;                 /* 1: the self-signature verifies with the CSR's key */
    char why[200];             /* valid == 0: why not */
} hsm_csr_details;
/* Parses a DER CSR (exactly len bytes) and checks its signature. A CSR that parses but does
 * not verify is not an error: valid = 0 and why says so. Free with hsm_csr_details_free. */
int hsm_csr_info(const unsigned char *der, size_t len, hsm_csr_details *out, hsm_err *err);
void hsm_csr_details_free(hsm_csr_details *d);

/* Options of a certificate made by hsm_cert_issue or hsm_x509_self_signed_ex. Zero-initialize,
 * then set what you need. Profiles:
 *   ca = 1: basicConstraints critical CA:TRUE (pathLenConstraint = pathlen unless pathlen < 0),
 *           keyUsage critical keyCertSign, cRLSign;
 *   ca = 0: basicConstraints critical CA:FALSE, keyUsage critical digitalSignature plus
 *           keyAgreement for EC keys (an identity: signs and agrees keys);
 * always subjectKeyIdentifier (SHA-1 of the key bits) and authorityKeyIdentifier (the issuer's
 * subjectKeyIdentifier, or its own for a self-signed certificate). */
typedef struct hsm_cert_opts {
    const unsigned char *serial;   /* big-endian, positive, 1 to 20 bytes; NULL = random 128-bit */
    size_t serial_len;
    long long not_before;          /* unix time; 0 = now */
    long days;                     /* notAfter = notBefore + days (>= 1) */
    const char *hash;              /* "sha256" "sha384" "sha512"; NULL = "sha256" */
    int ca;
    int pathlen;                   /* ca only: pathLenConstraint (zero-initialized: 0, the
                                      CA certifies end entities only); < 0 = none */
} hsm_cert_opts;

/* Like hsm_x509_self_signed, with a full subject name and opts (e.g. an owner CA: ca = 1). */
int hsm_x509_self_signed_ex(const unsigned char *spki, size_t spkilen,
                            const hsm_x509_name *subject, const hsm_cert_opts *opts,
                            hsm_raw_signer sign, void *ctx, unsigned char **der, size_t *derlen,
                            hsm_err *err);

/* Who a certificate is for: a DER CSR (its signature must verify; its subject is used unless
 * name.cn is set, which replaces it; its extension requests are ignored), or, when csr is
 * NULL, a DER SubjectPublicKeyInfo and name (name.cn required). */
typedef struct hsm_cert_subject {
    const unsigned char *csr;
    size_t csrlen;
    const unsigned char *spki;
    size_t spkilen;
    hsm_x509_name name;
} hsm_cert_subject;

/* A certificate for subj issued by the CA certificate issuer (DER): issuer name from it,
 * signed by sign(ctx, ...) with the issuer's private key and checked against the issuer's
 * public key before returning. The issuer must be a CA (basicConstraints CA:TRUE and, when it
 * has keyUsage, keyCertSign); a CA certificate cannot come from an issuer with pathlen 0. */
int hsm_cert_issue(const hsm_cert_subject *subj, const unsigned char *issuer, size_t issuerlen,
                   const hsm_cert_opts *opts, hsm_raw_signer sign, void *ctx,
                   unsigned char **der, size_t *derlen, hsm_err *err);

/* Everything hsm_cert_inspect reads from a certificate. Strings are "" when absent. */
typedef struct hsm_cert_details {
    char subject[1024], issuer[1024];                   /* RFC 2253 */
    char cn[512], org[512], subject_serial[512];        /* the subject's attributes */
    char issuer_cn[512];
    char serial[132];                                   /* certificate serial, lowercase hex */
    char sig_alg[64];                                   /* "ecdsa-with-SHA512" ... */
    long long not_before, not_after;                    /* unix times */
    int is_ca;                                          /* basicConstraints CA:TRUE */
    int pathlen;                                        /* -1 when none */
    int has_key_usage;
    unsigned key_usage;                                 /* KU_ bits of x509v3.h */
    unsigned char ski[64], aki[64];                     /* key identifiers (aki: keyid only) */
    size_t skilen, akilen;                              /* 0 when absent */
    unsigned char *spki;                                /* malloc'd DER SubjectPublicKeyInfo */
    size_t spkilen;
    unsigned char *subject_der, *issuer_der;            /* malloc'd DER names */
    size_t subject_derlen, issuer_derlen;
} hsm_cert_details;
int hsm_cert_inspect(const unsigned char *der, size_t len, hsm_cert_details *out, hsm_err *err);
void hsm_cert_details_free(hsm_cert_details *d);

/* 0 when the DER certificate leaf chains to the DER certificate ca, taken as the trust anchor,
 * at unix time at (0 = now); else -1 and a message that starts with why: "signature: ...",
 * "expired: ...", "not yet valid: ...", "not a CA: ...", "issuer mismatch: ..." or
 * "invalid: ..." (anything else OpenSSL refuses). The anchor's validity period is checked
 * too, and so is its self-signature when it is self-signed. */
int hsm_cert_verify_chain(const unsigned char *leaf, size_t leaflen, const unsigned char *ca,
                          size_t calen, long long at, hsm_err *err);

#endif
