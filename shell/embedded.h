/* embedded.h - the stdlib and recipe files compiled into the binary (see cmake/embed.cmake). */
#ifndef HSMSH_EMBEDDED_H
#define HSMSH_EMBEDDED_H
#include <stddef.h>

struct hsm_embedded {
    const char *path;           /* relative to the source tree: "stdlib/hsm/ui.lua" */
    const unsigned char *data;
    size_t len;
};
extern const struct hsm_embedded hsm_embedded_files[];   /* ends with a NULL path */

#endif
