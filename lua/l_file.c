/* l_file.c - what the stdlib needs of the file system and of streams beyond Lua's io:
 * directory listings, stat, fsync, chmod, renames that never replace, truncation, this process's
 * pid and host, and an incremental SHA-256 (hsm.Sha256) for data that must never be held
 * whole (hsm.sealed hashes a file's plaintext one chunk at a time). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lhsm.h"
#include "ossl/hsm_ossl.h"

#define LHSM_SHA256 "hsm.Sha256"

typedef struct lhsm_sha256 {
    hsm_sha256_ctx *c;          /* NULL once finished or collected */
    size_t len;                 /* digest length in bytes */
} lhsm_sha256;

static lhsm_sha256 *check_sha(lua_State *L)
{
    lhsm_sha256 *d = luaL_checkudata(L, 1, LHSM_SHA256);
    if (!d->c)
        luaL_error(L, "sha256 stream already finished");
    return d;
}

/* core.sha256_stream([bits]) -> hsm.Sha256 (d:update(data) -> d, d:final() -> digest);
 * bits = 256 (default) or 512 for SHA-512 */
static int l_sha256_stream(lua_State *L)
{
    lua_Integer bits = luaL_optinteger(L, 1, 256);
    luaL_argcheck(L, bits == 256 || bits == 512, 1, "256 or 512");
    lhsm_sha256 *d = lua_newuserdatauv(L, sizeof *d, 0);
    d->c = NULL;
    luaL_setmetatable(L, LHSM_SHA256);
    d->len = (size_t)bits / 8;
    d->c = hsm_sha256_new((int)bits);
    if (!d->c)
        return luaL_error(L, "sha256_stream: out of memory");
    return 1;
}

/* d:update(data) -> d */
static int l_sha256_update(lua_State *L)
{
    lhsm_sha256 *d = check_sha(L);
    size_t len;
    const char *p = luaL_checklstring(L, 2, &len);
    if (hsm_sha256_update(d->c, p, len) != 0)
        return luaL_error(L, "sha256 update failed");
    lua_settop(L, 1);
    return 1;
}

/* d:final() -> 32- or 64-byte digest; the stream is finished afterwards */
static int l_sha256_final(lua_State *L)
{
    lhsm_sha256 *d = check_sha(L);
    unsigned char out[64];
    int r = hsm_sha256_final(d->c, out);
    hsm_sha256_free(d->c);
    d->c = NULL;
    if (r != 0)
        return luaL_error(L, "sha256 final failed");
    lua_pushlstring(L, (const char *)out, d->len);
    return 1;
}

static int l_sha256_gc(lua_State *L)
{
    lhsm_sha256 *d = luaL_checkudata(L, 1, LHSM_SHA256);
    hsm_sha256_free(d->c);
    d->c = NULL;
    return 0;
}

static const char *kind_of(mode_t m)
{
    return S_ISREG(m) ? "file" : S_ISDIR(m) ? "dir" : S_ISLNK(m) ? "link" : "other";
}

static void push_stat(lua_State *L, const struct stat *st)
{
    lua_createtable(L, 0, 5);
    lua_pushstring(L, kind_of(st->st_mode));
    lua_setfield(L, -2, "kind");
    lua_pushinteger(L, (lua_Integer)st->st_size);
    lua_setfield(L, -2, "size");
    lua_pushinteger(L, (lua_Integer)st->st_dev);
    lua_setfield(L, -2, "dev");
    lua_pushinteger(L, (lua_Integer)st->st_ino);
    lua_setfield(L, -2, "ino");
    lua_pushnumber(L, (lua_Number)st->st_mtim.tv_sec + (lua_Number)st->st_mtim.tv_nsec / 1e9);
    lua_setfield(L, -2, "mtime");
}

/* core.stat(path) -> {kind="file"|"dir"|"other", size=, dev=, ino=, mtime=} | nil, err
 * (symbolic links are followed) */
