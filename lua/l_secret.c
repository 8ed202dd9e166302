/* l_secret.c - hsm.Secret: PINs and key components in locked memory, zeroized on close,
 * printed as <secret>, never turned into a Lua string. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <termios.h>
#include <unistd.h>

#include "custody/hsm_custody.h"
#include "lhsm.h"

#define SECRET_MAX 1024

static void wipe(lhsm_secret *s)
{
    if (s->p)
        hsm_secure_free(s->p, s->len ? s->len : 1);
    s->p = NULL;
    s->len = 0;
    s->closed = 1;
}

lhsm_secret *lhsm_pushsecret(lua_State *L, const void *p, size_t len)
{
    lhsm_secret *s = lua_newuserdatauv(L, sizeof *s, 0);
    s->p = NULL;
    s->len = 0;
    s->closed = 1;
    luaL_setmetatable(L, LHSM_SECRET);
    /* Locked, kept out of core dumps, zeroized on free. */
    s->p = hsm_secure_alloc(len ? len : 1);
    if (!s->p)
        luaL_error(L, "out of memory");
    memcpy(s->p, p, len);
    s->len = len;
    s->closed = 0;
    return s;
}

lhsm_secret *lhsm_checksecret(lua_State *L, int idx)
{
    lhsm_secret *s = luaL_checkudata(L, idx, LHSM_SECRET);
    if (s->closed)
        luaL_error(L, "secret is closed");
    return s;
}

/* core.secret(text) -> hsm.Secret  (for PINs that are not secret, e.g. the lab's) */
static int l_secret(lua_State *L)
{
    size_t len;
    const char *p = luaL_checklstring(L, 1, &len);
    lhsm_pushsecret(L, p, len);
    return 1;
}

/* core.secret_file(path) -> hsm.Secret | nil, message  (first line, newline dropped) */
static int l_secret_file(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    unsigned char buf[SECRET_MAX];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        lua_pushnil(L);
        lua_pushfstring(L, "cannot read %s: %s", path, strerror(errno));
        return 2;
    }
    ssize_t n = read(fd, buf, sizeof buf);
    close(fd);
    if (n < 0)
        n = 0;
    size_t len = (size_t)n;
    for (size_t i = 0; i < len; i++)
        if (buf[i] == '\n' || buf[i] == '\r') {
            len = i;
            break;
        }
    lhsm_pushsecret(L, buf, len);
    explicit_bzero(buf, sizeof buf);
    return 1;
}

/* core.secret_prompt(prompt) -> hsm.Secret | nil, message  (no echo, from /dev/tty) */
static int l_secret_prompt(lua_State *L)
{
    const char *prompt = luaL_checkstring(L, 1);
    int fd = open("/dev/tty", O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        lua_pushnil(L);
        lua_pushstring(L, "no terminal to ask for the PIN (give pin-source=file:PATH in the URI; to resume a run, NAME.pin-source=file:PATH)");
        return 2;
    }
    struct termios old, quiet;
    int have_tty = tcgetattr(fd, &old) == 0;
    if (have_tty) {
        quiet = old;
        quiet.c_lflag &= ~(tcflag_t)(ECHO | ECHONL);
        tcsetattr(fd, TCSAFLUSH, &quiet);
    }
    if (write(fd, prompt, strlen(prompt)) < 0) { /* best effort */ }
    unsigned char buf[SECRET_MAX];
    size_t len = 0;
    char c;
    while (len < sizeof buf && read(fd, &c, 1) == 1 && c != '\n' && c != '\r')
        buf[len++] = (unsigned char)c;
    if (have_tty)
        tcsetattr(fd, TCSAFLUSH, &old);
    if (write(fd, "\n", 1) < 0) { /* best effort */ }
    close(fd);
    lhsm_pushsecret(L, buf, len);
    explicit_bzero(buf, sizeof buf);
    return 1;
}

static int l_secret_close(lua_State *L)
{
    wipe(luaL_checkudata(L, 1, LHSM_SECRET));
    return 0;
}

static int l_secret_tostring(lua_State *L)
{
    luaL_checkudata(L, 1, LHSM_SECRET);
    lua_pushliteral(L, "<secret>");
    return 1;
}

/* secret:len() -> number of bytes */
static int l_secret_len(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)lhsm_checksecret(L, 1)->len);
    return 1;
}

/* core.secret_read(path) -> hsm.Secret of the whole file (binary, at most 64 KiB: share
 * files) | nil, message */
