/* pem.c - PEM encoding and decoding. See hsm_ossl.h. */
#include "ossl_int.h"

/* ------------------------------------------------------------------ PEM */

/* RFC 7468 label: printable ASCII without '-', single inner spaces. */
static int pem_label_ok(const char *l)
{
    size_t n = l ? strlen(l) : 0;
    if (n == 0 || n > 64 || l[0] == ' ' || l[n - 1] == ' ')
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (l[i] < 0x20 || l[i] > 0x7e || l[i] == '-' || (l[i] == ' ' && l[i + 1] == ' '))
            return 0;
    }
    return 1;
}

int hsm_pem_encode(const char *label, const unsigned char *der, size_t len, char **pem,
                   hsm_err *err)
{
    if (!pem_label_ok(label))
        return hsm_ossl_fail(err, "PEM label \"%.80s\" is not 1 to 64 printable characters without '-'",
                    label ? label : "(null)");
    if (!der || len == 0)
        return hsm_ossl_fail(err, "nothing to PEM-encode");
    if (len > LONG_MAX / 2)
        return hsm_ossl_fail(err, "too large to PEM-encode (%zu bytes)", len);
    BIO *b = BIO_new(BIO_s_mem());
    if (!b)
        return hsm_ossl_nomem(err);
    int rc = -1;
    if (PEM_write_bio(b, label, "", der, (long)len) <= 0) {
        hsm_ossl_ofail(err, "PEM encoding failed");
    } else {
        char *p = NULL;
        long n = BIO_get_mem_data(b, &p);
        char *s = malloc((size_t)n + 1);
        if (!s) {
            hsm_ossl_nomem(err);
        } else {
            memcpy(s, p, (size_t)n);
            s[n] = '\0';
            *pem = s;
            rc = 0;
        }
    }
    BIO_free(b);
    return rc;
}

int hsm_pem_decode(const char *pem, size_t len, char *label_out, size_t lablen,
                   unsigned char **der, size_t *derlen, hsm_err *err)
{
    if (!pem || len == 0)
        return hsm_ossl_fail(err, "PEM text is empty");
    if (len > INT_MAX)
        return hsm_ossl_fail(err, "PEM text is too large (%zu bytes)", len);
    BIO *b = BIO_new_mem_buf(pem, (int)len);
    if (!b)
        return hsm_ossl_nomem(err);
    char *name = NULL, *header = NULL;
    unsigned char *data = NULL;
    long dlen = 0;
    int rc = -1;
    if (!PEM_read_bio(b, &name, &header, &data, &dlen)) {
        unsigned long e = ERR_peek_last_error();
        if (ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE)
            hsm_ossl_fail(err, "no PEM block (-----BEGIN ...-----) found");
        else
            hsm_ossl_ofail(err, "malformed PEM block");
    } else if (header && *header) {
        hsm_ossl_fail(err, "PEM block \"%.64s\" has headers (encrypted?); refused", name);
    } else if (dlen <= 0) {
        hsm_ossl_fail(err, "PEM block \"%.64s\" is empty", name);
    } else if (hsm_ossl_str_out(label_out, lablen, name, strlen(name), "PEM label", err) == 0) {
        rc = hsm_ossl_dup_out(data, (size_t)dlen, der, derlen, err);
    }
    OPENSSL_free(name);
    OPENSSL_free(header);
    OPENSSL_free(data);
    BIO_free(b);
    return rc;
}
