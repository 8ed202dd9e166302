/* session.c - sessions and login: one attempt per call, never against a locked PIN. */
#include <string.h>

#include "hsm_p11.h"

int hsm_session_open(hsm_module *m, CK_SLOT_ID slot, int rw, hsm_session *out, hsm_err *err)
{
    memset(out, 0, sizeof *out);
    CK_FLAGS flags = CKF_SERIAL_SESSION | (rw ? CKF_RW_SESSION : 0);
    CK_RV rv = hsm_module_functions(m)->C_OpenSession(slot, flags, NULL, NULL, &out->h);
    if (rv != CKR_OK)
        return hsm_err_rv(err, "C_OpenSession", rv);
    out->module = hsm_module_ref(m);
    out->slot = slot;
    out->open = 1;
    return 0;
}

int hsm_session_close(hsm_session *s, hsm_err *err)
{
    if (!s->open)
        return 0;
    CK_RV rv = hsm_module_functions(s->module)->C_CloseSession(s->h);
    s->open = 0;
    hsm_module_unref(s->module);
    s->module = NULL;
    /* A session the module already dropped is closed all the same. */
    if (rv != CKR_OK && rv != CKR_SESSION_HANDLE_INVALID && rv != CKR_SESSION_CLOSED &&
        rv != CKR_CRYPTOKI_NOT_INITIALIZED)
        return hsm_err_rv(err, "C_CloseSession", rv);
    return 0;
}

int hsm_session_info(hsm_session *s, CK_SESSION_INFO *out, hsm_err *err)
{
    CK_RV rv = hsm_module_functions(s->module)->C_GetSessionInfo(s->h, out);
    return rv == CKR_OK ? 0 : hsm_err_rv(err, "C_GetSessionInfo", rv);
}

int hsm_login(hsm_session *s, CK_USER_TYPE who, const unsigned char *pin, size_t len,
              int *final_try, hsm_err *err)
{
    CK_TOKEN_INFO ti;
    char label[33];
    *final_try = 0;
    if (hsm_token_info(s->module, s->slot, &ti, err) != 0)
        return -1;
    hsm_field(ti.label, sizeof ti.label, label, sizeof label);
    CK_FLAGS locked = who == CKU_SO ? CKF_SO_PIN_LOCKED : CKF_USER_PIN_LOCKED;
    CK_FLAGS last = who == CKU_SO ? CKF_SO_PIN_FINAL_TRY : CKF_USER_PIN_FINAL_TRY;
    if (ti.flags & locked)
        return hsm_err_set(err, "the %s PIN of token \"%s\" is locked: not trying to log in "
                           "(the security officer must reset it)", who == CKU_SO ? "SO" : "user", label);
    if (who == CKU_USER && !(ti.flags & CKF_USER_PIN_INITIALIZED))
        return hsm_err_set(err, "token \"%s\" has no user PIN yet (initialize it first)", label);
    *final_try = (ti.flags & last) != 0;
    CK_RV rv = hsm_module_functions(s->module)->C_Login(s->h, who, (CK_UTF8CHAR *)pin, len);
    if (rv == CKR_USER_ALREADY_LOGGED_IN)
        return 0;
    return rv == CKR_OK ? 0 : hsm_err_rv(err, "C_Login", rv);
}

int hsm_logout(hsm_session *s, hsm_err *err)
{
    CK_RV rv = hsm_module_functions(s->module)->C_Logout(s->h);
    return rv == CKR_OK || rv == CKR_USER_NOT_LOGGED_IN ? 0 : hsm_err_rv(err, "C_Logout", rv);
}

int hsm_init_pin(hsm_session *s, const unsigned char *pin, size_t len, hsm_err *err)
{
    CK_RV rv = hsm_module_functions(s->module)->C_InitPIN(s->h, (CK_UTF8CHAR *)pin, len);
    return rv == CKR_OK ? 0 : hsm_err_rv(err, "C_InitPIN", rv);
}
