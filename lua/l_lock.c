/* l_lock.c - hsm.Lock: an exclusive advisory lock (flock) on a file, held by this process
 * until closed or until the process dies (the kernel releases it then, so a lock that can be
 * taken proves its last holder gone). Used for the claim on a token (hsm.claim) and for
 * "one live run per journal" (hsm.recipe). */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "lhsm.h"

#define LHSM_LOCK "hsm.Lock"

typedef struct lhsm_lock {
    int fd;   /* -1 once released */
} lhsm_lock;

static void release(lhsm_lock *k)
{
    if (k->fd >= 0) {
        flock(k->fd, LOCK_UN);
        close(k->fd);
        k->fd = -1;
    }
}

/* Reads what the holder wrote into the lock file (at most 4 KB). */
static void push_holder(lua_State *L, int fd)
{
    char buf[4096];
    ssize_t n = pread(fd, buf, sizeof buf, 0);
    lua_pushlstring(L, buf, n > 0 ? (size_t)n : 0);
}

/* core.lock(path, [info], [wait]) -> hsm.Lock | nil, holder, "busy" | nil, err
 * Takes an exclusive flock on path (created 0644 when missing). info: a string written into
 * the file once the lock is held (who holds it), nil to leave the file's content alone (a
 * journal). wait: block until the lock is free instead of answering "busy" at once; then
 * holder is what the current holder wrote (info of the other process). */
static int l_lock(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    size_t ilen = 0;
    const char *info = luaL_optlstring(L, 2, NULL, &ilen);
    int wait = lua_toboolean(L, 3);
    lhsm_lock *k = lua_newuserdatauv(L, sizeof *k, 0);
    k->fd = -1;
    luaL_setmetatable(L, LHSM_LOCK);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0)
        return luaL_fileresult(L, 0, path);
    int r;
    while ((r = flock(fd, LOCK_EX | (wait ? 0 : LOCK_NB))) != 0 && errno == EINTR)
        ;
    if (r != 0) {
        int e = errno;
        if (e == EWOULDBLOCK) {
            lua_pushnil(L);
            push_holder(L, fd);
            lua_pushliteral(L, "busy");
            close(fd);
            return 3;
        }
        close(fd);
        errno = e;
        return luaL_fileresult(L, 0, path);
    }
    if (info) {
        size_t off = 0;
        int ok = ftruncate(fd, 0) == 0;
        while (ok && off < ilen) {
            ssize_t n = pwrite(fd, info + off, ilen - off, (off_t)off);
            if (n < 0 && errno == EINTR)
                continue;
            ok = n > 0;
            off += ok ? (size_t)n : 0;
        }
        if (!ok) {
            int e = errno;
            close(fd);
            errno = e;
            return luaL_fileresult(L, 0, path);
        }
    }
    k->fd = fd;
    return 1;
}

/* lock:close(): releases the lock (idempotent; also on collection and at scope end) */
static int l_lock_close(lua_State *L)
{
    release(luaL_checkudata(L, 1, LHSM_LOCK));
    return 0;
}

static int l_lock_tostring(lua_State *L)
{
    lhsm_lock *k = luaL_checkudata(L, 1, LHSM_LOCK);
    lua_pushstring(L, k->fd >= 0 ? "hsm.Lock (held)" : "hsm.Lock (released)");
    return 1;
}

void lhsm_open_lock(lua_State *L)
{
    static const luaL_Reg methods[] = {{"close", l_lock_close}, {NULL, NULL}};
    static const luaL_Reg meta[] = {{"__gc", l_lock_close}, {"__close", l_lock_close},
                                    {"__tostring", l_lock_tostring}, {NULL, NULL}};
    lhsm_newclass(L, LHSM_LOCK, methods, meta);
    lua_pushcfunction(L, l_lock);
    lua_setfield(L, -2, "lock");
}
