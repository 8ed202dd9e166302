/* test_p11kit.c - p11-kit registrations (module:, x-init-reserved:), the x-init-reserved
 * URI query attribute, and C_Initialize failures that name the module and the cure. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "pkcs11/hsm_p11.h"

static char dir[] = "/tmp/hsmsh-p11kit-XXXXXX";

static void write_module(const char *name, const char *text)
{
    char file[256];
    snprintf(file, sizeof file, "%s/%s.module", dir, name);
    FILE *f = fopen(file, "w");
    CHECK(f != NULL);
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

static void test_lookup(void)
{
    const char *dirs[] = { dir, NULL };
    hsm_registration r;
    hsm_err err;

    write_module("nss", "# NSS\nmodule: /usr/lib/x86_64-linux-gnu/libsoftokn3.so\n"
                 "x-init-reserved:  configdir='sql:/x y' certPrefix='' flags=  \n"
                 "critical: no\n");
    CHECK(hsm_p11kit_lookup("nss", dirs, &r, &err) == 0);
    CHECK_STR(r.path, "/usr/lib/x86_64-linux-gnu/libsoftokn3.so");
    CHECK(r.has_init_reserved);
    CHECK_STR(r.init_reserved, "configdir='sql:/x y' certPrefix='' flags=");

    /* relative to p11-kit's module directory; "x-init-reserved:" alone means none */
    write_module("rel", "module: libfoo.so\nx-init-reserved:\n");
    CHECK(hsm_p11kit_lookup("rel", dirs, &r, &err) == 0);
    CHECK_STR(r.path, "/usr/lib/x86_64-linux-gnu/pkcs11/libfoo.so");
    CHECK(!r.has_init_reserved);

    write_module("nomod", "x-init-reserved: a=b\n");
    CHECK(hsm_p11kit_lookup("nomod", dirs, &r, &err) == -1);
    CHECK(strstr(err.msg, "has no \"module:\" line") != NULL);

    CHECK(hsm_p11kit_lookup("absent", dirs, &r, &err) == -1);
    CHECK(strstr(err.msg, "no PKCS#11 module is registered with p11-kit as \"absent\"") != NULL);
    CHECK(hsm_p11kit_lookup("../etc/x", dirs, &r, &err) == -1);
}

static void test_uri(void)
{
    hsm_uri u;
    hsm_err err;
    const char *s = "pkcs11:token=NSS%20Certificate%20DB?module-path=/usr/lib/x86_64-linux-gnu/"
                    "libsoftokn3.so&x-init-reserved=configdir%3D'sql:/tmp/n'%20flags%3D";
    CHECK(hsm_uri_parse(s, &u, &err) == 0);
    CHECK_STR(u.init_reserved, "configdir='sql:/tmp/n' flags=");
    char *f = hsm_uri_format(&u, 0);
    hsm_uri u2;
    CHECK(f && hsm_uri_parse(f, &u2, &err) == 0);   /* round trip keeps it */
    CHECK_STR(u2.init_reserved, "configdir='sql:/tmp/n' flags=");
    hsm_uri_free(&u2);
    free(f);
    hsm_uri_free(&u);
    /* in the path it is an error, other x- attributes stay ignored */
    CHECK(hsm_uri_parse("pkcs11:x-init-reserved=a", &u, &err) == -1);
    CHECK(strstr(err.msg, "belongs in the query") != NULL);
    CHECK(hsm_uri_parse("pkcs11:token=a?x-other=1", &u, &err) == 0);
    hsm_uri_free(&u);
    CHECK(hsm_uri_parse("pkcs11:?x-init-reserved=a&x-init-reserved=b", &u, &err) == -1);
}

/* A registration naming NSS softokn without its arguments: the failure names the module,
 * the CKR and the two cures. libsoftokn3.so comes with libnss3, which .ci/modules.sh installs. */
static void test_init_failure(void)
{
    const char *nss = "/usr/lib/x86_64-linux-gnu/libsoftokn3.so";
    hsm_err err;
    CHECK(access(nss, R_OK) == 0);
    hsm_module *m = hsm_module_load_init(nss, NULL, &err);
    CHECK(m == NULL);
    CHECK(err.rv == CKR_ARGUMENTS_BAD);
    CHECK_STR(err.fn, "C_Initialize");
    CHECK(strstr(err.msg, nss) != NULL);
    CHECK(strstr(err.msg, "x-init-reserved=") != NULL);
    CHECK(strstr(err.msg, "module-name=") != NULL);
    /* arguments that name a directory that is not there */
    m = hsm_module_load_init(nss, "configdir='sql:/nonexistent-hsmsh' certPrefix='' "
                             "keyPrefix='' secmod='secmod.db' flags=", &err);
    if (m) {
        hsm_module_unref(m);   /* NSS creating the database would also do */
    } else {
        CHECK(strstr(err.msg, "with the initialisation arguments") != NULL);
        CHECK(strstr(err.msg, nss) != NULL);
    }
}

int main(void)
{
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    test_lookup();
    test_uri();
    test_init_failure();
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
    return CHECK_DONE();
}
