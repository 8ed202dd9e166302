/* crypto.c - key generation, single- and multi-part crypto, random, wrap, unwrap, derive. */
#include <stdlib.h>
#include <string.h>

#include "hsm_p11.h"

static CK_FUNCTION_LIST *F(hsm_session *s) { return hsm_module_functions(s->module); }

int hsm_generate_key(hsm_session *s, CK_MECHANISM *mech, const hsm_tmpl *t,
                     CK_OBJECT_HANDLE *out, hsm_err *err)
{
    CK_RV rv = F(s)->C_GenerateKey(s->h, mech, t->a, t->n, out);
    return rv == CKR_OK ? 0 : hsm_err_rv(err, "C_GenerateKey", rv);
}

int hsm_generate_key_pair(hsm_session *s, CK_MECHANISM *mech, const hsm_tmpl *pub,
                          const hsm_tmpl *priv, CK_OBJECT_HANDLE *pub_out,
                          CK_OBJECT_HANDLE *priv_out, hsm_err *err)
{
    CK_RV rv = F(s)->C_GenerateKeyPair(s->h, mech, pub->a, pub->n, priv->a, priv->n, pub_out,
                                       priv_out);
    return rv == CKR_OK ? 0 : hsm_err_rv(err, "C_GenerateKeyPair", rv);
}

typedef CK_RV (*init_fn)(CK_SESSION_HANDLE, CK_MECHANISM *, CK_OBJECT_HANDLE);
typedef CK_RV (*run_fn)(CK_SESSION_HANDLE, CK_BYTE *, CK_ULONG, CK_BYTE *, CK_ULONG *);

int hsm_crypt(hsm_session *s, hsm_op op, CK_MECHANISM *mech, CK_OBJECT_HANDLE key,
              const unsigned char *in, size_t inlen, const unsigned char *ctx_pin,
              size_t ctx_pin_len, unsigned char **out, size_t *outlen, hsm_err *err)
{
    static const char *const names[][2] = {
        {"C_EncryptInit", "C_Encrypt"}, {"C_DecryptInit", "C_Decrypt"},
        {"C_SignInit", "C_Sign"}, {"C_DigestInit", "C_Digest"}};
    CK_FUNCTION_LIST *f = F(s);
    run_fn run = op == HSM_OP_ENCRYPT ? f->C_Encrypt : op == HSM_OP_DECRYPT ? f->C_Decrypt
               : op == HSM_OP_SIGN ? f->C_Sign : f->C_Digest;
    CK_RV rv;
    if (op == HSM_OP_DIGEST)
        rv = f->C_DigestInit(s->h, mech);
    else {
        init_fn init = op == HSM_OP_ENCRYPT ? f->C_EncryptInit
                     : op == HSM_OP_DECRYPT ? f->C_DecryptInit : f->C_SignInit;
        rv = init(s->h, mech, key);
    }
    *out = NULL;
    *outlen = 0;
    if (rv != CKR_OK)
        return hsm_err_rv(err, names[op][0], rv);
    if (ctx_pin) {
        rv = f->C_Login(s->h, CKU_CONTEXT_SPECIFIC, (CK_UTF8CHAR *)ctx_pin, ctx_pin_len);
        if (rv != CKR_OK) {
            /* Without the context login the operation fails, which ends it (2.40 has no
             * cancel); otherwise the next Init would meet CKR_OPERATION_ACTIVE. */
            CK_ULONG ignored = 0;
            run(s->h, (CK_BYTE *)in, inlen, NULL, &ignored);
            return hsm_err_rv(err, "C_Login", rv);
        }
    }
    /* One call into a buffer that fits the usual output (padding, tag, an RSA-8192 signature);
     * on CKR_BUFFER_TOO_SMALL the operation stays active and is run again at the size the
     * module named. (A size query first would make some modules do the work twice.) */
    CK_ULONG len = inlen + 1024;
    unsigned char *buf = malloc(len);
    if (!buf) {
        run(s->h, NULL, 0, NULL, NULL);   /* ends the operation (fails, which is fine) */
        return hsm_err_set(err, "out of memory");
    }
    rv = run(s->h, (CK_BYTE *)in, inlen, buf, &len);
    if (rv == CKR_BUFFER_TOO_SMALL) {
        unsigned char *bigger = realloc(buf, len ? len : 1);
        if (!bigger) {
            free(buf);
            run(s->h, NULL, 0, NULL, NULL);
            return hsm_err_set(err, "out of memory");
        }
        buf = bigger;
        rv = run(s->h, (CK_BYTE *)in, inlen, buf, &len);
    }
    if (rv != CKR_OK) {
        free(buf);
        return hsm_err_rv(err, names[op][1], rv);
    }
    *out = buf;
    *outlen = len;
    return 0;
}

int hsm_verify(hsm_session *s, CK_MECHANISM *mech, CK_OBJECT_HANDLE key,
               const unsigned char *data, size_t dlen, const unsigned char *sig, size_t slen,
               hsm_err *err)
{
    CK_RV rv = F(s)->C_VerifyInit(s->h, mech, key);
    if (rv != CKR_OK)
        return hsm_err_rv(err, "C_VerifyInit", rv);
    rv = F(s)->C_Verify(s->h, (CK_BYTE *)data, dlen, (CK_BYTE *)sig, slen);
    if (rv == CKR_OK)
        return 1;
    if (rv == CKR_SIGNATURE_INVALID || rv == CKR_SIGNATURE_LEN_RANGE)
        return 0;
    return hsm_err_rv(err, "C_Verify", rv);
}

