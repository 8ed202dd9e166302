/* custody.c - custodian schemes: XOR and Shamir splitting, share files v1, checked
 * recombination. See hsm_custody.h and docs/share-format.md.
 *
 * Secret-dependent data (secrets, shares, polynomial coefficients, derived keys) lives only
 * in hsm_secure_alloc memory or in small stack variables that are cleansed before return,
 * and is only ever processed by code without secret-dependent branches or table lookups.
 * Indices, thresholds and counts are public and may steer branches. */
#include "hsm_custody.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/kdf.h>
#include <openssl/rand.h>

/* scrypt cost of format v1 (fixed by the format: a file cannot ask for more memory).
 * Overridable at build time only for the fuzz targets, which cannot afford 32 MiB per run. */
#ifndef HSM_SHARE_SCRYPT_LOG2N
#define HSM_SHARE_SCRYPT_LOG2N 15
#endif
#define SCRYPT_R 8
#define SCRYPT_P 1
#define SCRYPT_MAXMEM (64u * 1024 * 1024)   /* 128*r*N = 32 MiB, plus OpenSSL's overhead */

static const unsigned char MAGIC[8] = {'H', 'S', 'M', 'S', 'H', 'A', 'R', 'E'};
#define FORMAT_VERSION 1
#define FLAG_PASSPHRASE 0x01
#define HDR_FIXED 40                 /* magic .. set check */
#define SALT_LEN 16
#define NONCE_LEN 12
#define TAG_LEN 16
#define HDR_PROTECTED (HDR_FIXED + SALT_LEN + NONCE_LEN)
#define MIN_FILE (HDR_FIXED + 1 + HSM_SHARE_CHECK_LEN)

static const char SET_CHECK_LABEL[] = "hsmsh share set check";

/* ------------------------------------------------------------------ errors */

