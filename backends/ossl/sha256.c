/* sha256.c - incremental SHA-256 and SHA-512 over OpenSSL's EVP digest API (see hsm_ossl.h). */
#include <openssl/err.h>
#include <openssl/evp.h>

#include "hsm_ossl.h"

struct hsm_sha256_ctx {
    EVP_MD_CTX *md;
    int bits;
};

hsm_sha256_ctx *hsm_sha256_new(int bits)
{
    if (bits != 256 && bits != 512)
        return NULL;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (!md)
        return NULL;
    if (!EVP_DigestInit_ex(md, bits == 512 ? EVP_sha512() : EVP_sha256(), NULL)) {
        EVP_MD_CTX_free(md);
        ERR_clear_error();
        return NULL;
    }
    hsm_sha256_ctx *c = OPENSSL_malloc(sizeof *c);
    if (!c) {
        EVP_MD_CTX_free(md);
        return NULL;
    }
    c->md = md;
    c->bits = bits;
    return c;
}

int hsm_sha256_update(hsm_sha256_ctx *c, const void *data, size_t len)
{
    if (len == 0)
        return 0;
    if (!EVP_DigestUpdate(c->md, data, len)) {
        ERR_clear_error();
        return -1;
    }
    return 0;
}

int hsm_sha256_final(hsm_sha256_ctx *c, unsigned char out[64])
{
    unsigned int n = 0;
    if (!EVP_DigestFinal_ex(c->md, out, &n) || n != (unsigned)c->bits / 8) {
        ERR_clear_error();
        return -1;
    }
    return 0;
}

void hsm_sha256_free(hsm_sha256_ctx *c)
{
    if (!c)
        return;
    EVP_MD_CTX_free(c->md);
    OPENSSL_free(c);
}
