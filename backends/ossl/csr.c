/* csr.c - CSRs: building, parsing, names; the kind of a DER blob. See hsm_ossl.h. */
#include "ossl_int.h"

/* ------------------------------------------------------------------ CSRs, issued certificates, chains */

/* Prefixes the message in err with "<what>: " (for errors about one of several inputs). */
int hsm_ossl_prefix_err(hsm_err *err, const char *what)
{
    char msg[sizeof err->msg];
    snprintf(msg, sizeof msg, "%s", err->msg);
    return hsm_err_set(err, "%s: %s", what, msg);
}

hsm_der_kind hsm_der_kind_of(const unsigned char *der, size_t len)
{
    unsigned tag;
    size_t hdr, clen, h, c;
    /* SEQUENCE { SEQUENCE { first, second ... } ... } spanning exactly len bytes */
    if (!der || hsm_ossl_der_header(der, len, &tag, &hdr, &clen) < 0 || tag != 0x30 || hdr + clen != len)
        return HSM_DER_UNKNOWN;
    const unsigned char *p = der + hdr;
    if (hsm_ossl_der_header(p, clen, &tag, &h, &c) < 0 || tag != 0x30 || h + c > clen)
        return HSM_DER_UNKNOWN;
    const unsigned char *q = p + h;
    size_t n = c;
    if (hsm_ossl_der_header(q, n, &tag, &h, &c) < 0 || h + c > n)
        return HSM_DER_UNKNOWN;
    if (tag == 0x06)   /* AlgorithmIdentifier { OID ... }: a SubjectPublicKeyInfo */
        return HSM_DER_SPKI;
    if (tag == 0xa0)   /* TBSCertificate { [0] version ... } */
        return HSM_DER_CERT;
    if (tag != 0x02)
        return HSM_DER_UNKNOWN;
    /* INTEGER: a CSR's version or a v1 certificate's serial. Next comes the CSR's subject
     * Name (SEQUENCE OF SET) or the certificate's AlgorithmIdentifier (SEQUENCE { OID }). */
    q += h + c;
    n -= h + c;
    if (hsm_ossl_der_header(q, n, &tag, &h, &c) < 0 || tag != 0x30 || h + c > n)
        return HSM_DER_UNKNOWN;
    return c > 0 && q[h] == 0x06 ? HSM_DER_CERT : HSM_DER_CSR;
}

/* Builds O, CN, serialNumber. */
int hsm_ossl_name_build(const hsm_x509_name *nm, X509_NAME **out, hsm_err *err)
{
    *out = NULL;
    if (!nm || !nm->cn || !*nm->cn)
        return hsm_ossl_fail(err, "common name (CN) is empty");
    X509_NAME *n = X509_NAME_new();
    if (!n)
        return hsm_ossl_nomem(err);
    if (nm->org && *nm->org
        && !X509_NAME_add_entry_by_NID(n, NID_organizationName, MBSTRING_UTF8,
                                       (const unsigned char *)nm->org, -1, -1, 0)) {
        hsm_ossl_ofail(err, "organization (O) \"%.80s\" is not 1 to 64 characters of UTF-8", nm->org);
        goto bad;
    }
    if (!X509_NAME_add_entry_by_NID(n, NID_commonName, MBSTRING_UTF8,
                                    (const unsigned char *)nm->cn, -1, -1, 0)) {
        hsm_ossl_ofail(err, "common name \"%.80s\" is not 1 to 64 characters of UTF-8", nm->cn);
        goto bad;
    }
    /* serialNumber is a PrintableString (RFC 5280 appendix A.1): OpenSSL refuses others */
    if (nm->serial && *nm->serial
        && !X509_NAME_add_entry_by_NID(n, NID_serialNumber, MBSTRING_UTF8,
                                       (const unsigned char *)nm->serial, -1, -1, 0)) {
        hsm_ossl_ofail(err, "serialNumber \"%.80s\" is not 1 to 64 PrintableString characters "
                   "(letters, digits, space and '()+,-./:=?)", nm->serial);
        goto bad;
    }
    *out = n;
    return 0;
bad:
    X509_NAME_free(n);
    return -1;
}