/* Our own failure; OpenSSL's queue is cleared so later callers never see stale errors. */
__attribute__((format(printf, 2, 3)))
static int fail(hsm_err *err, const char *fmt, ...)
{
    char buf[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    ERR_clear_error();
    return hsm_err_set(err, "%s", buf);
}

/* ------------------------------------------------------------------ memory and randomness */

static size_t page_size(void)
{
    long p = sysconf(_SC_PAGESIZE);
    return p > 0 ? (size_t)p : 4096;
}

/* Whole pages, so mlock and MADV_DONTDUMP cover exactly this allocation. */
static size_t secure_size(size_t n)
{
    size_t ps = page_size();
    return ((n ? n : 1) + ps - 1) / ps * ps;
}

void *hsm_secure_alloc(size_t n)
{
    if (n > SIZE_MAX / 2)
        return NULL;
    size_t sz = secure_size(n);
    void *p = NULL;
    if (posix_memalign(&p, page_size(), sz) != 0)
        return NULL;
    /* Both best effort: RLIMIT_MEMLOCK may refuse, and the memory is still zeroized on free. */
    (void)mlock(p, sz);
    (void)madvise(p, sz, MADV_DONTDUMP);
    memset(p, 0, sz);
    return p;
}

void hsm_secure_free(void *p, size_t n)
{
    if (!p)
        return;
    size_t sz = secure_size(n);
    OPENSSL_cleanse(p, sz);
    (void)madvise(p, sz, MADV_DODUMP);   /* the allocator may hand these pages out again */
    (void)munlock(p, sz);
    free(p);
}

int hsm_rng_default(void *ctx, unsigned char *out, size_t n)
{
    (void)ctx;
    while (n > 0) {   /* RAND_priv_bytes takes an int */
        int chunk = n > (1u << 20) ? 1 << 20 : (int)n;
        if (RAND_priv_bytes(out, chunk) != 1) {
            ERR_clear_error();
            return -1;
        }
        out += chunk;
        n -= (size_t)chunk;
    }
    return 0;
}

static int random_bytes(hsm_rng rng, void *ctx, unsigned char *out, size_t n, const char *what,
                        hsm_err *err)
{
    if (!rng)
        rng = hsm_rng_default;
    if (rng(ctx, out, n) != 0) {
        OPENSSL_cleanse(out, n);
        return fail(err, "random generator failed (%s)", what);
    }
    return 0;
}

/* ------------------------------------------------------------------ GF(2^8) */

uint8_t hsm_gf256_mul(uint8_t a, uint8_t b)
{
    /* Russian-peasant multiplication: all 8 rounds always run, and the conditional adds and
     * reductions are masks (0x00 or 0xff) rather than branches or table lookups. */
    uint8_t r = 0;
    for (int i = 0; i < 8; i++) {
        r ^= (uint8_t)(-(b & 1)) & a;
        uint8_t carry = (uint8_t)(-(a >> 7));
        a = (uint8_t)((a << 1) ^ (carry & 0x1b));
        b >>= 1;
    }
    return r;
}

uint8_t hsm_gf256_inv(uint8_t a)
{
    /* a^254 = a^2 * a^4 * ... * a^128 (254 = 0b11111110): a fixed sequence of operations. */
    uint8_t sq = hsm_gf256_mul(a, a);   /* a^2 */
    uint8_t r = sq;
    for (int i = 0; i < 6; i++) {
        sq = hsm_gf256_mul(sq, sq);     /* a^4 .. a^128 */
        r = hsm_gf256_mul(r, sq);
    }
    return r;
}

/* ------------------------------------------------------------------ XOR */

int hsm_xor_split(const unsigned char *secret, size_t len, unsigned m, unsigned char *const *shares,
                  hsm_rng rng, void *rng_ctx, hsm_err *err)
{
    if (m < 2 || len == 0)
        return fail(err, "XOR split needs at least 2 shares and a non-empty secret");
    for (unsigned i = 0; i + 1 < m; i++)
        if (random_bytes(rng, rng_ctx, shares[i], len, "XOR share", err) != 0)
            return -1;
    unsigned char *last = shares[m - 1];
    memcpy(last, secret, len);
    for (unsigned i = 0; i + 1 < m; i++)
        for (size_t j = 0; j < len; j++)
            last[j] ^= shares[i][j];
    return 0;
}

void hsm_xor_combine(const unsigned char *const *shares, unsigned m, size_t len, unsigned char *out)
{
    memset(out, 0, len);
    for (unsigned i = 0; i < m; i++)
        for (size_t j = 0; j < len; j++)
            out[j] ^= shares[i][j];
}

/* ------------------------------------------------------------------ Shamir */

/* The polynomial with constant term secret[j] and coefficients coef[(k-1)*len + j]
 * (k = 1..n-1) at x, by Horner's rule. */
static uint8_t poly_at(const unsigned char *secret, const unsigned char *coef, size_t len,
                       size_t j, unsigned n, uint8_t x)
{
    uint8_t y = coef[(size_t)(n - 2) * len + j];
    for (unsigned k = n - 2; k >= 1; k--)
        y = hsm_gf256_mul(y, x) ^ coef[(size_t)(k - 1) * len + j];
    return hsm_gf256_mul(y, x) ^ secret[j];
}

int hsm_shamir_split(const unsigned char *secret, size_t len, unsigned n, unsigned m,
                     unsigned char *const *shares, hsm_rng rng, void *rng_ctx, hsm_err *err)
{
    if (n < 2 || n >= m || m > HSM_SHARE_MAX_COUNT || len == 0 || len > HSM_SHARE_SECRET_MAX)
        return fail(err, "Shamir split needs 2 <= n < m <= %d and 1..%d secret bytes",
                    HSM_SHARE_MAX_COUNT, HSM_SHARE_SECRET_MAX);
    size_t clen = (size_t)(n - 1) * len;
    unsigned char *coef = hsm_secure_alloc(clen);
    if (!coef)
        return fail(err, "out of memory");
    int r = random_bytes(rng, rng_ctx, coef, clen, "Shamir coefficients", err);
    for (unsigned i = 0; r == 0 && i < m; i++)
        for (size_t j = 0; j < len; j++)
            shares[i][j] = poly_at(secret, coef, len, j, n, (uint8_t)(i + 1));
    hsm_secure_free(coef, clen);
    return r;
}

/* Lagrange basis at 0 for point i: prod over j != i of x_j / (x_j - x_i); the x's are
 * public share indices. */
static uint8_t lagrange_at_zero(const uint8_t *xs, unsigned k, unsigned i)
{
    uint8_t num = 1, den = 1;
    for (unsigned j = 0; j < k; j++) {
        if (j == i)
            continue;
        num = hsm_gf256_mul(num, xs[j]);
        den = hsm_gf256_mul(den, xs[j] ^ xs[i]);
    }
    return hsm_gf256_mul(num, hsm_gf256_inv(den));
}

static int check_points(unsigned n, const uint8_t *xs, unsigned k, hsm_err *err)
{
    unsigned char seen[256] = {0};
    if (n < 2)
        return fail(err, "threshold %u: a Shamir set needs at least 2", n);
    if (k < n)
        return fail(err, "%u share%s given, the set needs %u", k, k == 1 ? "" : "s", n);
    for (unsigned i = 0; i < k; i++) {
        if (xs[i] == 0)
            return fail(err, "share index 0 is not a share (indices start at 1)");
        if (seen[xs[i]]++)
            return fail(err, "share index %u given twice", xs[i]);
    }
    return 0;
}

int hsm_shamir_combine(unsigned n, const uint8_t *xs, const unsigned char *const *ys, unsigned k,
                       size_t len, unsigned char *out, hsm_err *err)
{
    uint8_t basis[HSM_SHARE_MAX_COUNT];
    if (k > HSM_SHARE_MAX_COUNT)
        return fail(err, "%u shares given, at most %d can differ", k, HSM_SHARE_MAX_COUNT);
    if (check_points(n, xs, k, err) != 0)
        return -1;
    for (unsigned i = 0; i < k; i++)
        basis[i] = lagrange_at_zero(xs, k, i);
    memset(out, 0, len);
    for (unsigned i = 0; i < k; i++)
        for (size_t j = 0; j < len; j++)
            out[j] ^= hsm_gf256_mul(basis[i], ys[i][j]);
    return 0;
}

/* ------------------------------------------------------------------ sets */

const char *hsm_scheme_name(hsm_scheme s)
{
    return s == HSM_SCHEME_XOR ? "xor" : s == HSM_SCHEME_SHAMIR ? "shamir" : NULL;
}

hsm_scheme hsm_scheme_from_name(const char *name)
{
    if (name && strcmp(name, "xor") == 0)
        return HSM_SCHEME_XOR;
    if (name && strcmp(name, "shamir") == 0)
        return HSM_SCHEME_SHAMIR;
    return 0;
}

/* Scheme, threshold and count of a set; what prefixes the message ("share file: "). */
static int set_params_check(const char *what, unsigned scheme, unsigned n, unsigned m,
                            hsm_err *err)
{
    if (scheme == HSM_SCHEME_XOR) {
        if (m < 2 || m > HSM_SHARE_MAX_COUNT)
            return fail(err, "%sXOR needs 2..%d shares, not %u", what, HSM_SHARE_MAX_COUNT, m);
        if (n != m)
            return fail(err, "%sXOR needs every share: threshold %u must equal count %u", what,
                        n, m);
        return 0;
    }
    if (scheme == HSM_SCHEME_SHAMIR) {
        if (m < 3 || m > HSM_SHARE_MAX_COUNT)
            return fail(err, "%sShamir needs 3..%d shares, not %u", what, HSM_SHARE_MAX_COUNT, m);
        if (n < 2 || n >= m)
            return fail(err, "%sShamir needs 2 <= threshold < count: threshold %u, count %u",
                        what, n, m);
        return 0;
    }
    return fail(err, "%sunknown scheme %u", what, scheme);
}

int hsm_split_check(hsm_scheme scheme, unsigned n, unsigned m, size_t len, hsm_err *err)
{
    if (len == 0)
        return fail(err, "the secret is empty");
    if (len > HSM_SHARE_SECRET_MAX)
        return fail(err, "the secret has %zu bytes, at most %d can be split", len,
                    HSM_SHARE_SECRET_MAX);
    return set_params_check("", scheme, n, m, err);
}

int hsm_set_check(const unsigned char *secret, size_t len,
                  const unsigned char set_id[HSM_SHARE_SET_ID_LEN],
                  unsigned char out[HSM_SHARE_SET_CHECK_LEN], hsm_err *err)
{
    unsigned char msg[sizeof SET_CHECK_LABEL - 1 + HSM_SHARE_SET_ID_LEN];
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;
    memcpy(msg, SET_CHECK_LABEL, sizeof SET_CHECK_LABEL - 1);
    memcpy(msg + sizeof SET_CHECK_LABEL - 1, set_id, HSM_SHARE_SET_ID_LEN);
    if (len == 0 || len > HSM_SHARE_SECRET_MAX
        || !HMAC(EVP_sha256(), secret, (int)len, msg, sizeof msg, mac, &maclen) || maclen < 8)
        return fail(err, "cannot compute the set check value");
    memcpy(out, mac, HSM_SHARE_SET_CHECK_LEN);
    OPENSSL_cleanse(mac, sizeof mac);
    return 0;
}

void hsm_share_clear(hsm_share *s)
{
    if (!s)
        return;
    hsm_secure_free(s->bytes, s->len);
    s->bytes = NULL;
}

static void clear_all(hsm_share *out, unsigned m)
{
    for (unsigned i = 0; i < m; i++)
        hsm_share_clear(&out[i]);
}

/* Allocates and labels the m shares of a new set (bytes zeroed). */
static int new_set(hsm_scheme scheme, size_t len, unsigned n, unsigned m, hsm_rng rng,
                   void *rng_ctx, hsm_share *out, hsm_err *err)
{
    unsigned char set_id[HSM_SHARE_SET_ID_LEN];
    if (random_bytes(rng, rng_ctx, set_id, sizeof set_id, "share set id", err) != 0)
        return -1;
    for (unsigned i = 0; i < m; i++) {
        memset(&out[i], 0, sizeof out[i]);
        out[i].scheme = scheme;
        memcpy(out[i].set_id, set_id, sizeof set_id);
        out[i].index = i + 1;
        out[i].threshold = n;
        out[i].count = m;
        out[i].len = len;
    }
    for (unsigned i = 0; i < m; i++)
        if (!(out[i].bytes = hsm_secure_alloc(len))) {
            clear_all(out, m);
            return fail(err, "out of memory");
        }
    return 0;
}

int hsm_split(hsm_scheme scheme, const unsigned char *secret, size_t len, unsigned n, unsigned m,
              hsm_rng rng, void *rng_ctx, hsm_share *out, hsm_err *err)
{
    if (hsm_split_check(scheme, n, m, len, err) != 0)
        return -1;
    if (new_set(scheme, len, n, m, rng, rng_ctx, out, err) != 0)
        return -1;
    unsigned char *bufs[HSM_SHARE_MAX_COUNT];
    for (unsigned i = 0; i < m; i++)
        bufs[i] = out[i].bytes;
    int r = scheme == HSM_SCHEME_XOR ? hsm_xor_split(secret, len, m, bufs, rng, rng_ctx, err)
                                     : hsm_shamir_split(secret, len, n, m, bufs, rng, rng_ctx, err);
    unsigned char check[HSM_SHARE_SET_CHECK_LEN] = {0};
    if (r == 0)
        r = hsm_set_check(secret, len, out[0].set_id, check, err);
    if (r != 0) {
        clear_all(out, m);
        return -1;
    }
    for (unsigned i = 0; i < m; i++)
        memcpy(out[i].set_check, check, sizeof check);
    return 0;
}

/* ------------------------------------------------------------------ combine */

/* Share s against the first share of the list (ref): same set, same parameters. */
static int same_set(const hsm_share *ref, const hsm_share *s, hsm_err *err)
{
    if (memcmp(ref->set_id, s->set_id, HSM_SHARE_SET_ID_LEN) != 0)
        return fail(err, "share %u is from another share set", s->index);
    if (ref->scheme != s->scheme || ref->threshold != s->threshold || ref->count != s->count
        || ref->len != s->len
        || memcmp(ref->set_check, s->set_check, HSM_SHARE_SET_CHECK_LEN) != 0)
        return fail(err, "share %u disagrees with share %u on the set's scheme, threshold, "
                    "count, length or check value: one is altered", s->index, ref->index);
    return 0;
}

/* Every share consistent, in range, once; enough of them. */
static int combine_checks(const hsm_share *shares, size_t k, hsm_err *err)
{
    unsigned char seen[256] = {0};
    if (k == 0)
        return fail(err, "no shares given");
    const hsm_share *ref = &shares[0];
    if (set_params_check("share set: ", ref->scheme, ref->threshold, ref->count, err) != 0)
        return -1;
    for (size_t i = 0; i < k; i++) {
        const hsm_share *s = &shares[i];
        if (same_set(ref, s, err) != 0)
            return -1;
        if (s->index == 0)
            return fail(err, "share index 0 is not a share (indices run 1..%u)", ref->count);
        if (s->index > ref->count)
            return fail(err, "share index %u is not in the set (indices run 1..%u)", s->index,
                        ref->count);
        if (seen[s->index]++)
            return fail(err, "share index %u given twice", s->index);
        if (!s->bytes || s->len == 0 || s->len > HSM_SHARE_SECRET_MAX)
            return fail(err, "share %u has no share bytes", s->index);
    }
    if (k < ref->threshold)
        return fail(err, "%zu share%s given, the set needs %u", k, k == 1 ? "" : "s",
                    ref->threshold);
    return 0;
}

/* The secret the checked shares interpolate to, into out (len bytes). */
static int recover(const hsm_share *shares, size_t k, unsigned char *out, hsm_err *err)
{
    const unsigned char *ys[HSM_SHARE_MAX_COUNT];
    uint8_t xs[HSM_SHARE_MAX_COUNT];
    for (size_t i = 0; i < k; i++) {
        ys[i] = shares[i].bytes;
        xs[i] = (uint8_t)shares[i].index;
    }
    if (shares[0].scheme == HSM_SCHEME_XOR) {
        hsm_xor_combine(ys, (unsigned)k, shares[0].len, out);
        return 0;
    }
    return hsm_shamir_combine(shares[0].threshold, xs, ys, (unsigned)k, shares[0].len, out, err);
}

int hsm_combine(const hsm_share *shares, size_t k, unsigned char **secret, size_t *len,
                hsm_err *err)
{
    if (combine_checks(shares, k, err) != 0)
        return -1;
    size_t n = shares[0].len;
    unsigned char *out = hsm_secure_alloc(n);
    if (!out)
        return fail(err, "out of memory");
    unsigned char check[HSM_SHARE_SET_CHECK_LEN] = {0};
    if (recover(shares, k, out, err) != 0 || hsm_set_check(out, n, shares[0].set_id, check, err) != 0) {
        hsm_secure_free(out, n);
        return -1;
    }
    if (CRYPTO_memcmp(check, shares[0].set_check, sizeof check) != 0) {
        hsm_secure_free(out, n);
        return fail(err, "the shares do not combine to the set's secret: one is altered or wrong");
    }
    *secret = out;
    *len = n;
    return 0;
}

/* ------------------------------------------------------------------ share files */

static void put16(unsigned char *p, unsigned v)
{
    p[0] = (unsigned char)(v >> 8);
    p[1] = (unsigned char)v;
}

static unsigned get16(const unsigned char *p)
{
    return (unsigned)p[0] << 8 | p[1];
}

/* First 16 bytes of SHA-256(p[0..n)). */
static int file_check(const unsigned char *p, size_t n, unsigned char out[HSM_SHARE_CHECK_LEN])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (EVP_Digest(p, n, md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen < HSM_SHARE_CHECK_LEN) {
        ERR_clear_error();
        return -1;
    }
    memcpy(out, md, HSM_SHARE_CHECK_LEN);
    return 0;
}

/* The 32-byte AES key of a protected share. */
static int derive_key(const unsigned char *pass, size_t passlen, const unsigned char *salt,
                      unsigned char key[32])
{
    if (EVP_PBE_scrypt((const char *)pass, passlen, salt, SALT_LEN,
                       (uint64_t)1 << HSM_SHARE_SCRYPT_LOG2N, SCRYPT_R, SCRYPT_P, SCRYPT_MAXMEM,
                       key, 32) != 1) {
        ERR_clear_error();
        return -1;
    }
    return 0;
}

/* AES-256-GCM over in[0..n) into out, AAD aad[0..aadlen); enc: tag written, else checked.
 * Returns 0, or -1 (a failed tag included). */
static int gcm(int enc, const unsigned char *key, const unsigned char *nonce,
               const unsigned char *aad, size_t aadlen, const unsigned char *in, size_t n,
               unsigned char *out, unsigned char *tag)
{
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    int outl = 0, ok = c != NULL
        && EVP_CipherInit_ex(c, EVP_aes_256_gcm(), NULL, NULL, NULL, enc) == 1
        && EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_IVLEN, NONCE_LEN, NULL) == 1
        && EVP_CipherInit_ex(c, NULL, NULL, key, nonce, enc) == 1
        && EVP_CipherUpdate(c, NULL, &outl, aad, (int)aadlen) == 1
        && EVP_CipherUpdate(c, out, &outl, in, (int)n) == 1
        && (enc || EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, TAG_LEN, tag) == 1)
        && EVP_CipherFinal_ex(c, out + outl, &outl) == 1
        && (!enc || EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, TAG_LEN, tag) == 1);
    EVP_CIPHER_CTX_free(c);
    ERR_clear_error();
    return ok ? 0 : -1;
}

