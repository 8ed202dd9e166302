/* softhsm2.c - library discovery and the lab's configuration for SoftHSM2. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hsm_softhsm2.h"

static const char *const candidates[] = {
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
    "/usr/lib64/pkcs11/libsofthsm2.so",
    "/usr/lib/pkcs11/libsofthsm2.so",
    NULL,
};

const char *hsm_softhsm2_library(void)
{
    for (int i = 0; candidates[i]; i++)
        if (access(candidates[i], R_OK) == 0)
            return candidates[i];
    return NULL;
}

int hsm_softhsm2_is(const char *path)
{
    return path && strstr(path, "libsofthsm2") != NULL;
}

const char *hsm_softhsm2_lab_dir(char *buf, size_t buflen)
{
    const char *xdg = getenv("XDG_DATA_HOME");
    const char *home = getenv("HOME");
    if (xdg && *xdg)
        snprintf(buf, buflen, "%s/hsmsh/lab", xdg);
    else
        snprintf(buf, buflen, "%s/.local/share/hsmsh/lab", home && *home ? home : "/tmp");
    return buf;
}

void hsm_softhsm2_prepare_env(void)
{
    const char *conf = getenv("SOFTHSM2_CONF");
    if (conf && *conf)
        return;
    char dir[4096], path[4200];
    snprintf(path, sizeof path, "%s/softhsm2.conf", hsm_softhsm2_lab_dir(dir, sizeof dir));
    if (access(path, R_OK) == 0)
        setenv("SOFTHSM2_CONF", path, 1);
}

void hsm_softhsm2_use_conf(const char *path)
{
    setenv("SOFTHSM2_CONF", path, 1);
}
