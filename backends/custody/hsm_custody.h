/* hsm_custody.h - custodian schemes of hsmsh: a secret split into shares (XOR M-of-M,
 * Shamir N-of-M over GF(2^8)), share files (format v1, docs/share-format.md) and their
 * recombination with checks that name the share at fault.
 *
 * Pure C (OpenSSL, no Lua). Secrets and shares only ever sit in memory from
 * hsm_secure_alloc (page-locked, kept out of core dumps, zeroized on free); messages never
 * quote share or secret bytes.
 *
 * Conventions: functions return 0 on success and -1 on failure, filling an hsm_err with a
 * sentence (err->rv stays CKR_OK).
 */
#ifndef HSM_CUSTODY_H
#define HSM_CUSTODY_H

#include <stddef.h>
#include <stdint.h>

#include "pkcs11/hsm_p11.h"   /* hsm_err */

#define HSM_SHARE_SET_ID_LEN 16
#define HSM_SHARE_SET_CHECK_LEN 8
#define HSM_SHARE_CHECK_LEN 16
#define HSM_SHARE_SECRET_MAX 8192   /* bytes; a share is as long as its secret */
#define HSM_SHARE_MAX_COUNT 255     /* x coordinates are the non-zero elements of GF(2^8) */

/* ------------------------------------------------------------ memory and randomness */

/* Page-locked, MADV_DONTDUMP memory for secrets (n may be 0). NULL when out of memory. */
void *hsm_secure_alloc(size_t n);
/* Zeroizes n bytes, unlocks and frees p (NULL is fine). n must be what was allocated. */
void hsm_secure_free(void *p, size_t n);

/* A source of random bytes: fills out[0..n) and returns 0, or returns -1. The Lua side
 * passes one that calls the HSM's C_GenerateRandom. */
typedef int (*hsm_rng)(void *ctx, unsigned char *out, size_t n);
/* OpenSSL's RAND_priv_bytes (ctx unused). Every function taking an hsm_rng uses this one
 * when given NULL. */
int hsm_rng_default(void *ctx, unsigned char *out, size_t n);

/* ------------------------------------------------------------ GF(2^8), AES polynomial */

/* Product modulo x^8+x^4+x^3+x+1, in constant time (no tables, no data-dependent branches). */
uint8_t hsm_gf256_mul(uint8_t a, uint8_t b);
/* Multiplicative inverse as a^254 (constant time); 0 maps to 0. */
uint8_t hsm_gf256_inv(uint8_t a);

/* ------------------------------------------------------------ raw schemes */

/* XOR M-of-M: shares[0..m-1] get len bytes each (m >= 2); the first m-1 are random, the last
 * is the secret XOR all of them. */
int hsm_xor_split(const unsigned char *secret, size_t len, unsigned m, unsigned char *const *shares,
                  hsm_rng rng, void *rng_ctx, hsm_err *err);
/* out = XOR of shares[0..m-1] (len bytes each). */
void hsm_xor_combine(const unsigned char *const *shares, unsigned m, size_t len, unsigned char *out);

/* Shamir N-of-M (2 <= n < m <= 255): shares[i] is the polynomial at x = i + 1, byte by byte;
 * the secret is the constant term, the other n-1 coefficients random. */
int hsm_shamir_split(const unsigned char *secret, size_t len, unsigned n, unsigned m,
                     unsigned char *const *shares, hsm_rng rng, void *rng_ctx, hsm_err *err);
/* Lagrange interpolation at 0 through exactly the k given points (xs[i], ys[i]), len bytes
 * each. Refuses k < n, an x of 0 and a repeated x; every share takes part. */
int hsm_shamir_combine(unsigned n, const uint8_t *xs, const unsigned char *const *ys, unsigned k,
                       size_t len, unsigned char *out, hsm_err *err);

/* ------------------------------------------------------------ shares with their set */

typedef enum hsm_scheme { HSM_SCHEME_XOR = 1, HSM_SCHEME_SHAMIR = 2 } hsm_scheme;