/* Writes the header (magic .. set check, and salt and nonce when protected). */
static void put_header(unsigned char *p, const hsm_share *s, int protect)
{
    memcpy(p, MAGIC, sizeof MAGIC);
    p[8] = FORMAT_VERSION;
    p[9] = (unsigned char)s->scheme;
    p[10] = protect ? FLAG_PASSPHRASE : 0;
    p[11] = (unsigned char)s->index;
    p[12] = (unsigned char)s->threshold;
    p[13] = (unsigned char)s->count;
    put16(p + 14, (unsigned)s->len);
    memcpy(p + 16, s->set_id, HSM_SHARE_SET_ID_LEN);
    memcpy(p + 32, s->set_check, HSM_SHARE_SET_CHECK_LEN);
}

static int share_fields_check(const hsm_share *s, hsm_err *err)
{
    if (set_params_check("", s->scheme, s->threshold, s->count, err) != 0)
        return -1;
    if (s->index < 1 || s->index > s->count)
        return fail(err, "share index %u is not in 1..%u", s->index, s->count);
    if (!s->bytes || s->len == 0 || s->len > HSM_SHARE_SECRET_MAX)
        return fail(err, "share %u: share length must be 1..%d bytes", s->index,
                    HSM_SHARE_SECRET_MAX);
    return 0;
}

