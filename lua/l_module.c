/* l_module.c - hsm.Module: a loaded PKCS#11 library, its slots, tokens and mechanisms. */
#include <stdlib.h>

#include "lhsm.h"

lhsm_module *lhsm_checkmodule(lua_State *L, int idx)
{
    lhsm_module *lm = luaL_checkudata(L, idx, LHSM_MODULE);
    if (!lm->m)
        luaL_error(L, "module is closed");
    return lm;
}

static CK_SLOT_ID check_slot(lua_State *L, int idx)
{
    return (CK_SLOT_ID)luaL_checkinteger(L, idx);
}

static void push_flags(lua_State *L, hsm_ns ns, CK_FLAGS flags)
{
    lua_newtable(L);
    for (int bit = 0; bit < 32; bit++)
        if (flags & (1UL << bit)) {
            const char *n = hsm_name(ns, 1UL << bit);
            if (n) {
                lua_pushboolean(L, 1);
                lua_setfield(L, -2, n);
            }
        }
}

#define FIELD(L, f, key) do { char b_[80]; \
    lua_pushstring(L, hsm_field((const unsigned char *)(f), sizeof(f), b_, sizeof b_)); \
    lua_setfield(L, -2, key); } while (0)

/* module:path() -> the library's path */
static int l_module_path(lua_State *L)
{
    lua_pushstring(L, hsm_module_path(lhsm_checkmodule(L, 1)->m));
    return 1;
}

/* module:info() -> {manufacturer=, description=, version=} | nil, err */
static int l_module_info(lua_State *L)
{
    CK_INFO i;
    hsm_err err;
    if (hsm_module_info(lhsm_checkmodule(L, 1)->m, &i, &err) != 0)
        return lhsm_fail(L, &err);
    lua_newtable(L);
    FIELD(L, i.manufacturerID, "manufacturer");
    FIELD(L, i.libraryDescription, "description");
    lua_pushfstring(L, "%d.%d", i.libraryVersion.major, i.libraryVersion.minor);
    lua_setfield(L, -2, "version");
    return 1;
}

