/* hsm_softhsm2.h - SoftHSM2, the embedded default module: where its library is, where the
 * hsmsh lab lives, and its quirks. Pure C, no Lua. */
#ifndef HSM_SOFTHSM2_H
#define HSM_SOFTHSM2_H
#include <stddef.h>

/* Path of the installed libsofthsm2.so, or NULL when none is found. */
const char *hsm_softhsm2_library(void);
/* True when path names a SoftHSM2 library. */
int hsm_softhsm2_is(const char *path);
/* The lab directory: $XDG_DATA_HOME/hsmsh/lab or ~/.local/share/hsmsh/lab. */
const char *hsm_softhsm2_lab_dir(char *buf, size_t buflen);
/* Before SoftHSM2 is initialized: an explicit SOFTHSM2_CONF always wins; without one, the
 * lab's softhsm2.conf is used when the lab exists. */
void hsm_softhsm2_prepare_env(void);
/* Makes this process's SoftHSM2 read the configuration at path (before it is loaded). */
void hsm_softhsm2_use_conf(const char *path);

#endif