/* Encrypts the share bytes into p (header already written): salt, nonce, ciphertext, tag. */
static int protect_share(unsigned char *p, const hsm_share *s, const unsigned char *pass,
                         size_t passlen, hsm_rng rng, void *rng_ctx, hsm_err *err)
{
    unsigned char *salt = p + HDR_FIXED, *nonce = salt + SALT_LEN;
    if (random_bytes(rng, rng_ctx, salt, SALT_LEN + NONCE_LEN, "salt and nonce", err) != 0)
        return -1;
    unsigned char *key = hsm_secure_alloc(32);
    if (!key)
        return fail(err, "out of memory");
    int r = derive_key(pass, passlen, salt, key);
    if (r == 0)
        r = gcm(1, key, nonce, p, HDR_PROTECTED, s->bytes, s->len, p + HDR_PROTECTED,
                p + HDR_PROTECTED + s->len);
    hsm_secure_free(key, 32);
    return r == 0 ? 0 : fail(err, "share %u: cannot derive the key or encrypt", s->index);
}

int hsm_share_encode(const hsm_share *s, const unsigned char *pass, size_t passlen,
                     hsm_rng rng, void *rng_ctx, unsigned char **out, size_t *outlen,
                     hsm_err *err)
{
    if (share_fields_check(s, err) != 0)
        return -1;
    int protect = pass != NULL && passlen > 0;
    size_t hdr = protect ? HDR_PROTECTED : HDR_FIXED;
    size_t body = s->len + (protect ? TAG_LEN : 0);
    size_t total = hdr + body + HSM_SHARE_CHECK_LEN;
    unsigned char *p = malloc(total);
    if (!p)
        return fail(err, "out of memory");
    put_header(p, s, protect);
    int r = 0;
    if (protect)
        r = protect_share(p, s, pass, passlen, rng, rng_ctx, err);
    else
        memcpy(p + hdr, s->bytes, s->len);
    if (r == 0 && file_check(p, hdr + body, p + hdr + body) != 0)
        r = fail(err, "cannot compute the share check value");
    if (r != 0) {
        OPENSSL_cleanse(p, total);
        free(p);
        return -1;
    }
    *out = p;
    *outlen = total;
    return 0;
}

