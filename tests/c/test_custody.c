/* test_custody.c - backends/custody: GF(2^8) arithmetic, XOR and Shamir splits, share files
 * (round trips, every bit flip, every truncation, passphrases) and the checked combine.
 *
 * Run with -v to print each refusal message. */
#include "check.h"
#include "custody/hsm_custody.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

static int verbose;

/* The message in e contains sub. */
#define CHECK_MSG(e, sub) do { check_count++; \
    if (!strstr((e).msg, (sub))) { check_failures++; \
        fprintf(stderr, "%s:%d: message \"%s\" lacks \"%s\"\n", __FILE__, __LINE__, \
                (e).msg, (sub)); } \
    else if (verbose) printf("  ok: %s\n", (e).msg); } while (0)

/* Many checks in a loop count as one, and report the first failure only. */
#define CHECK_ALL(ok, what) do { check_count++; if (!(ok)) { check_failures++; \
    fprintf(stderr, "%s:%d: not every case held: %s\n", __FILE__, __LINE__, what); } } while (0)

static const unsigned char PASS[] = "correct horse battery staple";
#define PASSLEN (sizeof PASS - 1)

/* ------------------------------------------------------------------ helpers */

/* A deterministic rng: the bytes of a counter, little-endian, then zeros. */
typedef struct counter_rng {
    uint64_t value;
} counter_rng;

static int counter_bytes(void *ctx, unsigned char *out, size_t n)
{
    counter_rng *c = ctx;
    for (size_t i = 0; i < n; i++)
        out[i] = i < 8 ? (unsigned char)(c->value >> (8 * i)) : 0;
    return 0;
}

static int failing_rng(void *ctx, unsigned char *out, size_t n)
{
    (void)ctx;
    (void)out;
    (void)n;
    return -1;
}

static void fill_secret(unsigned char *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (unsigned char)(seed * 131 + i * 29 + 7);
}

static void clear_set(hsm_share *s, unsigned m)
{
    for (unsigned i = 0; i < m; i++)
        hsm_share_clear(&s[i]);
}

/* Recomputes a file's per-share check value (to get past it and reach deeper checks). */
static void fix_check(unsigned char *p, size_t n)
{
    unsigned char md[32];
    unsigned int mdlen;
    EVP_Digest(p, n - HSM_SHARE_CHECK_LEN, md, &mdlen, EVP_sha256(), NULL);
    memcpy(p + n - HSM_SHARE_CHECK_LEN, md, HSM_SHARE_CHECK_LEN);
}

static int popcount(unsigned v)
{
    int c = 0;
    for (; v; v &= v - 1)
        c++;
    return c;
}

/* ------------------------------------------------------------------ GF(2^8) */

/* Schoolbook: carry-less product, then reduction by 0x11b, with plain branches. */
static uint8_t slow_mul(uint8_t a, uint8_t b)
{
    unsigned p = 0;
    for (int i = 0; i < 8; i++)
        if (b & (1u << i))
            p ^= (unsigned)a << i;
    for (int i = 14; i >= 8; i--)
        if (p & (1u << i))
            p ^= 0x11bu << (i - 8);
    return (uint8_t)p;
}

static void test_gf256(void)
{
    int ok = 1;
    for (unsigned a = 0; a < 256; a++)
        for (unsigned b = 0; b < 256; b++)
            ok &= hsm_gf256_mul((uint8_t)a, (uint8_t)b) == slow_mul((uint8_t)a, (uint8_t)b);
    CHECK_ALL(ok, "mul matches the schoolbook product for all 65536 pairs");
    CHECK(hsm_gf256_mul(0x57, 0x83) == 0xc1);   /* FIPS-197 section 4.2 */
    CHECK(hsm_gf256_mul(0x57, 0x13) == 0xfe);
    CHECK(hsm_gf256_mul(0x53, 0xca) == 0x01);   /* a known inverse pair */
    ok = 1;
    for (unsigned a = 1; a < 256; a++)
        ok &= hsm_gf256_mul((uint8_t)a, hsm_gf256_inv((uint8_t)a)) == 1;
    CHECK_ALL(ok, "a * inv(a) == 1 for all 255 non-zero a");
    CHECK(hsm_gf256_inv(0) == 0);
    CHECK(hsm_gf256_inv(0x53) == 0xca);
    CHECK(hsm_gf256_inv(1) == 1);
}