/* module:slots([all]) -> {slot_id, ...} (slots with a token unless all) | nil, err */
static int l_module_slots(lua_State *L)
{
    CK_SLOT_ID *slots;
    CK_ULONG n;
    hsm_err err;
    if (hsm_slots(lhsm_checkmodule(L, 1)->m, !lua_toboolean(L, 2), &slots, &n, &err) != 0)
        return lhsm_fail(L, &err);
    lua_createtable(L, (int)n, 0);
    for (CK_ULONG i = 0; i < n; i++) {
        lua_pushinteger(L, (lua_Integer)slots[i]);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    free(slots);
    return 1;
}

/* module:token_info(slot) -> {label=, manufacturer=, model=, serial=, flags={CKF_...=true},
 *   free_private_memory= (bytes, when the token reports it)} | nil, err */
static int l_module_token_info(lua_State *L)
{
    CK_TOKEN_INFO t;
    hsm_err err;
    if (hsm_token_info(lhsm_checkmodule(L, 1)->m, check_slot(L, 2), &t, &err) != 0)
        return lhsm_fail(L, &err);
    lua_newtable(L);
    FIELD(L, t.label, "label");
    FIELD(L, t.manufacturerID, "manufacturer");
    FIELD(L, t.model, "model");
    FIELD(L, t.serialNumber, "serial");
    push_flags(L, HSM_NS_CKF_TOKEN, t.flags);
    lua_setfield(L, -2, "flags");
    /* free memory for private objects, where the token tells (a card's capacity) */
    if (t.ulFreePrivateMemory != CK_UNAVAILABLE_INFORMATION &&
        t.ulFreePrivateMemory != CK_EFFECTIVELY_INFINITE) {
        lua_pushinteger(L, (lua_Integer)t.ulFreePrivateMemory);
        lua_setfield(L, -2, "free_private_memory");
    }
    return 1;
}

/* module:slot_info(slot) -> {description=, manufacturer=, flags={CKF_...=true}} | nil, err
 * (behind p11-kit-proxy these are still the real module's, unlike module:info()) */
static int l_module_slot_info(lua_State *L)
{
    CK_SLOT_INFO si;
    hsm_err err;
    if (hsm_slot_info(lhsm_checkmodule(L, 1)->m, check_slot(L, 2), &si, &err) != 0)
        return lhsm_fail(L, &err);
    lua_newtable(L);
    FIELD(L, si.slotDescription, "description");
    FIELD(L, si.manufacturerID, "manufacturer");
    lua_newtable(L);
    if (si.flags & CKF_TOKEN_PRESENT) {
        lua_pushboolean(L, 1);
        lua_setfield(L, -2, "CKF_TOKEN_PRESENT");
    }
    if (si.flags & CKF_HW_SLOT) {
        lua_pushboolean(L, 1);
        lua_setfield(L, -2, "CKF_HW_SLOT");
    }
    lua_setfield(L, -2, "flags");
    return 1;
}

/* module:init_reserved() -> the string C_Initialize got as pReserved, or nil */
static int l_module_init_reserved(lua_State *L)
{
    const char *r = hsm_module_init_reserved(lhsm_checkmodule(L, 1)->m);
    if (r)
        lua_pushstring(L, r);
    else
        lua_pushnil(L);
    return 1;
}

/* module:mechanisms(slot) -> {{name=, min=, max=, flags={CKF_...=true}}, ...} | nil, err */
static int l_module_mechanisms(lua_State *L)
{
    lhsm_module *lm = lhsm_checkmodule(L, 1);
    CK_SLOT_ID slot = check_slot(L, 2);
    CK_MECHANISM_TYPE *list;
    CK_ULONG n;
    hsm_err err;
    if (hsm_mechanisms(lm->m, slot, &list, &n, &err) != 0)
        return lhsm_fail(L, &err);
    lua_createtable(L, (int)n, 0);
    for (CK_ULONG i = 0; i < n; i++) {
        CK_MECHANISM_INFO mi = {0, 0, 0};
        int ok = hsm_mechanism_info(lm->m, slot, list[i], &mi, &err) == 0;
        lua_createtable(L, 0, 4);
        lhsm_pushname(L, HSM_NS_CKM, list[i]);
        lua_setfield(L, -2, "name");
        if (ok) {
            lua_pushinteger(L, (lua_Integer)mi.ulMinKeySize);
            lua_setfield(L, -2, "min");
            lua_pushinteger(L, (lua_Integer)mi.ulMaxKeySize);
            lua_setfield(L, -2, "max");
            push_flags(L, HSM_NS_CKF_MECH, mi.flags);
            lua_setfield(L, -2, "flags");
        }
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    free(list);
    return 1;
}

/* module:init_token(slot, so_pin_secret, label) -> true | nil, err */
static int l_module_init_token(lua_State *L)
{
    lhsm_module *lm = lhsm_checkmodule(L, 1);
    lhsm_secret *so = lhsm_checksecret(L, 3);
    hsm_err err;
    if (hsm_init_token(lm->m, check_slot(L, 2), so->p, so->len, luaL_checkstring(L, 4), &err) != 0)
        return lhsm_fail(L, &err);
    lua_pushboolean(L, 1);
    return 1;
}

/* module:open(slot, [rw=true]) -> hsm.Session | nil, err */
static int l_module_open(lua_State *L)
{
    lhsm_module *lm = lhsm_checkmodule(L, 1);
    CK_SLOT_ID slot = check_slot(L, 2);
    int rw = lua_isnoneornil(L, 3) ? 1 : lua_toboolean(L, 3);
    lhsm_session *ls = lua_newuserdatauv(L, sizeof *ls, 1);
    ls->s.open = 0;
    luaL_setmetatable(L, LHSM_SESSION);
    lua_pushvalue(L, 1);
    lua_setiuservalue(L, -2, 1);
    hsm_err err;
    if (hsm_session_open(lm->m, slot, rw, &ls->s, &err) != 0)
        return lhsm_fail(L, &err);
    return 1;
}

/* module:close() - idempotent; sessions already open keep the library loaded */
static int l_module_close(lua_State *L)
{
    lhsm_module *lm = luaL_checkudata(L, 1, LHSM_MODULE);
    if (lm->m)
        hsm_module_unref(lm->m);
    lm->m = NULL;
    return 0;
}

static int l_module_tostring(lua_State *L)
{
    lhsm_module *lm = luaL_checkudata(L, 1, LHSM_MODULE);
    if (lm->m)
        lua_pushfstring(L, "hsm.Module(%s)", hsm_module_path(lm->m));
    else
        lua_pushliteral(L, "hsm.Module(closed)");
    return 1;
}

void lhsm_open_module(lua_State *L)
{
    static const luaL_Reg methods[] = {
        {"path", l_module_path}, {"info", l_module_info}, {"slots", l_module_slots},
        {"token_info", l_module_token_info}, {"slot_info", l_module_slot_info},
        {"init_reserved", l_module_init_reserved}, {"mechanisms", l_module_mechanisms},
        {"init_token", l_module_init_token}, {"open", l_module_open}, {"close", l_module_close},
        {NULL, NULL}};
    static const luaL_Reg meta[] = {{"__gc", l_module_close}, {"__close", l_module_close},
                                    {"__tostring", l_module_tostring}, {NULL, NULL}};
    lhsm_newclass(L, LHSM_MODULE, methods, meta);
}
