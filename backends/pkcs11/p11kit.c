/* p11kit.c - p11-kit module registrations: NAME.module files ("key: value" lines, '#'
 * comments) give the library ("module:") and, by the ecosystem's convention, the string
 * C_Initialize passes as pReserved ("x-init-reserved:", as NSS softokn needs it).
 *
 * Looked up in p11-kit's order: the user's ~/.config/pkcs11/modules (only when not root,
 * as p11-kit does), /etc/pkcs11/modules, then /usr/share/p11-kit/modules. A relative
 * module path is relative to p11-kit's module directory. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hsm_p11.h"

#define P11KIT_MODULE_DIR "/usr/lib/x86_64-linux-gnu/pkcs11"

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' || s[n - 1] == '\n'))
        s[--n] = '\0';
    return s;
}

/* Reads one registration file; 1 when it names a module, 0 when it does not exist. */
static int read_file(const char *file, hsm_registration *out, hsm_err *err)
{
    FILE *f = fopen(file, "r");
    if (!f)
        return 0;
    char line[4096];
    int lineno = 0;
    memset(out, 0, sizeof *out);
    snprintf(out->file, sizeof out->file, "%s", file);
    while (fgets(line, sizeof line, f)) {
        lineno++;
        if (!strchr(line, '\n') && !feof(f)) {
            fclose(f);
            return hsm_err_set(err, "%s:%d: line longer than %zu bytes", file, lineno,
                               sizeof line - 1);
        }
        char *p = trim(line);
        if (*p == '#' || *p == '\0')
            continue;
        char *colon = strchr(p, ':');
        if (!colon)
            continue;   /* p11-kit ignores such lines too */
        *colon = '\0';
        char *key = trim(p), *val = trim(colon + 1);
        if (strcmp(key, "module") == 0) {
            if (val[0] == '/')
                snprintf(out->path, sizeof out->path, "%s", val);
            else
                snprintf(out->path, sizeof out->path, "%s/%s", P11KIT_MODULE_DIR, val);
        } else if (strcmp(key, "x-init-reserved") == 0) {
            if (strlen(val) >= sizeof out->init_reserved) {
                fclose(f);
                return hsm_err_set(err, "%s:%d: x-init-reserved is longer than %zu bytes", file,
                                   lineno, sizeof out->init_reserved - 1);
            }
            snprintf(out->init_reserved, sizeof out->init_reserved, "%s", val);
            /* "x-init-reserved:" with nothing after it means no arguments, as in p11-kit. */
            out->has_init_reserved = val[0] != '\0';
        }
    }
    fclose(f);
    if (!out->path[0])
        return hsm_err_set(err, "%s has no \"module:\" line", file);
    return 1;
}

int hsm_p11kit_lookup(const char *name, const char *const *dirs, hsm_registration *out,
                      hsm_err *err)
{
    char user[PATH_MAX] = "";
    const char *home = getenv("HOME");
    const char *defaults[4];
    int nd = 0;
    if (!dirs) {
        if (geteuid() != 0 && home && *home) {
            snprintf(user, sizeof user, "%s/.config/pkcs11/modules", home);
            defaults[nd++] = user;
        }
        defaults[nd++] = "/etc/pkcs11/modules";
        defaults[nd++] = "/usr/share/p11-kit/modules";
        defaults[nd] = NULL;
        dirs = defaults;
    }
    if (!name || !*name || strchr(name, '/'))
        return hsm_err_set(err, "a p11-kit module name has no '/' (got \"%s\")", name ? name : "");
    for (int i = 0; dirs[i]; i++) {
        char file[PATH_MAX];
        snprintf(file, sizeof file, "%s/%s.module", dirs[i], name);
        int r = read_file(file, out, err);
        if (r != 0)
            return r < 0 ? -1 : 0;
    }
    return hsm_err_set(err, "no PKCS#11 module is registered with p11-kit as \"%s\" (give a "
                       "module-path, or add %s.module to /etc/pkcs11/modules)", name, name);
}