/* ------------------------------------------------------------------ Shamir */

/* Every subset of the m shares: size >= n recovers the secret, smaller is refused. */
static void shamir_subsets(unsigned n, unsigned m, size_t len)
{
    unsigned char secret[64];
    hsm_share set[8], pick[8];
    hsm_err err;
    fill_secret(secret, len, n * 10 + m);
    CHECK(hsm_split(HSM_SCHEME_SHAMIR, secret, len, n, m, NULL, NULL, set, &err) == 0);
    int ok_recover = 1, ok_refuse = 1;
    for (unsigned mask = 1; mask < (1u << m); mask++) {
        unsigned k = 0;
        for (unsigned i = 0; i < m; i++)
            if (mask & (1u << i))
                pick[k++] = set[m - 1 - i];   /* any order: here, descending */
        unsigned char *out = NULL;
        size_t outlen = 0;
        int r = hsm_combine(pick, k, &out, &outlen, &err);
        if (popcount(mask) >= (int)n)
            ok_recover &= r == 0 && outlen == len && memcmp(out, secret, len) == 0;
        else
            ok_refuse &= r != 0 && strstr(err.msg, "given, the set needs") != NULL;
        if (r == 0)
            hsm_secure_free(out, outlen);
    }
    char what[120];
    snprintf(what, sizeof what, "%u-of-%u, %zu-byte secret: every subset of %u or more recovers",
             n, m, len, n);
    CHECK_ALL(ok_recover, what);
    snprintf(what, sizeof what, "%u-of-%u, %zu-byte secret: every smaller subset is refused",
             n, m, len);
    CHECK_ALL(ok_refuse, what);
    clear_set(set, m);
}

/* For n-of-m with a 1-byte secret, enumerating every coefficient vector, every (n-1)-subset
 * of shares takes every value exactly once, for whatever secret: n-1 shares say nothing. */
static void shamir_no_information(unsigned n, unsigned m)
{
    static const unsigned char secrets[] = {0x00, 0x5a, 0xff};
    static unsigned char counts[32][1 << 16];   /* per subset of n-1 shares (m <= 5) */
    unsigned subsets[32], ns = 0;
    for (unsigned subset = 0; subset < (1u << m); subset++)
        if (popcount(subset) == (int)n - 1)
            subsets[ns++] = subset;
    uint64_t vectors = 1ull << (8 * (n - 1));
    int ok = 1;
    for (size_t si = 0; si < sizeof secrets; si++) {
        memset(counts, 0, sizeof counts);
        for (uint64_t v = 0; v < vectors; v++) {
            counter_rng rng = {v};
            unsigned char shares[8][1], *bufs[8];
            for (unsigned i = 0; i < m; i++)
                bufs[i] = shares[i];
            hsm_err err;
            ok &= hsm_shamir_split(&secrets[si], 1, n, m, bufs, counter_bytes, &rng, &err) == 0;
            for (unsigned j = 0; j < ns; j++) {
                unsigned key = 0;
                for (unsigned i = 0; i < m; i++)
                    if (subsets[j] & (1u << i))
                        key = key << 8 | shares[i][0];
                counts[j][key]++;
            }
        }
        for (unsigned j = 0; j < ns; j++)
            for (uint64_t t = 0; t < vectors; t++)
                ok &= counts[j][t] == 1;
    }
    char what[100];
    snprintf(what, sizeof what, "%u-of-%u: any %u shares are uniform whatever the secret", n, m,
             n - 1);
    CHECK_ALL(ok, what);
}