static int l_secret_read(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    size_t cap = 64 * 1024, len = 0;
    unsigned char *buf = hsm_secure_alloc(cap);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (!buf || fd < 0) {
        if (fd >= 0)
            close(fd);
        hsm_secure_free(buf, cap);
        lua_pushnil(L);
        lua_pushfstring(L, "cannot read %s", path);
        return 2;
    }
    ssize_t n;
    while (len < cap && (n = read(fd, buf + len, cap - len)) > 0)
        len += (size_t)n;
    int more = len == cap && read(fd, &(char){0}, 1) > 0;
    close(fd);
    if (!more)
        lhsm_pushsecret(L, buf, len);
    hsm_secure_free(buf, cap);
    if (more) {
        lua_pushnil(L);
        lua_pushfstring(L, "%s is larger than 64 KiB", path);
        return 2;
    }
    return 1;
}

/* secret:write(path) -> true | nil, message: a new file (never an existing one), mode 0600,
 * synced (share files handed to custodians) */
static int l_secret_write(lua_State *L)
{
    lhsm_secret *s = lhsm_checksecret(L, 1);
    const char *path = luaL_checkstring(L, 2);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return luaL_fileresult(L, 0, path);
    size_t off = 0;
    while (off < s->len) {
        ssize_t n = write(fd, (unsigned char *)s->p + off, s->len - off);
        if (n <= 0)
            break;
        off += (size_t)n;
    }
    int ok = off == s->len && fsync(fd) == 0;
    int e = ok ? 0 : errno ? errno : EIO;
    if (close(fd) != 0 && ok) {
        ok = 0;
        e = errno;
    }
    if (!ok) {
        unlink(path);
        lua_pushnil(L);
        lua_pushfstring(L, "cannot write %s: %s", path, strerror(e));
        return 2;
    }
    lua_pushboolean(L, 1);
    return 1;
}

static int hexval(int c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
         : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* secret:from_hex() -> hsm.Secret of the bytes a hex-typed component stands for (spaces
 * allowed) | nil, message (which never quotes the input) */
static int l_secret_from_hex(lua_State *L)
{
    lhsm_secret *s = lhsm_checksecret(L, 1);
    unsigned char *out = malloc(s->len / 2 + 1);
    if (!out)
        return luaL_error(L, "out of memory");
    mlock(out, s->len / 2 + 1);
    size_t n = 0, digits = 0;
    int hi = -1, bad = 0;
    for (size_t i = 0; i < s->len; i++) {
        int c = ((unsigned char *)s->p)[i];
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r')
            continue;
        int v = hexval(c);
        bad |= v < 0;
        digits++;
        if (hi < 0)
            hi = v;
        else {
            out[n++] = (unsigned char)(hi << 4 | v);
            hi = -1;
        }
    }
    if (!bad && hi < 0)
        lhsm_pushsecret(L, out, n);
    explicit_bzero(out, s->len / 2 + 1);
    munlock(out, s->len / 2 + 1);
    free(out);
    if (bad || hi >= 0) {
        lua_pushnil(L);
        lua_pushfstring(L, bad ? "not hexadecimal (%d characters typed)" :
                        "an odd number of hex digits (%d)", (int)digits);
        return 2;
    }
    return 1;
}

/* secret:xor(other) -> hsm.Secret, both the same length (combining key components) */
static int l_secret_xor(lua_State *L)
{
    lhsm_secret *a = lhsm_checksecret(L, 1), *b = lhsm_checksecret(L, 2);
    if (a->len != b->len)
        return luaL_error(L, "components differ in length (%d and %d bytes)", (int)a->len, (int)b->len);
    lhsm_secret *r = lhsm_pushsecret(L, a->p, a->len);
    for (size_t i = 0; i < a->len; i++)
        ((unsigned char *)r->p)[i] ^= ((unsigned char *)b->p)[i];
    return 1;
}

void lhsm_open_secret(lua_State *L)
{
    static const luaL_Reg methods[] = {{"close", l_secret_close}, {"len", l_secret_len},
                                       {"from_hex", l_secret_from_hex}, {"xor", l_secret_xor},
                                       {"write", l_secret_write},
                                       {NULL, NULL}};
    static const luaL_Reg meta[] = {{"__gc", l_secret_close}, {"__close", l_secret_close},
                                    {"__tostring", l_secret_tostring}, {"__len", l_secret_len},
                                    {NULL, NULL}};
    static const luaL_Reg fns[] = {{"secret", l_secret}, {"secret_file", l_secret_file},
                                   {"secret_prompt", l_secret_prompt}, {"secret_read", l_secret_read},
                                   {NULL, NULL}};
    lhsm_newclass(L, LHSM_SECRET, methods, meta);
    luaL_setfuncs(L, fns, 0);
}