/* Magic, version, flags, length field and file size: everything that tells where the
 * parts of the file are. Sets *hdr and *slen. */
static int layout_check(const unsigned char *in, size_t len, size_t *hdr, size_t *slen,
                        hsm_err *err)
{
    if (len == 0)
        return fail(err, "share file: empty");
    if (memcmp(in, MAGIC, len < sizeof MAGIC ? len : sizeof MAGIC) != 0)
        return fail(err, "share file: bad magic");
    if (len > sizeof MAGIC && in[8] != FORMAT_VERSION)
        return fail(err, "share file: unsupported format version %u", in[8]);
    if (len < HDR_FIXED)
        return fail(err, "share file: truncated (%zu bytes, expected at least %d)", len,
                    MIN_FILE);
    if (in[10] & ~FLAG_PASSPHRASE)
        return fail(err, "share file: unknown flags 0x%02x", in[10]);
    *slen = get16(in + 14);
    if (*slen == 0 || *slen > HSM_SHARE_SECRET_MAX)
        return fail(err, "share file: bad share length %zu (1..%d)", *slen, HSM_SHARE_SECRET_MAX);
    int protect = in[10] & FLAG_PASSPHRASE;
    *hdr = protect ? HDR_PROTECTED : HDR_FIXED;
    size_t expected = *hdr + *slen + (protect ? TAG_LEN : 0) + HSM_SHARE_CHECK_LEN;
    if (len < expected)
        return fail(err, "share file: truncated (%zu bytes, expected %zu)", len, expected);
    if (len > expected)
        return fail(err, "share file: data after the end of the share (%zu bytes, expected %zu)",
                    len, expected);
    return 0;
}

