/* l_attr.c - names (CKA/CKM/CKR/...) and attribute values between Lua and PKCS#11. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lhsm.h"

static const char *const ns_names[] = {"CKR", "CKA", "CKM", "CKK", "CKO", "CKC", "CKU",
                                       "CKF_TOKEN", "CKF_MECH", NULL};

hsm_ns lhsm_checkns(lua_State *L, int idx)
{
    return (hsm_ns)luaL_checkoption(L, idx, NULL, ns_names);
}

CK_ULONG lhsm_checkname(lua_State *L, int idx, hsm_ns ns)
{
    if (lua_type(L, idx) == LUA_TNUMBER)
        return (CK_ULONG)luaL_checkinteger(L, idx);
    const char *s = luaL_checkstring(L, idx);
    CK_ULONG v;
    if (hsm_value(ns, s, &v) != 0)
        luaL_error(L, "unknown %s name '%s'", ns_names[ns], s);
    return v;
}

void lhsm_pushname(lua_State *L, hsm_ns ns, CK_ULONG v)
{
    char buf[40];
    lua_pushstring(L, hsm_name_or_hex(ns, v, buf, sizeof buf));
}

static void push_date(lua_State *L, const CK_ATTRIBUTE *a)
{
    const CK_DATE *d = a->pValue;
    if (a->ulValueLen != sizeof(CK_DATE)) {
        lua_pushliteral(L, "");
        return;
    }
    lua_pushfstring(L, "%c%c%c%c-%c%c-%c%c", d->year[0], d->year[1], d->year[2], d->year[3],
                    d->month[0], d->month[1], d->day[0], d->day[1]);
}

void lhsm_pushattr(lua_State *L, const CK_ATTRIBUTE *a)
{
    switch (hsm_attr_type(a->type)) {
    case HSM_AT_BOOL:
        lua_pushboolean(L, a->ulValueLen >= 1 && *(CK_BBOOL *)a->pValue);
        break;
    case HSM_AT_ULONG:
        if (a->ulValueLen == sizeof(CK_ULONG))
            lua_pushinteger(L, (lua_Integer) * (CK_ULONG *)a->pValue);
        else
            lua_pushnil(L);
        break;
    case HSM_AT_ENUM:
        if (a->ulValueLen == sizeof(CK_ULONG))
            lhsm_pushname(L, hsm_attr_enum_ns(a->type), *(CK_ULONG *)a->pValue);
        else
            lua_pushnil(L);
        break;
    case HSM_AT_DATE:
        push_date(L, a);
        break;
    case HSM_AT_ATTRS: {
        hsm_tmpl inner = {a->pValue, a->ulValueLen / sizeof(CK_ATTRIBUTE), 0};
        lhsm_pushtmpl(L, &inner);
        break;
    }
    case HSM_AT_MECHS: {
        CK_ULONG n = a->ulValueLen / sizeof(CK_MECHANISM_TYPE);
        lua_createtable(L, (int)n, 0);
        for (CK_ULONG i = 0; i < n; i++) {
            lhsm_pushname(L, HSM_NS_CKM, ((CK_MECHANISM_TYPE *)a->pValue)[i]);
            lua_rawseti(L, -2, (lua_Integer)i + 1);
        }
        break;
    }
    default:
        lua_pushlstring(L, a->pValue ? a->pValue : "", a->ulValueLen);
    }
}

void lhsm_pushtmpl(lua_State *L, const hsm_tmpl *t)
{
    lua_createtable(L, 0, (int)t->n);
    for (CK_ULONG i = 0; i < t->n; i++) {
        lhsm_pushname(L, HSM_NS_CKA, t->a[i].type);
        lhsm_pushattr(L, &t->a[i]);
        lua_rawset(L, -3);
    }
}


static int tmpl_gc(lua_State *L)
{
    hsm_tmpl_free(luaL_checkudata(L, 1, "hsm.Template"));
    return 0;
}

static hsm_tmpl *new_tmpl(lua_State *L)
{
    hsm_tmpl *t = lua_newuserdatauv(L, sizeof *t, 0);
    hsm_tmpl_init(t);
    if (luaL_newmetatable(L, "hsm.Template")) {
        lua_pushcfunction(L, tmpl_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
    return t;
}

static CK_ULONG check_ulong(lua_State *L, CK_ATTRIBUTE_TYPE type, const char *name)
{
    CK_ULONG v;
    if (lua_isinteger(L, -1) && lua_tointeger(L, -1) >= 0)
        return (CK_ULONG)lua_tointeger(L, -1);
    if (hsm_attr_type(type) == HSM_AT_ENUM && lua_type(L, -1) == LUA_TSTRING) {
        if (hsm_value(hsm_attr_enum_ns(type), lua_tostring(L, -1), &v) != 0)
            luaL_error(L, "attribute %s: unknown value '%s'", name, lua_tostring(L, -1));
        return v;
    }
    return (CK_ULONG)luaL_error(L, "attribute %s expects a non-negative integer or a name", name);
}

static int add_value(lua_State *L, hsm_tmpl *t, CK_ATTRIBUTE_TYPE type, const char *name)
{
    int vt = lua_type(L, -1);
    switch (hsm_attr_type(type)) {
    case HSM_AT_BOOL:
        if (vt != LUA_TBOOLEAN)
            luaL_error(L, "attribute %s expects a boolean, got %s", name, lua_typename(L, vt));
        return hsm_tmpl_add_bool(t, type, lua_toboolean(L, -1));
    case HSM_AT_ULONG:
    case HSM_AT_ENUM:
        return hsm_tmpl_add_ulong(t, type, check_ulong(L, type, name));
    case HSM_AT_DATE: {
        const char *s = vt == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
        CK_DATE d;
        if (s && *s == '\0')
            return hsm_tmpl_add(t, type, NULL, 0);
        if (!s || strlen(s) != 10 || s[4] != '-' || s[7] != '-')
            luaL_error(L, "attribute %s expects a date \"YYYY-MM-DD\"", name);
        memcpy(d.year, s, 4);
        memcpy(d.month, s + 5, 2);
        memcpy(d.day, s + 8, 2);
        return hsm_tmpl_add(t, type, &d, sizeof d);
    }
    case HSM_AT_ATTRS: {
        if (vt != LUA_TTABLE)
            luaL_error(L, "attribute %s expects a table of attributes", name);
        hsm_tmpl *inner = lhsm_totmpl(L, -1);
        int r = hsm_tmpl_add_tmpl(t, type, inner);
        lua_pop(L, 1);
        return r;
    }
    case HSM_AT_MECHS: {
        if (vt != LUA_TTABLE)
            luaL_error(L, "attribute %s expects a list of mechanisms", name);
        size_t n = lua_rawlen(L, -1);
        CK_MECHANISM_TYPE *m = lua_newuserdatauv(L, (n ? n : 1) * sizeof *m, 0);
        for (size_t i = 0; i < n; i++) {
            lua_rawgeti(L, -2, (lua_Integer)i + 1);
            m[i] = lhsm_checkname(L, -1, HSM_NS_CKM);
            lua_pop(L, 1);
        }
        int r = hsm_tmpl_add(t, type, m, n * sizeof *m);
        lua_pop(L, 1);
        return r;
    }
    default: {
        /* An hsm.Secret (a key component) goes in without becoming a Lua string. */
        lhsm_secret *sec = vt == LUA_TUSERDATA ? luaL_testudata(L, -1, LHSM_SECRET) : NULL;
        if (sec)
            return hsm_tmpl_add(t, type, sec->p, sec->len);
        if (vt != LUA_TSTRING)
            luaL_error(L, "attribute %s expects a string, got %s", name, lua_typename(L, vt));
        size_t len;
        const char *s = lua_tolstring(L, -1, &len);
        return hsm_tmpl_add(t, type, s, len);
    }
    }
}

