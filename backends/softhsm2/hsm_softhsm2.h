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
/* SoftHSM2's function list wrapped so that its file writes and every other hsmsh process's
 * calls exclude each other (guard.c says why); fl itself when that cannot be set up. */
struct _CK_FUNCTION_LIST;
struct _CK_FUNCTION_LIST *hsm_softhsm2_guard(struct _CK_FUNCTION_LIST *fl);

#endif
