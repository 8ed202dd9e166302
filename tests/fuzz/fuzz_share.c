/* fuzz_share.c - libFuzzer target on hsm_share_decode (backends/custody).
 *
 * The first input byte steers, the rest is the share file:
 *   bit 0: recompute the file's per-share check value first, so mutations get past it and
 *          reach the field checks and the passphrase path (otherwise nearly every mutation
 *          stops at the check value, which is the point of it but not of fuzzing);
 *   bit 1: decode with a fixed passphrase as well as without one.
 * A decoded share must satisfy the format's invariants and survive a re-encode and decode
 * unchanged; anything else aborts. Built with HSM_SHARE_SCRYPT_LOG2N lowered (see
 * CMakeLists.txt) so that runs reaching scrypt stay fast. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "custody/hsm_custody.h"

static const unsigned char PASS[] = "fuzz passphrase";
#define PASSLEN (sizeof PASS - 1)

static void fix_check(unsigned char *p, size_t n)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (n < HSM_SHARE_CHECK_LEN || EVP_Digest(p, n - HSM_SHARE_CHECK_LEN, md, &mdlen,
                                              EVP_sha256(), NULL) != 1)
        return;
    memcpy(p + n - HSM_SHARE_CHECK_LEN, md, HSM_SHARE_CHECK_LEN);
}

static int sane(const hsm_share *s)
{
    int shamir_ok = s->scheme == HSM_SCHEME_SHAMIR && s->threshold >= 2
                    && s->threshold < s->count && s->count >= 3;
    int xor_ok = s->scheme == HSM_SCHEME_XOR && s->threshold == s->count && s->count >= 2;
    return (shamir_ok || xor_ok) && s->count <= HSM_SHARE_MAX_COUNT && s->index >= 1
           && s->index <= s->count && s->len >= 1 && s->len <= HSM_SHARE_SECRET_MAX
           && s->bytes != NULL;
}

/* Encoding a decoded share and decoding that again gives the same share. */
static void round_trip(const hsm_share *s)
{
    unsigned char *file = NULL;
    size_t len = 0;
    hsm_share again;
    hsm_err err;
    if (hsm_share_encode(s, NULL, 0, NULL, NULL, &file, &len, &err) != 0)
        abort();
    if (hsm_share_decode(file, len, NULL, 0, &again, NULL, &err) != 0)
        abort();
    if (again.len != s->len || again.index != s->index || again.scheme != s->scheme
        || again.threshold != s->threshold || again.count != s->count
        || memcmp(again.bytes, s->bytes, s->len) != 0
        || memcmp(again.set_id, s->set_id, sizeof s->set_id) != 0
        || memcmp(again.set_check, s->set_check, sizeof s->set_check) != 0)
        abort();
    hsm_share_clear(&again);
    free(file);
}

static void try_decode(const unsigned char *in, size_t len, const unsigned char *pass,
                       size_t passlen)
{
    hsm_share s;
    hsm_share_why why = 0;
    hsm_err err;
    err.msg[0] = '\0';
    if (hsm_share_decode(in, len, pass, passlen, &s, &why, &err) != 0) {
        if (why == 0 || err.msg[0] == '\0')   /* every refusal says why */
            abort();
        return;
    }
    if (!sane(&s) || why != 0)
        abort();
    round_trip(&s);
    hsm_share_clear(&s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t mode = data[0];
    size_t len = size - 1;
    /* An exact-size copy: reading one byte past the file is an ASan report. */
    unsigned char *copy = malloc(len ? len : 1);
    if (!copy)
        return 0;
    memcpy(copy, data + 1, len);
    if (mode & 1)
        fix_check(copy, len);
    try_decode(copy, len, NULL, 0);
    if (mode & 2)
        try_decode(copy, len, PASS, PASSLEN);
    free(copy);
    return 0;
}