static int l_stat(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    struct stat st;
    if (stat(path, &st) != 0)
        return luaL_fileresult(L, 0, path);
    push_stat(L, &st);
    return 1;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* core.listdir(dir) -> {{name=, kind="file"|"dir"|"link"|"other", size=, ...}, ...} sorted
 * by name (bytewise), "." and ".." left out, links not followed | nil, err */
static int l_listdir(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    DIR *dir = opendir(path);
    if (!dir)
        return luaL_fileresult(L, 0, path);
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    int failed = 0;
    errno = 0;
    while ((e = readdir(dir)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 32;
            char **p = realloc(names, ncap * sizeof *names);
            if (!p) {
                failed = ENOMEM;
                break;
            }
            names = p, cap = ncap;
        }
        if (!(names[n] = strdup(e->d_name))) {
            failed = ENOMEM;
            break;
        }
        n++;
        errno = 0;
    }
    if (!failed && errno)
        failed = errno;
    if (!failed && n > 1)   /* qsort with a NULL array (an empty directory) is undefined */
        qsort(names, n, sizeof *names, by_name);
    lua_createtable(L, failed ? 0 : (int)n, 0);
    for (size_t i = 0; i < n; i++) {
        struct stat st;
        if (!failed) {
            if (fstatat(dirfd(dir), names[i], &st, AT_SYMLINK_NOFOLLOW) != 0) {
                failed = errno;
            } else {
                push_stat(L, &st);
                lua_pushstring(L, names[i]);
                lua_setfield(L, -2, "name");
                lua_rawseti(L, -2, (lua_Integer)i + 1);
            }
        }
        free(names[i]);
    }
    free(names);
    closedir(dir);
    if (failed) {
        errno = failed;
        return luaL_fileresult(L, 0, path);
    }
    return 1;
}

/* core.fsync(path) -> true | nil, err: flushes a file's (or a directory's entries') data to
 * the device, so a rename that follows survives a crash. */
static int l_fsync(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return luaL_fileresult(L, 0, path);
    if (fsync(fd) != 0 && errno != EINVAL) {   /* EINVAL: no fsync on this kind of file */
        int e = errno;
        close(fd);
        errno = e;
        return luaL_fileresult(L, 0, path);
    }
    close(fd);
    lua_pushboolean(L, 1);
    return 1;
}

/* core.mkdir(path, [mode=0700]) -> true | nil, err: makes a directory and any missing parent
 * (each new one with mode); an existing directory is fine, an existing non-directory is not */
static int l_mkdir(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    mode_t mode = (mode_t)luaL_optinteger(L, 2, 0700);
    char *p = strdup(path);
    if (!p)
        return luaL_error(L, "mkdir: out of memory");
    for (char *q = p + 1;; q++) {
        if (*q != '/' && *q != '\0')
            continue;
        char c = *q;
        *q = '\0';
        struct stat st;
        if (mkdir(p, mode) != 0 && !(errno == EEXIST && stat(p, &st) == 0 && S_ISDIR(st.st_mode))) {
            int e = errno == EEXIST ? ENOTDIR : errno;
            free(p);
            errno = e;
            return luaL_fileresult(L, 0, path);
        }
        *q = c;
        if (c == '\0')
            break;
    }
    free(p);
    lua_pushboolean(L, 1);
    return 1;
}

/* core.chmod(path, mode) -> true | nil, err */
static int l_chmod(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    return luaL_fileresult(L, chmod(path, (mode_t)luaL_checkinteger(L, 2)) == 0, path);
}

/* core.chgrp(path, group) -> true | nil, err: gives path to a group (by name), owner kept */
static int l_chgrp(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    const char *name = luaL_checkstring(L, 2);
    struct group *g = getgrnam(name);
    if (!g) {
        luaL_pushfail(L);
        lua_pushfstring(L, "no group named '%s'", name);
        return 2;
    }
    return luaL_fileresult(L, chown(path, (uid_t)-1, g->gr_gid) == 0, path);
}

/* core.gid(group) -> the group's id | nil (no such group) */
static int l_gid(lua_State *L)
{
    struct group *g = getgrnam(luaL_checkstring(L, 1));
    if (!g)
        return 0;
    lua_pushinteger(L, (lua_Integer)g->gr_gid);
    return 1;
}

/* core.rename_new(from, to) -> true | nil, err: renames, but never over an existing file
 * (renameat2 RENAME_NOREPLACE; a hard link and an unlink where the file system lacks it).
 * The directory is synced after, so the new name survives a crash. */
static int l_rename_new(lua_State *L)
{
    const char *from = luaL_checkstring(L, 1);
    const char *to = luaL_checkstring(L, 2);
    if (renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE) != 0) {
        if (errno != EINVAL && errno != ENOSYS)
            return luaL_fileresult(L, 0, to);
        if (link(from, to) != 0)
            return luaL_fileresult(L, 0, to);
        unlink(from);
    }
    char *dir = strdup(to);
    if (!dir)
        return luaL_error(L, "rename_new: out of memory");
    char *slash = strrchr(dir, '/');
    const char *d = slash ? (slash == dir ? "/" : (*slash = '\0', dir)) : ".";
    int fd = open(d, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int ok = fd >= 0 && (fsync(fd) == 0 || errno == EINVAL);
    int e = errno;
    if (fd >= 0)
        close(fd);
    free(dir);
    if (!ok) {
        errno = e;
        return luaL_fileresult(L, 0, to);
    }
    lua_pushboolean(L, 1);
    return 1;
}

/* core.truncate(path, length) -> true | nil, err: cuts a file to length bytes and syncs it */
static int l_truncate(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    lua_Integer len = luaL_checkinteger(L, 2);
    luaL_argcheck(L, len >= 0, 2, "negative length");
    int fd = open(path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return luaL_fileresult(L, 0, path);
    int ok = ftruncate(fd, (off_t)len) == 0 && fsync(fd) == 0;
    int e = errno;
    close(fd);
    if (!ok) {
        errno = e;
        return luaL_fileresult(L, 0, path);
    }
    lua_pushboolean(L, 1);
    return 1;
}

/* core.process() -> {pid=, host=}: this process and the machine's host name */
static int l_process(lua_State *L)
{
    char host[256] = "";
    if (gethostname(host, sizeof host - 1) != 0)
        host[0] = '\0';
    lua_createtable(L, 0, 2);
    lua_pushinteger(L, (lua_Integer)getpid());
    lua_setfield(L, -2, "pid");
    lua_pushstring(L, host);
    lua_setfield(L, -2, "host");
    return 1;
}

/* core.alive(pid) -> true when a process with that pid exists (on this machine) */
static int l_alive(lua_State *L)
{
    lua_Integer pid = luaL_checkinteger(L, 1);
    lua_pushboolean(L, pid > 0 && (kill((pid_t)pid, 0) == 0 || errno == EPERM));
    return 1;
}

void lhsm_open_file(lua_State *L)
{
    static const luaL_Reg methods[] = {{"update", l_sha256_update}, {"final", l_sha256_final},
                                       {NULL, NULL}};
    static const luaL_Reg meta[] = {{"__gc", l_sha256_gc}, {NULL, NULL}};
    lhsm_newclass(L, LHSM_SHA256, methods, meta);
    static const luaL_Reg fns[] = {{"sha256_stream", l_sha256_stream}, {"stat", l_stat},
                                   {"listdir", l_listdir}, {"fsync", l_fsync},
                                   {"mkdir", l_mkdir}, {"chmod", l_chmod}, {"chgrp", l_chgrp}, {"gid", l_gid}, {"rename_new", l_rename_new}, {"truncate", l_truncate},
                                   {"process", l_process}, {"alive", l_alive}, {NULL, NULL}};
    luaL_setfuncs(L, fns, 0);
}