static void test_shamir_raw(void)
{
    unsigned char secret[4] = {1, 2, 3, 4}, sh[5][4], *bufs[5], out[4];
    const unsigned char *ys[5];
    hsm_err err;
    for (int i = 0; i < 5; i++)
        bufs[i] = sh[i], ys[i] = sh[i];
    CHECK(hsm_shamir_split(secret, 4, 3, 5, bufs, NULL, NULL, &err) == 0);
    uint8_t xs[3] = {5, 1, 3};
    const unsigned char *y3[3] = {sh[4], sh[0], sh[2]};
    CHECK(hsm_shamir_combine(3, xs, y3, 3, 4, out, &err) == 0 && memcmp(out, secret, 4) == 0);
    uint8_t dup[3] = {1, 1, 3};
    CHECK(hsm_shamir_combine(3, dup, ys, 3, 4, out, &err) != 0);
    CHECK_MSG(err, "share index 1 given twice");
    uint8_t zero[3] = {0, 1, 2};
    CHECK(hsm_shamir_combine(3, zero, ys, 3, 4, out, &err) != 0);
    CHECK_MSG(err, "share index 0 is not a share");
    CHECK(hsm_shamir_combine(3, xs, y3, 2, 4, out, &err) != 0);
    CHECK_MSG(err, "2 shares given, the set needs 3");
    CHECK(hsm_shamir_split(secret, 4, 3, 3, bufs, NULL, NULL, &err) != 0);
    CHECK(hsm_shamir_split(secret, 4, 1, 3, bufs, NULL, NULL, &err) != 0);
    CHECK(hsm_shamir_split(secret, 4, 2, 3, bufs, failing_rng, NULL, &err) != 0);
    CHECK_MSG(err, "random generator failed");
}

static void test_shamir(void)
{
    static const unsigned nm[][2] = {{2, 3}, {3, 5}, {2, 5}, {5, 7}};
    static const size_t lens[] = {1, 32, 64};
    for (size_t i = 0; i < sizeof nm / sizeof nm[0]; i++)
        for (size_t j = 0; j < sizeof lens / sizeof lens[0]; j++)
            shamir_subsets(nm[i][0], nm[i][1], lens[j]);
    shamir_no_information(2, 3);
    shamir_no_information(3, 5);
    test_shamir_raw();
}

/* ------------------------------------------------------------------ XOR */

static void test_xor(void)
{
    unsigned char secret[32];
    hsm_share set[5], pick[5];
    hsm_err err;
    fill_secret(secret, sizeof secret, 3);
    for (unsigned m = 2; m <= 5; m++) {
        CHECK(hsm_split(HSM_SCHEME_XOR, secret, sizeof secret, m, m, NULL, NULL, set, &err) == 0);
        unsigned char *out = NULL;
        size_t len = 0;
        CHECK(hsm_combine(set, m, &out, &len, &err) == 0 && len == sizeof secret
              && memcmp(out, secret, len) == 0);
        hsm_secure_free(out, len);
        for (unsigned drop = 0; drop < m; drop++) {   /* every m-1 subset is refused */
            unsigned k = 0;
            for (unsigned i = 0; i < m; i++)
                if (i != drop)
                    pick[k++] = set[i];
            CHECK(hsm_combine(pick, k, &out, &len, &err) != 0);
        }
        CHECK_MSG(err, "given, the set needs");
        clear_set(set, m);
    }
    /* The first m-1 shares are the rng's bytes alone; the last completes the XOR. */
    counter_rng rng = {0x0102030405060708ull};
    unsigned char a[32], b[32], *bufs[2] = {a, b};
    CHECK(hsm_xor_split(secret, 32, 2, bufs, counter_bytes, &rng, &err) == 0);
    CHECK(a[0] == 0x08 && a[7] == 0x01 && a[8] == 0 && (b[0] ^ a[0]) == secret[0]
          && (b[31] ^ a[31]) == secret[31]);
    CHECK(hsm_split(HSM_SCHEME_XOR, secret, 32, 2, 3, NULL, NULL, set, &err) != 0);
    CHECK_MSG(err, "threshold 2 must equal count 3");
    CHECK(hsm_split(HSM_SCHEME_XOR, secret, 32, 1, 1, NULL, NULL, set, &err) != 0);
    CHECK(hsm_split(HSM_SCHEME_XOR, secret, 32, 3, 3, failing_rng, NULL, set, &err) != 0);
    CHECK_MSG(err, "random generator failed");
    CHECK(hsm_split(HSM_SCHEME_SHAMIR, secret, 32, 3, 3, NULL, NULL, set, &err) != 0);
    CHECK_MSG(err, "Shamir needs 2 <= threshold < count");
    CHECK(hsm_split(HSM_SCHEME_SHAMIR, secret, 32, 2, 256, NULL, NULL, set, &err) != 0);
    CHECK(hsm_split(HSM_SCHEME_SHAMIR, secret, 0, 2, 3, NULL, NULL, set, &err) != 0);
    CHECK_MSG(err, "the secret is empty");
}