/* One share and the facts of its set (what a share file holds). */
typedef struct hsm_share {
    hsm_scheme scheme;
    unsigned char set_id[HSM_SHARE_SET_ID_LEN];        /* random, the same for a whole split */
    unsigned index;                                    /* 1..count (the Shamir x) */
    unsigned threshold;                                /* n; for XOR, count */
    unsigned count;                                    /* m */
    unsigned char set_check[HSM_SHARE_SET_CHECK_LEN];  /* see hsm_set_check */
    size_t len;                                        /* share length = secret length */
    unsigned char *bytes;                              /* len bytes, hsm_secure_alloc'd */
    int passphrase;                                    /* decoded from a protected file */
    unsigned char check[HSM_SHARE_CHECK_LEN];          /* the file's per-share check value */
} hsm_share;

/* "xor" / "shamir" and back (0 when unknown). */
const char *hsm_scheme_name(hsm_scheme s);
hsm_scheme hsm_scheme_from_name(const char *name);

/* Checks split parameters (scheme, n, m, secret length) with a message saying what is wrong. */
int hsm_split_check(hsm_scheme scheme, unsigned n, unsigned m, size_t len, hsm_err *err);

/* First 8 bytes of HMAC-SHA256(key = secret, "hsmsh share set check" || set_id). */
int hsm_set_check(const unsigned char *secret, size_t len,
                  const unsigned char set_id[HSM_SHARE_SET_ID_LEN],
                  unsigned char out[HSM_SHARE_SET_CHECK_LEN], hsm_err *err);

/* Splits secret into m shares (out[0..m-1], index 1..m) of one new set: random set id, set
 * check value. For XOR n must equal m. On failure nothing is left allocated. */
int hsm_split(hsm_scheme scheme, const unsigned char *secret, size_t len, unsigned n, unsigned m,
              hsm_rng rng, void *rng_ctx, hsm_share *out, hsm_err *err);
/* Zeroizes and frees s->bytes (the rest of s stays readable). */
void hsm_share_clear(hsm_share *s);

/* The secret of shares[0..k-1] (decoded or split), checked: same set, same parameters, index
 * in 1..count, no index twice, at least threshold shares, and the set check value. *secret
 * is hsm_secure_alloc'd (free with hsm_secure_free(*secret, *len)). Messages name shares by
 * index. */
int hsm_combine(const hsm_share *shares, size_t k, unsigned char **secret, size_t *len,
                hsm_err *err);

/* ------------------------------------------------------------ share files (v1) */

/* The share file of s; with a passphrase (pass non-NULL, passlen > 0) the share bytes are
 * AES-256-GCM encrypted under scrypt(passphrase, random salt). *out is malloc'd (free()
 * it; an unprotected file holds the share in clear: zeroize it first). */
int hsm_share_encode(const hsm_share *s, const unsigned char *pass, size_t passlen,
                     hsm_rng rng, void *rng_ctx, unsigned char **out, size_t *outlen,
                     hsm_err *err);
/* Parses and checks a share file (any bytes: never reads outside in[0..len)); pass may be
 * NULL. On success out->bytes is hsm_secure_alloc'd (hsm_share_clear it). On failure
 * nothing is allocated and *why (may be NULL) tells the caller what to do next. */
typedef enum hsm_share_why {
    HSM_SHARE_BAD = 1,          /* malformed, truncated or altered */
    HSM_SHARE_NEEDS_PASSPHRASE, /* protected and no passphrase given */
    HSM_SHARE_WRONG_PASSPHRASE, /* the passphrase (or the protected bytes) is wrong */
    HSM_SHARE_INTERNAL          /* out of memory, OpenSSL failure */
} hsm_share_why;
int hsm_share_decode(const unsigned char *in, size_t len, const unsigned char *pass,
                     size_t passlen, hsm_share *out, hsm_share_why *why, hsm_err *err);

#endif
