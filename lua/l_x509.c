/* l_x509.c - certificates for keys that live in the HSM: the TBS is built by
 * backends/ossl and signed on the token with a raw mechanism (CKM_RSA_PKCS / CKM_ECDSA). */
#include <stdlib.h>
#include <string.h>

#include "lhsm.h"
#include "ossl/hsm_ossl.h"

struct signer {
    hsm_session *s;
    CK_OBJECT_HANDLE key;
    CK_MECHANISM_TYPE mech;
};

static int sign_on_token(void *ctx, const unsigned char *in, size_t inlen, unsigned char **sig,
                         size_t *siglen, hsm_err *err)
{
    struct signer *sg = ctx;
    CK_MECHANISM m = {sg->mech, NULL, 0};
    return hsm_crypt(sg->s, HSM_OP_SIGN, &m, sg->key, in, inlen, NULL, 0, sig, siglen, err);
}

/* core.self_signed_cert(private_key, spki_der, cn, days, [hash="sha256"]) -> DER | nil, err */
static int l_self_signed_cert(lua_State *L)
{
    lhsm_object *key = lhsm_checkobject(L, 1);
    size_t spkilen, derlen = 0;
    const char *spki = luaL_checklstring(L, 2, &spkilen);
    const char *cn = luaL_checkstring(L, 3);
    long days = (long)luaL_checkinteger(L, 4);
    const char *hash = luaL_optstring(L, 5, "sha256");
    char alg[32];
    hsm_err err;
    if (hsm_spki_info((const unsigned char *)spki, spkilen, alg, sizeof alg, NULL, &err) != 0)
        return lhsm_fail(L, &err);
    struct signer sg = {&key->session->s, key->h,
                        strncmp(alg, "RSA", 3) == 0 ? CKM_RSA_PKCS : CKM_ECDSA};
    unsigned char *der = NULL;
    if (hsm_x509_self_signed((const unsigned char *)spki, spkilen, cn, days, hash, sign_on_token,
                             &sg, &der, &derlen, &err) != 0)
        return lhsm_fail(L, &err);
    lua_pushlstring(L, (const char *)der, derlen);
    free(der);
    return 1;
}

/* core.cert_info(der) -> {subject=, issuer=, not_after=} | nil, err */
static int l_cert_info(lua_State *L)
{
    size_t len;
    const char *der = luaL_checklstring(L, 1, &len);
    char subject[512], issuer[512], not_after[16];
    hsm_err err;
    if (hsm_cert_info((const unsigned char *)der, len, subject, sizeof subject, issuer,
                      sizeof issuer, not_after, sizeof not_after, &err) != 0)
        return lhsm_fail(L, &err);
    lua_createtable(L, 0, 3);
    lua_pushstring(L, subject);
    lua_setfield(L, -2, "subject");
    lua_pushstring(L, issuer);
    lua_setfield(L, -2, "issuer");
    lua_pushstring(L, not_after);
    lua_setfield(L, -2, "not_after");
    return 1;
}

void lhsm_open_x509(lua_State *L)
{
    static const luaL_Reg fns[] = {{"self_signed_cert", l_self_signed_cert},
                                   {"cert_info", l_cert_info}, {NULL, NULL}};
    luaL_setfuncs(L, fns, 0);
}
