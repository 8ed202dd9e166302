/* l_mech.c - mechanisms from Lua: "CKM_AES_ECB", "aes_ecb", 0x1081,
 * {"CKM_AES_CBC_PAD", iv = "..."}, {"CKM_RSA_PKCS_OAEP", hash = "sha256"},
 * {"CKM_AES_GCM", iv = "...", aad = "...", tag_bits = 128}. */
#include <string.h>

#include "lhsm.h"

static const char *opt_bytes(lua_State *L, int t, const char *k, size_t *len)
{
    lua_getfield(L, t, k);   /* the table keeps the string alive */
    const char *s = lua_isnil(L, -1) ? NULL : luaL_checklstring(L, -1, len);
    lua_pop(L, 1);
    if (!s)
        *len = 0;
    return s;
}

static CK_MECHANISM_TYPE hash_named(lua_State *L, int t, const char *k, CK_MECHANISM_TYPE def,
                                    int mgf)
{
    static const char *const names[] = {"sha1", "sha224", "sha256", "sha384", "sha512", NULL};
    static const CK_MECHANISM_TYPE hashes[] = {CKM_SHA_1, CKM_SHA224, CKM_SHA256, CKM_SHA384, CKM_SHA512};
    static const CK_ULONG mgfs[] = {CKG_MGF1_SHA1, CKG_MGF1_SHA224, CKG_MGF1_SHA256,
                                    CKG_MGF1_SHA384, CKG_MGF1_SHA512};
    lua_getfield(L, t, k);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        return def;
    }
    int i = luaL_checkoption(L, -1, NULL, names);
    lua_pop(L, 1);
    return mgf ? mgfs[i] : hashes[i];
}

void lhsm_checkmech(lua_State *L, int idx, lhsm_mech *out)
{
    memset(out, 0, sizeof *out);
    idx = lua_absindex(L, idx);
    if (!lua_istable(L, idx)) {
        out->m.mechanism = lhsm_checkname(L, idx, HSM_NS_CKM);
        return;
    }
    lua_rawgeti(L, idx, 1);
    out->m.mechanism = lhsm_checkname(L, -1, HSM_NS_CKM);
    lua_pop(L, 1);
    size_t len;
    switch (out->m.mechanism) {
    case CKM_RSA_PKCS_OAEP:
        out->p.oaep.hashAlg = hash_named(L, idx, "hash", CKM_SHA_1, 0);
        out->p.oaep.mgf = hash_named(L, idx, "mgf", hash_named(L, idx, "hash", CKG_MGF1_SHA1, 1), 1);
        out->p.oaep.source = CKZ_DATA_SPECIFIED;
        out->p.oaep.pSourceData = (void *)opt_bytes(L, idx, "label", &len);
        out->p.oaep.ulSourceDataLen = len;
        out->m.pParameter = &out->p.oaep;
        out->m.ulParameterLen = sizeof out->p.oaep;
        return;
    case CKM_AES_GCM:
        out->p.gcm.pIv = (CK_BYTE *)opt_bytes(L, idx, "iv", &len);
        out->p.gcm.ulIvLen = len;
        out->p.gcm.ulIvBits = len * 8;
        out->p.gcm.pAAD = (CK_BYTE *)opt_bytes(L, idx, "aad", &len);
        out->p.gcm.ulAADLen = len;
        lua_getfield(L, idx, "tag_bits");
        out->p.gcm.ulTagBits = (CK_ULONG)luaL_optinteger(L, -1, 128);
        lua_pop(L, 1);
        out->m.pParameter = &out->p.gcm;
        out->m.ulParameterLen = sizeof out->p.gcm;
        return;
    default: {
        /* IV-style mechanisms: the raw parameter bytes. */
        const char *p = opt_bytes(L, idx, "iv", &len);
        if (!p)
            p = opt_bytes(L, idx, "param", &len);
        out->m.pParameter = (void *)p;
        out->m.ulParameterLen = len;
    }
    }
}
