/* digest.c - digests by name. See hsm_ossl.h. */
#include "ossl_int.h"

/* ------------------------------------------------------------------ digests */

static const struct digest_name {
    const char *name, *alt;
    const EVP_MD *(*md)(void);
} DIGESTS[] = {
    {"sha1", "SHA-1", EVP_sha1},
    {"sha224", "SHA-224", EVP_sha224},
    {"sha256", "SHA-256", EVP_sha256},
    {"sha384", "SHA-384", EVP_sha384},
    {"sha512", "SHA-512", EVP_sha512},
};

const EVP_MD *hsm_ossl_md_by_name(const char *alg)
{
    if (!alg)
        return NULL;
    for (size_t i = 0; i < sizeof DIGESTS / sizeof DIGESTS[0]; i++)
        if (hsm_ossl_ascii_ieq(alg, DIGESTS[i].name) || hsm_ossl_ascii_ieq(alg, DIGESTS[i].alt))
            return DIGESTS[i].md();
    return NULL;
}

void hsm_sha256(const void *data, size_t len, unsigned char out[32])
{
    if (!EVP_Digest(data ? data : "", data ? len : 0, out, NULL, EVP_sha256(), NULL)) {
        memset(out, 0, 32);
        ERR_clear_error();
    }
}

int hsm_digest(const char *alg, const void *data, size_t len, unsigned char *out, size_t *outlen,
               hsm_err *err)
{
    const EVP_MD *md = hsm_ossl_md_by_name(alg);
    if (!md)
        return hsm_ossl_fail(err, "unknown digest \"%s\" (expected sha1, sha224, sha256, sha384 or sha512)",
                    alg ? alg : "(null)");
    if (!data && len)
        return hsm_ossl_fail(err, "digest input is NULL");
    size_t need = (size_t)EVP_MD_get_size(md);
    if (!out || !outlen || *outlen < need)
        return hsm_ossl_fail(err, "%s digest needs a %zu-byte output buffer", alg, need);
    unsigned int n = 0;
    if (!EVP_Digest(data ? data : "", len, out, &n, md, NULL))
        return hsm_ossl_ofail(err, "%s digest failed", alg);
    *outlen = n;
    return 0;
}
