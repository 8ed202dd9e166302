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
/* Incremental SHA-256 (sha256.c), for data hashed as it streams past, such as a sealed
 * file's plaintext one chunk at a time. File plaintext and public data only. */
typedef struct hsm_sha256_ctx hsm_sha256_ctx;

/* A fresh context, or NULL when out of memory. */
hsm_sha256_ctx *hsm_sha256_new(void);
/* Adds len bytes; 0 on success, -1 on failure. */
int hsm_sha256_update(hsm_sha256_ctx *c, const void *data, size_t len);
/* The digest of everything added; the context is spent afterwards. 0 or -1. */
int hsm_sha256_final(hsm_sha256_ctx *c, unsigned char out[32]);
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

#endif