/* ------------------------------------------------------------------ combine checks */

static void test_combine_checks(void)
{
    unsigned char secret[32], *out = NULL;
    size_t len = 0;
    hsm_share a[3], b[3], pick[3];
    hsm_err err;
    fill_secret(secret, sizeof secret, 9);
    CHECK(hsm_split(HSM_SCHEME_SHAMIR, secret, 32, 2, 3, NULL, NULL, a, &err) == 0);
    CHECK(hsm_split(HSM_SCHEME_SHAMIR, secret, 32, 2, 3, NULL, NULL, b, &err) == 0);
    CHECK(memcmp(a[0].set_id, b[0].set_id, HSM_SHARE_SET_ID_LEN) != 0);
    CHECK(memcmp(a[0].set_check, b[0].set_check, HSM_SHARE_SET_CHECK_LEN) != 0);

    pick[0] = a[0], pick[1] = b[1];
    CHECK(hsm_combine(pick, 2, &out, &len, &err) != 0);
    CHECK_MSG(err, "share 2 is from another share set");

    pick[0] = a[0], pick[1] = a[1], pick[2] = a[0];
    CHECK(hsm_combine(pick, 3, &out, &len, &err) != 0);
    CHECK_MSG(err, "share index 1 given twice");

    pick[0] = a[1], pick[1] = a[0];
    pick[1].index = 0;
    CHECK(hsm_combine(pick, 2, &out, &len, &err) != 0);
    CHECK_MSG(err, "share index 0 is not a share");
    pick[1].index = 4;
    CHECK(hsm_combine(pick, 2, &out, &len, &err) != 0);
    CHECK_MSG(err, "share index 4 is not in the set");

    CHECK(hsm_combine(a, 1, &out, &len, &err) != 0);
    CHECK_MSG(err, "1 share given, the set needs 2");
    CHECK(hsm_combine(a, 0, &out, &len, &err) != 0);
    CHECK_MSG(err, "no shares given");

    pick[0] = a[0], pick[1] = a[2];
    pick[1].threshold = 3;   /* same set id, other parameters: altered */
    CHECK(hsm_combine(pick, 2, &out, &len, &err) != 0);
    CHECK_MSG(err, "share 3 disagrees with share 1");

    /* A share whose bytes were altered (its file check value fixed up) is caught by the set
     * check value, with 2 shares as with 3. */
    a[2].bytes[5] ^= 0x40;
    pick[0] = a[0], pick[1] = a[2];
    CHECK(hsm_combine(pick, 2, &out, &len, &err) != 0);
    CHECK_MSG(err, "the shares do not combine to the set's secret: one is altered or wrong");
    CHECK(hsm_combine(a, 3, &out, &len, &err) != 0);
    CHECK_MSG(err, "do not combine");
    a[2].bytes[5] ^= 0x40;
    CHECK(hsm_combine(a, 3, &out, &len, &err) == 0 && memcmp(out, secret, 32) == 0);
    hsm_secure_free(out, len);
    clear_set(a, 3);
    clear_set(b, 3);
}

