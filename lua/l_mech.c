/* l_mech.c - mechanisms from Lua: "CKM_AES_ECB", "aes_ecb", 0x1081,
 * {"CKM_AES_CBC_PAD", iv = "..."}, {"CKM_RSA_PKCS_OAEP", hash = "sha256"},
 * {"CKM_AES_GCM", iv = "...", aad = "...", tag_bits = 128},
 * {"CKM_RSA_AES_KEY_WRAP", aes_bits = 256, hash = "sha256"},
 * {"CKM_ECDH1_DERIVE", public = "<EC point>", kdf = "sha256", shared = "..."},
 * {"CKM_AES_CBC_ENCRYPT_DATA", iv = "<16 bytes>", data = "<multiple of 16 bytes>"}. */
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

static void oaep_params(lua_State *L, int t, CK_RSA_PKCS_OAEP_PARAMS *p)
{
    size_t len;
    p->hashAlg = hash_named(L, t, "hash", CKM_SHA_1, 0);
    p->mgf = hash_named(L, t, "mgf", hash_named(L, t, "hash", CKG_MGF1_SHA1, 1), 1);
    p->source = CKZ_DATA_SPECIFIED;
    p->pSourceData = (void *)opt_bytes(L, t, "label", &len);
    p->ulSourceDataLen = len;
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
        oaep_params(L, idx, &out->p.oaep);
        out->m.pParameter = &out->p.oaep;
        out->m.ulParameterLen = sizeof out->p.oaep;
        return;
    case CKM_RSA_AES_KEY_WRAP:
        oaep_params(L, idx, &out->oaep2);
        lua_getfield(L, idx, "aes_bits");
        out->rsa_aes.aes_key_bits = (CK_ULONG)luaL_optinteger(L, -1, 256);
        lua_pop(L, 1);
        out->rsa_aes.oaep = &out->oaep2;
        out->m.pParameter = &out->rsa_aes;
        out->m.ulParameterLen = sizeof out->rsa_aes;
        return;
    case CKM_ECDH1_DERIVE: {
        static const char *const kdfs[] = {"null", "sha1", "sha224", "sha256", "sha384", "sha512", NULL};
        static const CK_ULONG kdfv[] = {CKD_NULL, CKD_SHA1_KDF, CKD_SHA224_KDF, CKD_SHA256_KDF,
                                        CKD_SHA384_KDF, CKD_SHA512_KDF};
        lua_getfield(L, idx, "kdf");
        out->p.ecdh.kdf = kdfv[luaL_checkoption(L, -1, "null", kdfs)];
        lua_pop(L, 1);
        out->p.ecdh.public_data = (unsigned char *)opt_bytes(L, idx, "public", &len);
        out->p.ecdh.public_data_len = len;
        out->p.ecdh.shared_data = (unsigned char *)opt_bytes(L, idx, "shared", &len);
        out->p.ecdh.shared_data_len = len;
        out->m.pParameter = &out->p.ecdh;
        out->m.ulParameterLen = sizeof out->p.ecdh;
        return;
    }
    case CKM_AES_CBC_ENCRYPT_DATA: {
        const char *iv = opt_bytes(L, idx, "iv", &len);
        if (len != sizeof out->p.aes_cbc_data.iv)
            luaL_error(L, "CKM_AES_CBC_ENCRYPT_DATA needs iv = 16 bytes (got %d)", (int)len);
        memcpy(out->p.aes_cbc_data.iv, iv, len);
        out->p.aes_cbc_data.pData = (CK_BYTE *)opt_bytes(L, idx, "data", &len);
        out->p.aes_cbc_data.length = len;
        out->m.pParameter = &out->p.aes_cbc_data;
        out->m.ulParameterLen = sizeof out->p.aes_cbc_data;
        return;
    }
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
