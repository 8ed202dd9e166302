/* cert_info.c - certificate information and inspection. See hsm_ossl.h. */
#include "ossl_int.h"

/* ------------------------------------------------------------------ certificate info */

int hsm_ossl_name_out(const X509_NAME *nm, char *dst, size_t dlen, const char *what, hsm_err *err)
{
    if (!dst)
        return 0;
    BIO *b = BIO_new(BIO_s_mem());
    if (!b)
        return hsm_ossl_nomem(err);
    int rc;
    /* RFC 2253, one line, UTF-8 left as is (specials and controls escaped) */
    if (X509_NAME_print_ex(b, nm, 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB) < 0) {
        rc = hsm_ossl_ofail(err, "cannot print the certificate %s", what);
    } else {
        char *p = NULL;
        long n = BIO_get_mem_data(b, &p);
        rc = hsm_ossl_str_out(dst, dlen, n > 0 ? p : "", n > 0 ? (size_t)n : 0, what, err);
    }
    BIO_free(b);
    return rc;
}

int hsm_cert_info(const unsigned char *der, size_t len, char *subject, size_t slen,
                  char *issuer, size_t ilen, char *not_after, size_t nalen, hsm_err *err)
{
    X509 *x = hsm_ossl_cert_parse(der, len, err);
    if (!x)
        return -1;
    int rc = -1;
    if (hsm_ossl_name_out(X509_get_subject_name(x), subject, slen, "subject", err) < 0
        || hsm_ossl_name_out(X509_get_issuer_name(x), issuer, ilen, "issuer", err) < 0)
        goto out;
    if (not_after) {
        struct tm tm;
        char buf[32];
        if (!ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm)) {
            hsm_ossl_ofail(err, "certificate notAfter is not a valid time");
            goto out;
        }
        int n = snprintf(buf, sizeof buf, "%04d-%02d-%02d", tm.tm_year + 1900, tm.tm_mon + 1,
                         tm.tm_mday);
        if (hsm_ossl_str_out(not_after, nalen, buf, (size_t)n, "notAfter", err) < 0)
            goto out;
    }
    rc = 0;
out:
    X509_free(x);
    return rc;
}

int hsm_cert_verify_self(const unsigned char *der, size_t len, hsm_err *err)
{
    X509 *x = hsm_ossl_cert_parse(der, len, err);
    if (!x)
        return -1;
    int rc = -1;
    EVP_PKEY *pk = X509_get0_pubkey(x);
    if (!pk)
        hsm_ossl_ofail(err, "the certificate's public key cannot be decoded");
    else if ((rc = X509_verify(x, pk)) == 1)
        rc = 0;
    else if (rc == 0)
        rc = hsm_ossl_fail(err, "certificate signature does not verify with its own public key");
    else
        rc = hsm_ossl_ofail(err, "cannot verify the certificate signature");
    X509_free(x);
    return rc;
}


int hsm_ossl_time_out(const ASN1_TIME *t, long long *out, const char *what, hsm_err *err)
{
    struct tm tm;
    if (!t || !ASN1_TIME_to_tm(t, &tm))
        return hsm_ossl_ofail(err, "certificate %s is not a valid time", what);
    *out = (long long)timegm(&tm);
    return 0;
}

/* "YYYY-MM-DD HH:MM:SS UTC" */
const char *hsm_ossl_fmt_time(long long t, char *buf, size_t len)
{
    time_t tt = (time_t)t;
    struct tm tm;
    if (!gmtime_r(&tt, &tm) || !strftime(buf, len, "%Y-%m-%d %H:%M:%S UTC", &tm))
        snprintf(buf, len, "%lld", t);
    return buf;
}

static int keyid_out(const ASN1_OCTET_STRING *id, unsigned char *dst, size_t cap, size_t *len)
{
    *len = 0;
    if (!id)
        return 0;
    int n = ASN1_STRING_length(id);
    if (n < 0 || (size_t)n > cap)
        return -1;
    memcpy(dst, ASN1_STRING_get0_data(id), (size_t)n);
    *len = (size_t)n;
    return 0;
}

void hsm_cert_details_free(hsm_cert_details *d)
{
    if (!d)
        return;
    free(d->spki);
    free(d->subject_der);
    free(d->issuer_der);
    d->spki = d->subject_der = d->issuer_der = NULL;
    d->spkilen = d->subject_derlen = d->issuer_derlen = 0;
}