/* ------------------------------------------------------------------ share files */

static int same_share(const hsm_share *x, const hsm_share *y)
{
    return x->scheme == y->scheme && x->index == y->index && x->threshold == y->threshold
        && x->count == y->count && x->len == y->len
        && memcmp(x->set_id, y->set_id, HSM_SHARE_SET_ID_LEN) == 0
        && memcmp(x->set_check, y->set_check, HSM_SHARE_SET_CHECK_LEN) == 0
        && memcmp(x->bytes, y->bytes, x->len) == 0;
}

static void round_trip(hsm_scheme scheme, unsigned n, unsigned m)
{
    unsigned char secret[32], *file = NULL, *out = NULL;
    size_t flen = 0, len = 0;
    hsm_share set[5], dec[5];
    hsm_share_why why;
    hsm_err err;
    fill_secret(secret, sizeof secret, 5);
    CHECK(hsm_split(scheme, secret, 32, n, m, NULL, NULL, set, &err) == 0);
    for (unsigned i = 0; i < m; i++) {
        int protect = i == 0;   /* one protected share per set: scrypt is slow on purpose */
        CHECK(hsm_share_encode(&set[i], protect ? PASS : NULL, protect ? PASSLEN : 0, NULL, NULL,
                               &file, &flen, &err) == 0);
        CHECK(flen == (protect ? 68u + 32 + 16 + 16 : 40u + 32 + 16));
        CHECK(hsm_share_decode(file, flen, protect ? PASS : NULL, protect ? PASSLEN : 0, &dec[i],
                               &why, &err) == 0);
        CHECK(same_share(&set[i], &dec[i]) && dec[i].passphrase == protect);
        free(file);
    }
    CHECK(hsm_combine(dec, m, &out, &len, &err) == 0 && len == 32 && memcmp(out, secret, 32) == 0);
    hsm_secure_free(out, len);
    clear_set(set, m);
    clear_set(dec, m);
}

/* Every single-bit flip and every truncation of the file is refused; with the check value
 * fixed up, flips inside the share bytes still decode (the set check catches them later). */
static void flips_and_truncations(const unsigned char *file, size_t flen, int protect)
{
    unsigned char *copy = malloc(flen + 1);
    hsm_share s;
    hsm_share_why why;
    hsm_err err;
    const unsigned char *pass = protect ? PASS : NULL;
    size_t passlen = protect ? PASSLEN : 0;
    int ok = 1, altered = 0;
    for (size_t bit = 0; bit < flen * 8; bit++) {
        memcpy(copy, file, flen);
        copy[bit / 8] ^= (unsigned char)(1u << (bit % 8));
        int r = hsm_share_decode(copy, flen, pass, passlen, &s, &why, &err);
        ok &= r != 0 && why == HSM_SHARE_BAD;
        altered += r != 0 && strstr(err.msg, "altered (check value mismatch)") != NULL;
        if (r == 0)
            hsm_share_clear(&s);
    }
    CHECK_ALL(ok, protect ? "every bit flip of a protected file is refused"
                          : "every bit flip of a file is refused");
    /* Only magic, version, flags and length bytes get other messages (all bits of the rest). */
    CHECK(altered == (int)(flen - 8 - 1 - 1 - 2) * 8);
    ok = 1;
    for (size_t cut = 0; cut < flen; cut++) {
        memcpy(copy, file, cut);
        int r = hsm_share_decode(copy, cut, pass, passlen, &s, &why, &err);
        ok &= r != 0 && why == HSM_SHARE_BAD;
        if (r == 0)
            hsm_share_clear(&s);
    }
    CHECK_ALL(ok, "every truncation is refused");
    memcpy(copy, file, flen);
    copy[flen] = 0;
    CHECK(hsm_share_decode(copy, flen + 1, pass, passlen, &s, &why, &err) != 0);
    CHECK_MSG(err, "share file: data after the end of the share");
    CHECK(hsm_share_decode(copy, flen - 1, pass, passlen, &s, &why, &err) != 0);
    CHECK_MSG(err, "share file: truncated");
    OPENSSL_cleanse(copy, flen + 1);
    free(copy);
}

