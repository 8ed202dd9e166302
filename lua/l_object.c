/* l_object.c - hsm.Object: a handle on a token or session object; attributes by name
 * (obj.label, obj.CKA_ID), obj:attrs(), obj:set{}, obj:destroy(). Key material is never read;
 * obj:get_secret reads a custodian's share into an hsm.Secret. */
#include "lhsm.h"

lhsm_object *lhsm_checkobject(lua_State *L, int idx)
{
    lhsm_object *o = luaL_checkudata(L, idx, LHSM_OBJECT);
    if (o->closed)
        luaL_error(L, "object is closed");
    if (!o->session->s.open)
        luaL_error(L, "session is closed");
    return o;
}

void lhsm_pushobject(lua_State *L, int sidx, CK_OBJECT_HANDLE h)
{
    sidx = lua_absindex(L, sidx);
    lhsm_object *o = lua_newuserdatauv(L, sizeof *o, 1);
    o->h = h;
    o->session = lua_touserdata(L, sidx);
    o->closed = 0;
    luaL_setmetatable(L, LHSM_OBJECT);
    lua_pushvalue(L, sidx);
    lua_setiuservalue(L, -2, 1);
}

static hsm_session *S(lhsm_object *o) { return &o->session->s; }

/* One attribute, pushed as its value or (as_secret) as an hsm.Secret of its bytes. */
static int get_attr(lua_State *L, int as_secret)
{
    lhsm_object *o = lhsm_checkobject(L, 1);
    CK_ATTRIBUTE_TYPE type = lhsm_checkname(L, 2, HSM_NS_CKA);
    if (as_secret && hsm_attr_type(type) != HSM_AT_BYTES)
        return luaL_argerror(L, 2, "not a byte-string attribute");
    hsm_tmpl t;
    hsm_err err;
    CK_RV why;
    hsm_tmpl_init(&t);
    int r = hsm_get_one(S(o), o->h, type, &t, &why, &err);
    if (r < 0)
        return lhsm_fail(L, &err);
    if (r == 0) {
        lua_pushnil(L);
        lhsm_pushname(L, HSM_NS_CKR, why);
        return 2;
    }
    if (as_secret)
        lhsm_pushsecret(L, t.a[0].pValue, t.a[0].ulValueLen);
    else
        lhsm_pushattr(L, &t.a[0]);
    hsm_tmpl_free(&t);   /* zeroizes the copy it read */
    return 1;
}

/* obj:get(name) -> value | nil, reason   (reason: "CKR_ATTRIBUTE_SENSITIVE", ...) */
static int l_object_get(lua_State *L) { return get_attr(L, 0); }

/* obj:get_secret(name) -> hsm.Secret | nil, reason   (a byte-string attribute read straight
 * into locked memory: a share kept on a custodian's card as a data object's CKA_VALUE) */
static int l_object_get_secret(lua_State *L) { return get_attr(L, 1); }

/* obj.label / obj.CKA_LABEL: methods first, then attributes (nil when absent) */
static int l_object_index(lua_State *L)
{
    luaL_getmetatable(L, LHSM_OBJECT);
    lua_getfield(L, -1, "__methods");
    lua_pushvalue(L, 2);
    lua_rawget(L, -2);
    if (!lua_isnil(L, -1))
        return 1;
    lua_settop(L, 2);
    CK_ULONG type;
    if (lua_type(L, 2) != LUA_TSTRING || hsm_value(HSM_NS_CKA, lua_tostring(L, 2), &type) != 0)
        return luaL_error(L, "unknown attribute or method '%s'", luaL_tolstring(L, 2, NULL));
    int n = l_object_get(L);
    if (n == 3)   /* a device failure while reading raises here: an index cannot return it */
        return luaL_error(L, "%s", lua_tostring(L, -2));
    lua_settop(L, lua_gettop(L) - n + 1);
    return 1;
}