/* The value of the last nid attribute of nm, as UTF-8, into dst ("" when there is none). */
int hsm_ossl_attr_out(const X509_NAME *nm, int nid, char *dst, size_t dlen, const char *what,
                    hsm_err *err)
{
    int idx = -1;
    for (int i = -1; (i = X509_NAME_get_index_by_NID(nm, nid, i)) >= 0;)
        idx = i;
    if (idx < 0)
        return hsm_ossl_str_out(dst, dlen, "", 0, what, err);
    unsigned char *u = NULL;
    int n = ASN1_STRING_to_UTF8(&u, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(nm, idx)));
    if (n < 0)
        return hsm_ossl_ofail(err, "the %s cannot be converted to UTF-8", what);
    int rc = memchr(u, 0, (size_t)n) ? hsm_ossl_fail(err, "the %s contains a NUL byte", what)
                                     : hsm_ossl_str_out(dst, dlen, (const char *)u, (size_t)n, what, err);
    OPENSSL_free(u);
    return rc;
}

/* Parses a DER PKCS#10 request that must span exactly len bytes. */
X509_REQ *hsm_ossl_csr_parse(const unsigned char *der, size_t len, hsm_err *err)
{
    if (hsm_ossl_der_precheck(der, len, "certificate request", err) != 0)
        return NULL;
    const unsigned char *p = der;
    X509_REQ *r = d2i_X509_REQ(NULL, &p, (long)len);
    if (!r) {
        hsm_ossl_ofail(err, "not a DER PKCS#10 certificate request");
        return NULL;
    }
    if (hsm_ossl_der_exact(der, len, p, "certificate request", err) != 0) {
        X509_REQ_free(r);
        return NULL;
    }
    return r;
}

/* DER of a certificate's or request's X509_PUBKEY into malloc'd memory. */
int hsm_ossl_xpub_der(X509_PUBKEY *xp, unsigned char **der, size_t *derlen, hsm_err *err)
{
    unsigned char *buf = NULL;
    int n = xp ? i2d_X509_PUBKEY(xp, &buf) : -1;
    int rc = n > 0 ? hsm_ossl_dup_out(buf, (size_t)n, der, derlen, err)
                   : hsm_ossl_ofail(err, "cannot encode the SubjectPublicKeyInfo");
    OPENSSL_free(buf);
    return rc;
}

/* The DER encoding of a name (for CKA_SUBJECT / CKA_ISSUER), malloc'd. */
int hsm_ossl_name_der(const X509_NAME *name, unsigned char **der, size_t *derlen, hsm_err *err)
{
    unsigned char *buf = NULL;
    int n = i2d_X509_NAME(name, &buf);
    int rc = n > 0 ? hsm_ossl_dup_out(buf, (size_t)n, der, derlen, err)
                   : hsm_ossl_ofail(err, "cannot encode a certificate name");
    OPENSSL_free(buf);
    return rc;
}