/* Bytes of a protected file altered and the check value recomputed: the GCM tag (header as
 * AAD, ciphertext, tag) refuses each one. */
static void protected_gcm(const unsigned char *file, size_t flen)
{
    static const size_t at[] = {17, 33, 40, 60, 68, 68 + 31, 68 + 32, 68 + 47};
    unsigned char *copy = malloc(flen);
    hsm_share s;
    hsm_share_why why;
    hsm_err err;
    int ok = 1;
    for (size_t i = 0; i < sizeof at / sizeof at[0]; i++) {
        memcpy(copy, file, flen);
        copy[at[i]] ^= 0x01;
        fix_check(copy, flen);
        int r = hsm_share_decode(copy, flen, PASS, PASSLEN, &s, &why, &err);
        ok &= r != 0 && why == HSM_SHARE_WRONG_PASSPHRASE;
        if (r == 0)
            hsm_share_clear(&s);
    }
    CHECK_ALL(ok, "GCM refuses altered set id, set check, salt, nonce, ciphertext and tag");
    CHECK_MSG(err, "wrong passphrase (or altered share)");
    free(copy);
}

/* Header fields made invalid with a valid check value: refused by name. */
static void bad_fields(const unsigned char *file, size_t flen)
{
    static const struct { size_t at; unsigned char v; const char *msg; } cases[] = {
        {9, 3, "share file: unknown scheme 3"},
        {9, 1, "XOR needs every share: threshold 2 must equal count 3"},
        {11, 0, "share file: index 0 is not in 1..3"},
        {11, 4, "share file: index 4 is not in 1..3"},
        {12, 3, "Shamir needs 2 <= threshold < count"},
        {12, 1, "Shamir needs 2 <= threshold < count"},
        {13, 2, "Shamir needs 3..255 shares"},
        {8, 2, "share file: unsupported format version 2"},
        {10, 2, "share file: unknown flags 0x02"},
        {0, 'h', "share file: bad magic"},
    };
    unsigned char *copy = malloc(flen);
    hsm_share s;
    hsm_share_why why;
    hsm_err err;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        memcpy(copy, file, flen);
        copy[cases[i].at] = cases[i].v;
        fix_check(copy, flen);
        CHECK(hsm_share_decode(copy, flen, NULL, 0, &s, &why, &err) != 0);
        CHECK_MSG(err, cases[i].msg);
    }
    memcpy(copy, file, flen);
    copy[15] = 0;   /* length 0 */
    CHECK(hsm_share_decode(copy, flen, NULL, 0, &s, &why, &err) != 0);
    CHECK_MSG(err, "bad share length 0");
    CHECK(hsm_share_decode(copy, 0, NULL, 0, &s, &why, &err) != 0);
    CHECK_MSG(err, "share file: empty");
    CHECK(hsm_share_decode(file, 20, NULL, 0, &s, &why, &err) != 0);
    CHECK_MSG(err, "share file: truncated (20 bytes, expected at least 57)");
    CHECK(hsm_share_decode(file, flen - 3, NULL, 0, &s, &why, &err) != 0);
    CHECK_MSG(err, "share file: truncated (85 bytes, expected 88)");
    memcpy(copy, file, flen);
    copy[50] ^= 0x10;
    CHECK(hsm_share_decode(copy, flen, NULL, 0, &s, &why, &err) != 0);
    CHECK_MSG(err, "share file: altered (check value mismatch)");
    free(copy);
}