/* Fills the public fields of s from a header whose layout and check value are good. */
static int read_fields(const unsigned char *in, size_t slen, hsm_share *s, hsm_err *err)
{
    memset(s, 0, sizeof *s);
    s->scheme = (hsm_scheme)in[9];
    s->index = in[11];
    s->threshold = in[12];
    s->count = in[13];
    s->len = slen;
    memcpy(s->set_id, in + 16, HSM_SHARE_SET_ID_LEN);
    memcpy(s->set_check, in + 32, HSM_SHARE_SET_CHECK_LEN);
    if (set_params_check("share file: ", in[9], s->threshold, s->count, err) != 0)
        return -1;
    if (s->index < 1 || s->index > s->count)
        return fail(err, "share file: index %u is not in 1..%u", s->index, s->count);
    return 0;
}

/* The share bytes of a protected file into s->bytes (allocated by the caller). */
static int unprotect(const unsigned char *in, const unsigned char *pass, size_t passlen,
                     hsm_share *s, hsm_share_why *why, hsm_err *err)
{
    unsigned char tag[TAG_LEN];
    const unsigned char *salt = in + HDR_FIXED, *nonce = salt + SALT_LEN;
    memcpy(tag, in + HDR_PROTECTED + s->len, TAG_LEN);
    unsigned char *key = hsm_secure_alloc(32);
    if (!key) {
        *why = HSM_SHARE_INTERNAL;
        return fail(err, "out of memory");
    }
    if (derive_key(pass, passlen, salt, key) != 0) {
        hsm_secure_free(key, 32);
        *why = HSM_SHARE_INTERNAL;
        return fail(err, "share %u: cannot derive the key from the passphrase", s->index);
    }
    int r = gcm(0, key, nonce, in, HDR_PROTECTED, in + HDR_PROTECTED, s->len, s->bytes, tag);
    hsm_secure_free(key, 32);
    if (r != 0) {
        OPENSSL_cleanse(s->bytes, s->len);
        *why = HSM_SHARE_WRONG_PASSPHRASE;
        return fail(err, "share %u: wrong passphrase (or altered share)", s->index);
    }
    return 0;
}

