/* ossl_util.c - errors, small helpers, DER pre-checks, certificate and SPKI parsing shared by
 * the others. See hsm_ossl.h. */
#include "ossl_int.h"

/* ------------------------------------------------------------------ errors */

/* Sets err from fmt; with_reason appends OpenSSL's last reason. Clears OpenSSL's queue. */
static int vfail(hsm_err *err, int with_reason, const char *fmt, va_list ap)
{
    char buf[400];
    vsnprintf(buf, sizeof buf, fmt, ap);
    const char *reason = NULL;
    if (with_reason) {   /* the first error is the innermost, most specific one */
        unsigned long e = ERR_peek_error();
        if (e)
            reason = ERR_reason_error_string(e);
    }
    ERR_clear_error();
    if (reason)
        return hsm_err_set(err, "%s (OpenSSL: %s)", buf, reason);
    return hsm_err_set(err, "%s", buf);
}

/* Our own failure. Returns -1. */
__attribute__((format(printf, 2, 3)))
int hsm_ossl_fail(hsm_err *err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = vfail(err, 0, fmt, ap);
    va_end(ap);
    return r;
}

/* A failure reported by OpenSSL: the sentence plus OpenSSL's reason. Returns -1. */
__attribute__((format(printf, 2, 3)))
int hsm_ossl_ofail(hsm_err *err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = vfail(err, 1, fmt, ap);
    va_end(ap);
    return r;
}

int hsm_ossl_nomem(hsm_err *err)
{
    return hsm_ossl_fail(err, "out of memory");
}

/* ------------------------------------------------------------------ small helpers */

int hsm_ossl_ascii_ieq(const char *a, const char *b)
{
    for (; *a && *b; a++, b++) {
        int ca = (*a >= 'A' && *a <= 'Z') ? *a + 32 : *a;
        int cb = (*b >= 'A' && *b <= 'Z') ? *b + 32 : *b;
        if (ca != cb)
            return 0;
    }
    return *a == *b;
}

/* Copies an OpenSSL-allocated buffer of n bytes into malloc'd memory. */
int hsm_ossl_dup_out(const unsigned char *src, size_t n, unsigned char **out, size_t *outlen,
                   hsm_err *err)
{
    unsigned char *p = malloc(n ? n : 1);
    if (!p)
        return hsm_ossl_nomem(err);
    if (n)
        memcpy(p, src, n);
    *out = p;
    *outlen = n;
    return 0;
}

int hsm_ossl_pubkey_der(EVP_PKEY *pk, unsigned char **der, size_t *derlen, hsm_err *err)
{
    unsigned char *buf = NULL;
    int n = i2d_PUBKEY(pk, &buf);
    if (n <= 0)
        return hsm_ossl_ofail(err, "cannot encode the SubjectPublicKeyInfo");
    int r = hsm_ossl_dup_out(buf, (size_t)n, der, derlen, err);
    OPENSSL_free(buf);
    return r;
}

int hsm_ossl_cert_der(X509 *x, unsigned char **der, size_t *derlen, hsm_err *err)
{
    unsigned char *buf = NULL;
    int n = i2d_X509(x, &buf);
    if (n <= 0)
        return hsm_ossl_ofail(err, "cannot encode the certificate");
    int r = hsm_ossl_dup_out(buf, (size_t)n, der, derlen, err);
    OPENSSL_free(buf);
    return r;
}

/* Copies a string of n bytes into dst (NUL-terminated); dst NULL skips it. */
int hsm_ossl_str_out(char *dst, size_t dlen, const char *src, size_t n, const char *what,
                   hsm_err *err)
{
    if (!dst)
        return 0;
    if (n + 1 > dlen)
        return hsm_ossl_fail(err, "%s (%zu bytes) does not fit in a %zu-byte buffer", what, n + 1, dlen);
    memcpy(dst, src, n);
    dst[n] = '\0';
    return 0;
}

/* Reads a DER tag and definite length at p[0..n): *hdr is the header size, *clen the
 * content length (which may run past n; callers compare). Returns -1 when malformed. */