/* Templates go out in a fixed order: by attribute type, with CKA_MODIFIABLE last. Lua tables
 * have no order, and a module may apply a template in sequence: SoftHSM2 2.6 refuses every
 * attribute that follows CKA_MODIFIABLE=false with CKR_ATTRIBUTE_READ_ONLY. */
static CK_ULONG order_key(CK_ATTRIBUTE_TYPE t) { return t == CKA_MODIFIABLE ? (CK_ULONG)-1 : t; }

static int by_order(const void *a, const void *b)
{
    CK_ULONG x = order_key(((const CK_ATTRIBUTE *)a)->type), y = order_key(((const CK_ATTRIBUTE *)b)->type);
    return x < y ? -1 : x > y;
}

hsm_tmpl *lhsm_totmpl(lua_State *L, int idx)
{
    idx = lua_absindex(L, idx);
    hsm_tmpl *t = new_tmpl(L);
    if (lua_isnoneornil(L, idx))
        return t;
    luaL_checktype(L, idx, LUA_TTABLE);
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        CK_ATTRIBUTE_TYPE type = 0;
        char namebuf[40];
        if (lua_isinteger(L, -2))
            type = (CK_ATTRIBUTE_TYPE)lua_tointeger(L, -2);
        else if (lua_type(L, -2) != LUA_TSTRING ||
                 hsm_value(HSM_NS_CKA, lua_tostring(L, -2), &type) != 0)
            luaL_error(L, "unknown attribute '%s'",
                       lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "?");
        if (add_value(L, t, type, hsm_name_or_hex(HSM_NS_CKA, type, namebuf, sizeof namebuf)) != 0)
            luaL_error(L, "out of memory while building a template");
        lua_pop(L, 1);
    }
    if (t->n > 1)
        qsort(t->a, t->n, sizeof *t->a, by_order);
    return t;
}

/* core.name(ns, value) -> long name ("CKA_LABEL"), hex text when unknown */
static int l_name(lua_State *L)
{
    hsm_ns ns = lhsm_checkns(L, 1);
    lhsm_pushname(L, ns, lhsm_checkname(L, 2, ns));
    return 1;
}

/* core.value(ns, name) -> integer or nil when unknown */
static int l_value(lua_State *L)
{
    hsm_ns ns = lhsm_checkns(L, 1);
    CK_ULONG v;
    if (lua_type(L, 2) == LUA_TNUMBER)
        lua_pushvalue(L, 2);
    else if (hsm_value(ns, luaL_checkstring(L, 2), &v) == 0)
        lua_pushinteger(L, (lua_Integer)v);
    else
        lua_pushnil(L);
    return 1;
}

/* core.names(ns) -> {"CKA_CLASS", ...} in value order */
static int l_names(lua_State *L)
{
    hsm_ns ns = lhsm_checkns(L, 1);
    const char *name;
    CK_ULONG v;
    lua_newtable(L);
    for (size_t i = 0; hsm_name_at(ns, i, &name, &v); i++) {
        lua_pushstring(L, name);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    return 1;
}

void lhsm_open_names(lua_State *L)
{
    static const luaL_Reg fns[] = {{"name", l_name}, {"value", l_value}, {"names", l_names},
                                   {NULL, NULL}};
    luaL_setfuncs(L, fns, 0);
}