int hsm_sign_begin(hsm_session *s, CK_MECHANISM *mech, CK_OBJECT_HANDLE key, hsm_err *err)
{
    CK_RV rv = F(s)->C_SignInit(s->h, mech, key);
    return rv == CKR_OK ? 0 : hsm_err_rv(err, "C_SignInit", rv);
}

int hsm_sign_update(hsm_session *s, const unsigned char *data, size_t len, hsm_err *err)
{
    CK_RV rv = F(s)->C_SignUpdate(s->h, (CK_BYTE *)data, len);
    return rv == CKR_OK ? 0 : hsm_err_rv(err, "C_SignUpdate", rv);
}

int hsm_sign_end(hsm_session *s, unsigned char *out, size_t *outlen, hsm_err *err)
{
    CK_ULONG len = *outlen;
    CK_RV rv = F(s)->C_SignFinal(s->h, out, &len);
    *outlen = len;
    return rv == CKR_OK ? 0 : hsm_err_rv(err, "C_SignFinal", rv);
}

int hsm_verify_begin(hsm_session *s, CK_MECHANISM *mech, CK_OBJECT_HANDLE key, hsm_err *err)
{
    CK_RV rv = F(s)->C_VerifyInit(s->h, mech, key);
    return rv == CKR_OK ? 0 : hsm_err_rv(err, "C_VerifyInit", rv);
}

int hsm_verify_update(hsm_session *s, const unsigned char *data, size_t len, hsm_err *err)
{
    CK_RV rv = F(s)->C_VerifyUpdate(s->h, (CK_BYTE *)data, len);
    return rv == CKR_OK ? 0 : hsm_err_rv(err, "C_VerifyUpdate", rv);
}

int hsm_verify_end(hsm_session *s, const unsigned char *sig, size_t len, hsm_err *err)
{
    CK_RV rv = F(s)->C_VerifyFinal(s->h, (CK_BYTE *)sig, len);
    if (rv == CKR_OK)
        return 1;
    if (rv == CKR_SIGNATURE_INVALID || rv == CKR_SIGNATURE_LEN_RANGE)
        return 0;
    return hsm_err_rv(err, "C_VerifyFinal", rv);
}

int hsm_random(hsm_session *s, unsigned char *out, size_t n, hsm_err *err)
{
    CK_RV rv = F(s)->C_GenerateRandom(s->h, out, n);
    return rv == CKR_OK ? 0 : hsm_err_rv(err, "C_GenerateRandom", rv);
}

int hsm_wrap(hsm_session *s, CK_MECHANISM *mech, CK_OBJECT_HANDLE wrapping, CK_OBJECT_HANDLE key,
             unsigned char **out, size_t *outlen, hsm_err *err)
{
    *out = NULL;
    *outlen = 0;
    /* One call into a buffer that fits any symmetric key or a PKCS#8 key up to RSA-8192 or
     * so; the size query (which makes some modules wrap twice) only when it is too short. */
    CK_ULONG len = 4096;
    unsigned char *first = malloc(len);
    if (!first)
        return hsm_err_set(err, "out of memory");
    CK_RV rv = F(s)->C_WrapKey(s->h, mech, wrapping, key, first, &len);
    if (rv == CKR_OK) {
        *out = first;
        *outlen = len;
        return 0;
    }
    free(first);
    if (rv != CKR_BUFFER_TOO_SMALL)
        return hsm_err_rv(err, "C_WrapKey", rv);
    len = 0;
    rv = F(s)->C_WrapKey(s->h, mech, wrapping, key, NULL, &len);
    if (rv != CKR_OK)
        return hsm_err_rv(err, "C_WrapKey", rv);
    unsigned char *buf = malloc(len ? len : 1);
    if (!buf)
        return hsm_err_set(err, "out of memory");
    rv = F(s)->C_WrapKey(s->h, mech, wrapping, key, buf, &len);
    if (rv != CKR_OK) {
        free(buf);
        return hsm_err_rv(err, "C_WrapKey", rv);
    }
    *out = buf;
    *outlen = len;
    return 0;
}

int hsm_unwrap(hsm_session *s, CK_MECHANISM *mech, CK_OBJECT_HANDLE unwrapping,
               const unsigned char *blob, size_t bloblen, const hsm_tmpl *t,
               CK_OBJECT_HANDLE *out, hsm_err *err)
{
    CK_RV rv = F(s)->C_UnwrapKey(s->h, mech, unwrapping, (CK_BYTE *)blob, bloblen, t->a, t->n,
                                 out);
    return rv == CKR_OK ? 0 : hsm_err_rv(err, "C_UnwrapKey", rv);
}

int hsm_derive(hsm_session *s, CK_MECHANISM *mech, CK_OBJECT_HANDLE base, const hsm_tmpl *t,
               CK_OBJECT_HANDLE *out, hsm_err *err)
{
    CK_RV rv = F(s)->C_DeriveKey(s->h, mech, base, t->a, t->n, out);
    return rv == CKR_OK ? 0 : hsm_err_rv(err, "C_DeriveKey", rv);
}
