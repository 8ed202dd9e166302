/* lhsm.h - helpers shared by the Lua bindings (one file per Lua type: l_module.c,
 * l_session.c, l_object.c, l_secret.c; conversions in l_attr.c and l_mech.c). */
#ifndef LHSM_H
#define LHSM_H

#include <lauxlib.h>
#include <lua.h>

#include "pkcs11/hsm_p11.h"

#define LHSM_MODULE "hsm.Module"
#define LHSM_SESSION "hsm.Session"
#define LHSM_OBJECT "hsm.Object"
#define LHSM_SECRET "hsm.Secret"

typedef struct lhsm_module {
    hsm_module *m;              /* NULL once closed */
} lhsm_module;

typedef struct lhsm_session {   /* user value 1: its lhsm_module (kept alive) */
    hsm_session s;              /* s.open == 0 once closed */
} lhsm_session;

typedef struct lhsm_object {    /* user value 1: its lhsm_session (kept alive) */
    CK_OBJECT_HANDLE h;
    lhsm_session *session;
    int closed;
} lhsm_object;

typedef struct lhsm_secret {    /* locked memory, zeroized on close */
    unsigned char *p;
    size_t len;
    int closed;
} lhsm_secret;

/* A mechanism with room for its parameters; pointers inside refer to Lua strings that
 * stay on the stack (in the argument table) for the duration of the call. */
/* CK_RSA_AES_KEY_WRAP_PARAMS (PKCS#11 2.40 §2.1.21), which p11-kit's header lacks. */
typedef struct lhsm_rsa_aes_params {
    CK_ULONG aes_key_bits;
    CK_RSA_PKCS_OAEP_PARAMS *oaep;
} lhsm_rsa_aes_params;

typedef struct lhsm_mech {
    CK_MECHANISM m;
    union {
        CK_RSA_PKCS_OAEP_PARAMS oaep;
        CK_GCM_PARAMS gcm;
        CK_ECDH1_DERIVE_PARAMS ecdh;
        CK_AES_CBC_ENCRYPT_DATA_PARAMS aes_cbc_data;
    } p;
    CK_RSA_PKCS_OAEP_PARAMS oaep2;   /* the OAEP part of RSA-AES key wrap */
    lhsm_rsa_aes_params rsa_aes;
} lhsm_mech;

/* Device and environment failures: pushes nil, message, CKR name (or nil); returns 3. */
int lhsm_fail(lua_State *L, const hsm_err *err);
/* Creates a metatable with methods (its __index table) and metamethods. */
void lhsm_newclass(lua_State *L, const char *name, const luaL_Reg *methods, const luaL_Reg *meta);

lhsm_module *lhsm_checkmodule(lua_State *L, int idx);   /* raises when closed */
lhsm_session *lhsm_checksession(lua_State *L, int idx); /* raises when closed */
lhsm_object *lhsm_checkobject(lua_State *L, int idx);   /* raises when it or its session is closed */
lhsm_secret *lhsm_checksecret(lua_State *L, int idx);   /* raises when closed */
/* Pushes a new hsm.Object for handle h of the session at sidx. */
void lhsm_pushobject(lua_State *L, int sidx, CK_OBJECT_HANDLE h);
/* Pushes a new hsm.Secret holding a copy of p[0..len). */
lhsm_secret *lhsm_pushsecret(lua_State *L, const void *p, size_t len);

/* l_attr.c: names and values. */
hsm_ns lhsm_checkns(lua_State *L, int idx);
CK_ULONG lhsm_checkname(lua_State *L, int idx, hsm_ns ns);   /* a name or an integer */
void lhsm_pushname(lua_State *L, hsm_ns ns, CK_ULONG v);     /* long form, hex if unknown */
void lhsm_pushattr(lua_State *L, const CK_ATTRIBUTE *a);      /* value only */
void lhsm_pushtmpl(lua_State *L, const hsm_tmpl *t);          /* {CKA_NAME = value} */
/* Reads the table at idx ({label = "x", CKA_TOKEN = true, ...}; nil = empty) into a new
 * template that is pushed as a box on the stack (freed and zeroized when collected, so a
 * raise never leaks it). Raises on unknown attributes and wrongly typed values. */
hsm_tmpl *lhsm_totmpl(lua_State *L, int idx);

/* l_mech.c: "CKM_AES_ECB", "aes_ecb", 0x1081, or {"CKM_RSA_PKCS_OAEP", hash = "sha256"} */
void lhsm_checkmech(lua_State *L, int idx, lhsm_mech *out);

/* Module openers, each registering its class and adding functions to the table on top. */
void lhsm_open_module(lua_State *L);
void lhsm_open_session(lua_State *L);
void lhsm_open_object(lua_State *L);
void lhsm_open_secret(lua_State *L);
void lhsm_open_names(lua_State *L);
void lhsm_open_x509(lua_State *L);
void lhsm_open_file(lua_State *L);   /* l_file.c: listdir, stat, fsync, rename_new, sha256_stream */
void lhsm_open_lock(lua_State *L);   /* l_lock.c: core.lock -> hsm.Lock */
void lhsm_open_custody(lua_State *L); /* l_custody.c: split, share_encode/decode, combine */

#endif