static void test_files(void)
{
    round_trip(HSM_SCHEME_SHAMIR, 2, 3);
    round_trip(HSM_SCHEME_XOR, 3, 3);

    unsigned char secret[32], *plain = NULL, *prot = NULL;
    size_t plen = 0, qlen = 0;
    hsm_share set[3], s;
    hsm_share_why why;
    hsm_err err;
    fill_secret(secret, sizeof secret, 7);
    CHECK(hsm_split(HSM_SCHEME_SHAMIR, secret, 32, 2, 3, NULL, NULL, set, &err) == 0);
    CHECK(hsm_share_encode(&set[1], NULL, 0, NULL, NULL, &plain, &plen, &err) == 0);
    CHECK(hsm_share_encode(&set[2], PASS, PASSLEN, NULL, NULL, &prot, &qlen, &err) == 0);
    CHECK(memcmp(plain, "HSMSHARE\x01\x02\x00\x02\x02\x03\x00\x20", 16) == 0);
    CHECK(memcmp(plain + 40, set[1].bytes, 32) == 0);   /* unprotected: the share in clear */
    CHECK(memmem(prot, qlen, set[2].bytes, 8) == NULL);  /* protected: not */

    flips_and_truncations(plain, plen, 0);
    flips_and_truncations(prot, qlen, 1);
    protected_gcm(prot, qlen);
    bad_fields(plain, plen);

    CHECK(hsm_share_decode(prot, qlen, NULL, 0, &s, &why, &err) != 0);
    CHECK(why == HSM_SHARE_NEEDS_PASSPHRASE);
    CHECK_MSG(err, "share 3 is passphrase-protected: give its passphrase");
    CHECK(hsm_share_decode(prot, qlen, (const unsigned char *)"wrong", 5, &s, &why, &err) != 0);
    CHECK(why == HSM_SHARE_WRONG_PASSPHRASE);
    CHECK_MSG(err, "share 3: wrong passphrase (or altered share)");
    /* A passphrase given for an unprotected share is not needed, and not an error. */
    CHECK(hsm_share_decode(plain, plen, PASS, PASSLEN, &s, &why, &err) == 0 && !s.passphrase);
    hsm_share_clear(&s);

    /* Encode refuses what decode would refuse. */
    hsm_share bad = set[0];
    bad.index = 0;
    CHECK(hsm_share_encode(&bad, NULL, 0, NULL, NULL, &plain, &plen, &err) != 0);
    CHECK_MSG(err, "share index 0 is not in 1..3");
    bad = set[0];
    bad.threshold = 3;
    CHECK(hsm_share_encode(&bad, NULL, 0, NULL, NULL, &plain, &plen, &err) != 0);
    CHECK(hsm_share_encode(&set[0], PASS, PASSLEN, failing_rng, NULL, &plain, &plen, &err) != 0);
    CHECK_MSG(err, "random generator failed");

    OPENSSL_cleanse(plain, plen);
    free(plain);
    free(prot);
    clear_set(set, 3);
}

static void test_secure_alloc(void)
{
    size_t sizes[] = {0, 1, 4095, 4096, 4097, 100000};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        unsigned char *p = hsm_secure_alloc(sizes[i]);
        CHECK(p != NULL && ((uintptr_t)p & 4095) == 0);
        if (p && sizes[i])
            memset(p, 0xa5, sizes[i]);
        hsm_secure_free(p, sizes[i]);
    }
    hsm_secure_free(NULL, 10);
    CHECK(strcmp(hsm_scheme_name(hsm_scheme_from_name("shamir")), "shamir") == 0);
    CHECK(hsm_scheme_from_name("sss") == 0 && hsm_scheme_name(7) == NULL);
}

int main(int argc, char **argv)
{
    verbose = argc > 1 && strcmp(argv[1], "-v") == 0;
    test_gf256();
    test_shamir();
    test_xor();
    test_combine_checks();
    test_files();
    test_secure_alloc();
    return CHECK_DONE();
}