int hsm_csr_build(const hsm_x509_name *subject, const unsigned char *spki, size_t spkilen,
                  const char *hash, hsm_raw_signer sign, void *ctx, unsigned char **der,
                  size_t *derlen, hsm_err *err)
{
    if (!sign)
        return hsm_ossl_fail(err, "no signer given");
    if (!der || !derlen)
        return hsm_ossl_fail(err, "no output given");

    int rc = -1;
    X509_NAME *name = NULL;
    X509_REQ *req = NULL, *back = NULL;
    unsigned char *tbs = NULL, *sig = NULL, *buf = NULL;
    size_t siglen = 0;
    sig_alg sa;
    EVP_PKEY *pk = hsm_ossl_pubkey_parse(spki, spkilen, err);
    if (!pk || hsm_ossl_sig_alg_for(pk, hash, &sa, err) < 0 || hsm_ossl_name_build(subject, &name, err) < 0)
        goto out;
    if (!(req = X509_REQ_new())) {
        hsm_ossl_nomem(err);
        goto out;
    }
    if (!X509_REQ_set_version(req, X509_REQ_VERSION_1) || !X509_REQ_set_subject_name(req, name)
        || !X509_REQ_set_pubkey(req, pk)) {
        hsm_ossl_ofail(err, "cannot fill the certificate request");
        goto out;
    }

    /* sign the CertificationRequestInfo through the HSM, as hsm_ossl_x509_sign_raw does for certificates */
    const ASN1_BIT_STRING *csig = NULL;
    const X509_ALGOR *calg = NULL;
    X509_REQ_get0_signature(req, &csig, &calg);
    if (hsm_ossl_set_algor((X509_ALGOR *)calg, &sa) < 0) {
        hsm_ossl_ofail(err, "cannot set the signature algorithm");
        goto out;
    }
    int tbslen = i2d_re_X509_REQ_tbs(req, &tbs);
    if (tbslen <= 0) {
        hsm_ossl_ofail(err, "cannot encode the CertificationRequestInfo");
        goto out;
    }
    if (hsm_ossl_sign_tbs(&sa, tbs, (size_t)tbslen, sign, ctx, &sig, &siglen, err) < 0
        || hsm_ossl_set_signature((ASN1_BIT_STRING *)csig, sig, siglen, err) < 0)
        goto out;
    int n = i2d_X509_REQ(req, &buf);
    if (n <= 0) {
        hsm_ossl_ofail(err, "cannot encode the certificate request");
        goto out;
    }

    /* The HSM signed it: check it really was the key of spki before handing it out. */
    if (!(back = hsm_ossl_csr_parse(buf, (size_t)n, err)))
        goto out;
    int v = X509_REQ_verify(back, pk);
    if (v != 1) {
        if (v == 0)
            hsm_ossl_fail(err, "the signer's signature does not verify with the request's public key "
                      "(wrong key or mechanism?)");
        else
            hsm_ossl_ofail(err, "cannot verify the signer's signature");
        goto out;
    }
    rc = hsm_ossl_dup_out(buf, (size_t)n, der, derlen, err);
out:
    OPENSSL_free(buf);
    OPENSSL_free(tbs);
    free(sig);
    X509_REQ_free(back);
    X509_REQ_free(req);
    X509_NAME_free(name);
    EVP_PKEY_free(pk);
    return rc;
}

void hsm_csr_details_free(hsm_csr_details *d)
{
    if (!d)
        return;
    free(d->spki);
    d->spki = NULL;
    d->spkilen = 0;
}

int hsm_csr_info(const unsigned char *der, size_t len, hsm_csr_details *out, hsm_err *err)
{
    memset(out, 0, sizeof *out);
    X509_REQ *req = hsm_ossl_csr_parse(der, len, err);
    if (!req)
        return -1;
    int rc = -1;
    const X509_NAME *nm = X509_REQ_get_subject_name(req);
    if (hsm_ossl_name_out(nm, out->subject, sizeof out->subject, "subject", err) < 0
        || hsm_ossl_attr_out(nm, NID_commonName, out->cn, sizeof out->cn, "common name", err) < 0
        || hsm_ossl_attr_out(nm, NID_serialNumber, out->serial, sizeof out->serial, "serialNumber", err) < 0
        || hsm_ossl_attr_out(nm, NID_organizationName, out->org, sizeof out->org, "organization", err) < 0
        || hsm_ossl_xpub_der(X509_REQ_get_X509_PUBKEY(req), &out->spki, &out->spkilen, err) < 0)
        goto out;

    EVP_PKEY *pk = X509_REQ_get0_pubkey(req);
    int v = pk ? X509_REQ_verify(req, pk) : -1;
    out->valid = v == 1;
    if (!pk)
        snprintf(out->why, sizeof out->why, "its public key cannot be decoded");
    else if (v == 0)
        snprintf(out->why, sizeof out->why, "its signature does not verify with the public key "
                 "it names (altered, or signed by another key)");
    else if (v < 0)
        snprintf(out->why, sizeof out->why, "its signature cannot be checked (malformed or "
                 "unsupported signature)");
    ERR_clear_error();
    rc = 0;
out:
    if (rc < 0)
        hsm_csr_details_free(out);
    X509_REQ_free(req);
    return rc;
}

/* Checks the caller's options; *serial and *serial_len get the serial without leading zeros. */
