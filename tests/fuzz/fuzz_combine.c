/* fuzz_combine.c - libFuzzer target on hsm_combine (backends/custody): shares whose fields
 * come straight from the input, as a caller (the Lua binding) could hand them over.
 *
 * Input: one byte k (shares, 1..16), then per share a 14-byte record
 *   scheme, index, threshold, count, length - 1 (mod 64), set-id byte, set check (8 bytes)
 * followed by the share bytes, length bytes per share. A one-byte set id (repeated 16 times)
 * lets the fuzzer make shares of one set easily. A success must return a secret of the
 * shares' length whose set check value matches. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "custody/hsm_custody.h"

#define MAX_SHARES 16
#define RECORD 14

static size_t read_shares(const uint8_t *data, size_t size, hsm_share *s, size_t k)
{
    size_t off = 1 + k * RECORD;
    for (size_t i = 0; i < k; i++) {
        const uint8_t *r = data + 1 + i * RECORD;
        memset(&s[i], 0, sizeof s[i]);
        s[i].scheme = (hsm_scheme)r[0];
        s[i].index = r[1];
        s[i].threshold = r[2];
        s[i].count = r[3];
        s[i].len = 1 + r[4] % 64;
        memset(s[i].set_id, r[5], sizeof s[i].set_id);
        memcpy(s[i].set_check, r + 6, HSM_SHARE_SET_CHECK_LEN);
        if (off + s[i].len > size)
            return i;
        /* Secure memory of exactly len bytes' worth, as the binding's hsm.Secrets would be. */
        s[i].bytes = hsm_secure_alloc(s[i].len);
        memcpy(s[i].bytes, data + off, s[i].len);
        off += s[i].len;
    }
    return k;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    hsm_share s[MAX_SHARES];
    if (size < 1)
        return 0;
    size_t k = 1 + data[0] % MAX_SHARES;
    if (size < 1 + k * RECORD)
        return 0;
    size_t got = read_shares(data, size, s, k);
    unsigned char *secret = NULL, check[HSM_SHARE_SET_CHECK_LEN];
    size_t len = 0;
    hsm_err err;
    if (got == k && hsm_combine(s, k, &secret, &len, &err) == 0) {
        if (len != s[0].len || hsm_set_check(secret, len, s[0].set_id, check, &err) != 0
            || memcmp(check, s[0].set_check, sizeof check) != 0)
            abort();
        hsm_secure_free(secret, len);
    }
    for (size_t i = 0; i < got; i++)
        hsm_share_clear(&s[i]);
    return 0;
}