static int decode(const unsigned char *in, size_t len, const unsigned char *pass, size_t passlen,
                  hsm_share *out, hsm_share_why *why, hsm_err *err)
{
    size_t hdr = 0, slen = 0;
    unsigned char check[HSM_SHARE_CHECK_LEN];
    *why = HSM_SHARE_BAD;
    if (!in || layout_check(in, len, &hdr, &slen, err) != 0)
        return in ? -1 : fail(err, "share file: empty");
    size_t body_end = len - HSM_SHARE_CHECK_LEN;
    if (file_check(in, body_end, check) != 0) {
        *why = HSM_SHARE_INTERNAL;
        return fail(err, "cannot compute the share check value");
    }
    if (CRYPTO_memcmp(check, in + body_end, sizeof check) != 0)
        return fail(err, "share file: altered (check value mismatch)");
    hsm_share s;
    if (read_fields(in, slen, &s, err) != 0)
        return -1;
    memcpy(s.check, check, sizeof check);
    s.passphrase = hdr == HDR_PROTECTED;
    if (s.passphrase && (!pass || passlen == 0)) {
        *why = HSM_SHARE_NEEDS_PASSPHRASE;
        return fail(err, "share %u is passphrase-protected: give its passphrase", s.index);
    }
    if (!(s.bytes = hsm_secure_alloc(slen))) {
        *why = HSM_SHARE_INTERNAL;
        return fail(err, "out of memory");
    }
    if (!s.passphrase)
        memcpy(s.bytes, in + hdr, slen);
    else if (unprotect(in, pass, passlen, &s, why, err) != 0) {
        hsm_share_clear(&s);
        return -1;
    }
    *out = s;
    return 0;
}

int hsm_share_decode(const unsigned char *in, size_t len, const unsigned char *pass,
                     size_t passlen, hsm_share *out, hsm_share_why *why, hsm_err *err)
{
    hsm_share_why w;
    int r = decode(in, len, pass, passlen, out, &w, err);
    if (why)
        *why = r == 0 ? 0 : w;
    return r;
}
