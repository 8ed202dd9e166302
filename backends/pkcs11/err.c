/* err.c - filling an hsm_err. */
#include "hsm_p11.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void hsm_err_clear(hsm_err *e)
{
    if (!e)
        return;
    e->rv = CKR_OK;
    e->fn[0] = '\0';
    e->msg[0] = '\0';
}

int hsm_err_rv(hsm_err *e, const char *fn, CK_RV rv)
{
    char hex[32];
    if (!e)
        return -1;
    if (!fn)
        fn = "";
    e->rv = rv;
    snprintf(e->fn, sizeof e->fn, "%s", fn);
    snprintf(e->msg, sizeof e->msg, "%s: %s", fn, hsm_name_or_hex(HSM_NS_CKR, rv, hex, sizeof hex));
    return -1;
}

int hsm_err_set(hsm_err *e, const char *fmt, ...)
{
    va_list ap;
    if (!e)
        return -1;
    e->rv = CKR_OK;
    e->fn[0] = '\0';
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    return -1;
}
