/* fuzz_parsers.c - libFuzzer target on the parsers of untrusted files: the archive and token
 * image framing (hsm.archive.parse and .items), SKS blobs (hsm.sks.parse), and the
 * certificates and CSRs that travel between clients (core.cert_info, core.csr_info), run in a
 * real hsmsh host state with the embedded stdlib. A parser may refuse input only with its own
 * message ("archive ...", "image ...", "SKS blob: ...", "bad attribute value ...", or nil and
 * a message from the C parsers); any other Lua error (an "attempt to index a nil value" from
 * stdlib/hsm/...lua) or a crash is a finding. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>

#include "host.h"

static lua_State *L;
static char path[64];

static const char *const HARNESS =
    "local archive, sks = require('hsm.archive'), require('hsm.sks')\n"
    "local core, IMAGE = require('hsm.core'), require('hsm.replicate').IMAGE\n"
    "local ok_msg = {'^archive ', '^image ', '^SKS blob', '^bad attribute value', '^cannot read archive'}\n"
    "local function expected(err)\n"
    "  if type(err) ~= 'string' then return false end\n"
    "  for _, p in ipairs(ok_msg) do if err:find(p) then return true end end\n"
    "  return false\n"
    "end\n"
    "return function(data, path)\n"
    "  local f = assert(io.open(path, 'wb')); f:write(data); f:close()\n"
    "  local ok, a = pcall(archive.parse, path)\n"
    "  if ok then ok, a = pcall(archive.items, a) end\n"
    "  if not ok and not expected(a) then return 'archive: ' .. tostring(a) end\n"
    "  ok, a = pcall(archive.parse, path, IMAGE)\n"
    "  if ok then ok, a = pcall(archive.items, a) end\n"
    "  if not ok and not expected(a) then return 'image: ' .. tostring(a) end\n"
    "  ok, a = pcall(sks.parse, data)\n"
    "  if not ok and not expected(a) then return 'sks: ' .. tostring(a) end\n"
    "  for _, parse in ipairs({core.cert_info, core.csr_info}) do\n"
    "    local okc, v, err = pcall(parse, data)\n"
    "    if not okc or (v == nil and type(err) ~= 'string') then return 'x509: ' .. tostring(v) end\n"
    "  end\n"
    "  return nil\n"
    "end\n";

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    L = hsm_host_new();
    snprintf(path, sizeof path, "/tmp/fuzz_parsers.%d", (int)getpid());
    if (luaL_loadstring(L, HARNESS) != LUA_OK || lua_pcall(L, 0, 1, 0) != LUA_OK) {
        fprintf(stderr, "fuzz_parsers: %s\n", lua_tostring(L, -1));
        abort();
    }
    lua_setglobal(L, "fuzz_one");
    return 0;
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t len)
{
    lua_getglobal(L, "fuzz_one");
    lua_pushlstring(L, (const char *)data, len);
    lua_pushstring(L, path);
    if (lua_pcall(L, 2, 1, 0) != LUA_OK || !lua_isnil(L, -1)) {
        fprintf(stderr, "fuzz_parsers: unexpected failure: %s\n", lua_tostring(L, -1));
        abort();
    }
    lua_pop(L, 1);
    lua_gc(L, LUA_GCSTEP, 0);
    return 0;
}