int hsm_ossl_der_header(const unsigned char *p, size_t n, unsigned *tag, size_t *hdr, size_t *clen)
{
    if (n < 2 || (p[0] & 0x1f) == 0x1f)   /* high-tag-number form: not used here */
        return -1;
    *tag = p[0];
    if (p[1] < 0x80) {
        *hdr = 2;
        *clen = p[1];
        return 0;
    }
    size_t nb = p[1] & 0x7f;
    if (nb == 0 || nb > 4 || n < 2 + nb)  /* indefinite or absurd lengths */
        return -1;
    size_t len = 0;
    for (size_t i = 0; i < nb; i++)
        len = (len << 8) | p[2 + i];
    *hdr = 2 + nb;
    *clen = len;
    return 0;
}

/* The checks every DER input gets before it is parsed: present, not too large, not PEM. */
int hsm_ossl_der_precheck(const unsigned char *der, size_t len, const char *what, hsm_err *err)
{
    if (!der || len == 0)
        return hsm_ossl_fail(err, "%s is empty", what);
    if (len > LONG_MAX)
        return hsm_ossl_fail(err, "%s is too large (%zu bytes)", what, len);
    if (len >= 10 && memcmp(der, "-----BEGIN", 10) == 0)
        return hsm_ossl_fail(err, "%s is PEM text, not DER (decode it with hsm_pem_decode first)", what);
    return 0;
}

/* After parsing: the object must span exactly len bytes (end = where the parser stopped). */
int hsm_ossl_der_exact(const unsigned char *der, size_t len, const unsigned char *end,
                     const char *what, hsm_err *err)
{
    if (end == der + len)
        return 0;
    return hsm_ossl_fail(err, "%zu unexpected bytes after the DER %s", (size_t)(der + len - end), what);
}

/* Parses a DER certificate that must span exactly len bytes. */
X509 *hsm_ossl_cert_parse(const unsigned char *der, size_t len, hsm_err *err)
{
    if (hsm_ossl_der_precheck(der, len, "certificate", err) != 0)
        return NULL;
    const unsigned char *p = der;
    X509 *x = d2i_X509(NULL, &p, (long)len);
    if (!x) {
        hsm_ossl_ofail(err, "not a DER X.509 certificate");
        return NULL;
    }
    if (hsm_ossl_der_exact(der, len, p, "certificate", err) != 0) {
        X509_free(x);
        return NULL;
    }
    return x;
}

/* Parses a DER SubjectPublicKeyInfo that must span exactly len bytes into a usable key. */
EVP_PKEY *hsm_ossl_pubkey_parse(const unsigned char *spki, size_t len, hsm_err *err)
{
    if (!spki || len == 0) {
        hsm_ossl_fail(err, "SubjectPublicKeyInfo is empty");
        return NULL;
    }
    if (len > LONG_MAX) {
        hsm_ossl_fail(err, "SubjectPublicKeyInfo is too large (%zu bytes)", len);
        return NULL;
    }
    const unsigned char *p = spki;
    X509_PUBKEY *xp = d2i_X509_PUBKEY(NULL, &p, (long)len);
    if (!xp) {
        hsm_ossl_ofail(err, "not a DER SubjectPublicKeyInfo");
        return NULL;
    }
    if (p != spki + len) {
        X509_PUBKEY_free(xp);
        hsm_ossl_fail(err, "%zu unexpected bytes after the DER SubjectPublicKeyInfo",
             (size_t)(spki + len - p));
        return NULL;
    }
    EVP_PKEY *pk = X509_PUBKEY_get(xp);
    if (!pk) {
        ASN1_OBJECT *alg = NULL;
        char oid[80] = "?";
        if (X509_PUBKEY_get0_param(&alg, NULL, NULL, NULL, xp) && alg)
            OBJ_obj2txt(oid, sizeof oid, alg, 1);
        hsm_ossl_ofail(err, "SubjectPublicKeyInfo with algorithm %s cannot be decoded", oid);
    }
    X509_PUBKEY_free(xp);
    return pk;
}