/* obj:attrs() -> {CKA_NAME = value} of every readable attribute | nil, err */
static int l_object_attrs(lua_State *L)
{
    lhsm_object *o = lhsm_checkobject(L, 1);
    hsm_tmpl t;
    hsm_err err;
    hsm_tmpl_init(&t);
    if (hsm_get_all(S(o), o->h, &t, &err) != 0) {
        hsm_tmpl_free(&t);
        return lhsm_fail(L, &err);
    }
    lhsm_pushtmpl(L, &t);
    hsm_tmpl_free(&t);
    return 1;
}

/* obj:set{name = value, ...} -> true | nil, err */
static int l_object_set(lua_State *L)
{
    lhsm_object *o = lhsm_checkobject(L, 1);
    hsm_tmpl *t = lhsm_totmpl(L, 2);
    hsm_err err;
    if (hsm_set(S(o), o->h, t, &err) != 0)
        return lhsm_fail(L, &err);
    lua_pushboolean(L, 1);
    return 1;
}

/* obj:copy{overrides} -> hsm.Object | nil, err */
static int l_object_copy(lua_State *L)
{
    lhsm_object *o = lhsm_checkobject(L, 1);
    hsm_tmpl *t = lhsm_totmpl(L, 2);
    CK_OBJECT_HANDLE h;
    hsm_err err;
    if (hsm_copy(S(o), o->h, t, &h, &err) != 0)
        return lhsm_fail(L, &err);
    lua_getiuservalue(L, 1, 1);
    lhsm_pushobject(L, -1, h);
    return 1;
}

/* obj:destroy() -> true | nil, err  (the handle is closed afterwards) */
static int l_object_destroy(lua_State *L)
{
    lhsm_object *o = lhsm_checkobject(L, 1);
    hsm_err err;
    if (hsm_destroy(S(o), o->h, &err) != 0)
        return lhsm_fail(L, &err);
    o->closed = 1;
    lua_pushboolean(L, 1);
    return 1;
}

/* obj:handle() -> the PKCS#11 object handle */
static int l_object_handle(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)lhsm_checkobject(L, 1)->h);
    return 1;
}

/* obj:session() -> the hsm.Session it belongs to */
static int l_object_session(lua_State *L)
{
    lhsm_checkobject(L, 1);
    lua_getiuservalue(L, 1, 1);
    return 1;
}

static int l_object_close(lua_State *L)
{
    ((lhsm_object *)luaL_checkudata(L, 1, LHSM_OBJECT))->closed = 1;
    return 0;
}

static int l_object_tostring(lua_State *L)
{
    lhsm_object *o = luaL_checkudata(L, 1, LHSM_OBJECT);
    lua_pushfstring(L, "hsm.Object(%d%s)", (int)o->h, o->closed ? ", closed" : "");
    return 1;
}

static int l_object_eq(lua_State *L)
{
    lhsm_object *a = luaL_checkudata(L, 1, LHSM_OBJECT), *b = luaL_checkudata(L, 2, LHSM_OBJECT);
    lua_pushboolean(L, a->h == b->h && a->session == b->session);
    return 1;
}

void lhsm_open_object(lua_State *L)
{
    static const luaL_Reg methods[] = {
        {"get", l_object_get}, {"get_secret", l_object_get_secret}, {"attrs", l_object_attrs}, {"set", l_object_set},
        {"copy", l_object_copy}, {"destroy", l_object_destroy}, {"handle", l_object_handle},
        {"session", l_object_session}, {"close", l_object_close}, {NULL, NULL}};
    static const luaL_Reg meta[] = {{"__index", l_object_index}, {"__close", l_object_close},
                                    {"__tostring", l_object_tostring}, {"__eq", l_object_eq},
                                    {NULL, NULL}};
    luaL_newmetatable(L, LHSM_OBJECT);
    luaL_setfuncs(L, meta, 0);
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "__methods");   /* core.methods("hsm.Object") extends this */
    lua_pushliteral(L, LHSM_OBJECT);
    lua_setfield(L, -2, "__name");
    lua_pop(L, 1);
}