int hsm_cert_inspect(const unsigned char *der, size_t len, hsm_cert_details *out, hsm_err *err)
{
    memset(out, 0, sizeof *out);
    out->pathlen = -1;
    X509 *x = hsm_ossl_cert_parse(der, len, err);
    if (!x)
        return -1;
    int rc = -1;
    BIGNUM *bn = NULL;
    char *hex = NULL;
    const X509_NAME *sn = X509_get_subject_name(x), *in = X509_get_issuer_name(x);
    if (hsm_ossl_name_out(sn, out->subject, sizeof out->subject, "subject", err) < 0
        || hsm_ossl_name_out(in, out->issuer, sizeof out->issuer, "issuer", err) < 0
        || hsm_ossl_attr_out(sn, NID_commonName, out->cn, sizeof out->cn, "common name", err) < 0
        || hsm_ossl_attr_out(sn, NID_organizationName, out->org, sizeof out->org, "organization", err) < 0
        || hsm_ossl_attr_out(sn, NID_serialNumber, out->subject_serial, sizeof out->subject_serial,
                    "serialNumber", err) < 0
        || hsm_ossl_attr_out(in, NID_commonName, out->issuer_cn, sizeof out->issuer_cn,
                    "issuer common name", err) < 0
        || hsm_ossl_time_out(X509_get0_notBefore(x), &out->not_before, "notBefore", err) < 0
        || hsm_ossl_time_out(X509_get0_notAfter(x), &out->not_after, "notAfter", err) < 0)
        goto out;

    if (!(bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL)) || !(hex = BN_bn2hex(bn))) {
        hsm_ossl_ofail(err, "cannot read the certificate serial number");
        goto out;
    }
    for (char *p = hex; *p; p++)
        if (*p >= 'A' && *p <= 'F')
            *p = (char)(*p + 32);
    if (hsm_ossl_str_out(out->serial, sizeof out->serial, hex, strlen(hex), "serial number", err) < 0)
        goto out;

    int sig_nid = X509_get_signature_nid(x);
    const char *sig_name = sig_nid != NID_undef ? OBJ_nid2ln(sig_nid) : NULL;
    if (sig_name) {
        snprintf(out->sig_alg, sizeof out->sig_alg, "%s", sig_name);
    } else {
        const X509_ALGOR *alg = NULL;
        const ASN1_OBJECT *oid = NULL;
        X509_get0_signature(NULL, &alg, x);
        X509_ALGOR_get0(&oid, NULL, NULL, alg);
        OBJ_obj2txt(out->sig_alg, sizeof out->sig_alg, oid, 1);
    }

    uint32_t xf = X509_get_extension_flags(x);
    out->is_ca = (xf & EXFLAG_CA) != 0;
    out->pathlen = out->is_ca ? (int)X509_get_pathlen(x) : -1;
    out->has_key_usage = (xf & EXFLAG_KUSAGE) != 0;
    out->key_usage = out->has_key_usage ? X509_get_key_usage(x) : 0;
    if (keyid_out(X509_get0_subject_key_id(x), out->ski, sizeof out->ski, &out->skilen) < 0
        || keyid_out(X509_get0_authority_key_id(x), out->aki, sizeof out->aki, &out->akilen) < 0) {
        hsm_ossl_fail(err, "certificate key identifier is longer than %zu bytes", sizeof out->ski);
        goto out;
    }
    if (hsm_ossl_xpub_der(X509_get_X509_PUBKEY(x), &out->spki, &out->spkilen, err) < 0
        || hsm_ossl_name_der(sn, &out->subject_der, &out->subject_derlen, err) < 0
        || hsm_ossl_name_der(in, &out->issuer_der, &out->issuer_derlen, err) < 0)
        goto out;
    rc = 0;
out:
    ERR_clear_error();
    OPENSSL_free(hex);
    BN_free(bn);
    if (rc < 0)
        hsm_cert_details_free(out);
    X509_free(x);
    return rc;
}

/* Why X509_verify_cert refused leaf under ca, as a sentence starting with the class of the
 * problem (see hsm_cert_verify_chain). */
