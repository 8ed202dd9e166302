/* cert_issue.c - issued and CA certificates. See hsm_ossl.h. */
#include "ossl_int.h"

static int opts_check(const hsm_cert_opts *o, const unsigned char **serial, size_t *serial_len,
                      hsm_err *err)
{
    if (!o)
        return hsm_ossl_fail(err, "no certificate options given");
    if (o->days < 1 || o->days > INT_MAX)
        return hsm_ossl_fail(err, "certificate validity must be at least 1 day (got %ld)", o->days);
    *serial = NULL;
    *serial_len = 0;
    if (o->serial) {
        const unsigned char *p = o->serial;
        size_t n = o->serial_len;
        while (n > 0 && *p == 0) {
            p++;
            n--;
        }
        if (n == 0)
            return hsm_ossl_fail(err, "certificate serial number must be positive (it is zero or empty)");
        if (n > 20 || (n == 20 && (p[0] & 0x80)))
            return hsm_ossl_fail(err, "certificate serial number is too long: RFC 5280 allows at most "
                             "20 octets (159 bits)");
        *serial = p;
        *serial_len = n;
    }
    return 0;
}

/* keyUsage of an end-entity (identity) certificate for key: EC keys sign and agree keys. */
static int ee_key_usage(EVP_PKEY *key)
{
    switch (EVP_PKEY_get_base_id(key)) {
    case EVP_PKEY_EC:
        return KU_DIGITAL_SIGNATURE | KU_KEY_AGREEMENT;
    case EVP_PKEY_X25519: case EVP_PKEY_X448:
        return KU_KEY_AGREEMENT;
    default:
        return KU_DIGITAL_SIGNATURE;
    }
}

/* Signs x through the raw signer, encodes it and checks the signature with key (the public key
 * that must have made it; whose names it in the message) before handing out the DER. */
static int cert_finish(X509 *x, const sig_alg *sa, hsm_raw_signer sign, void *ctx,
                       EVP_PKEY *key, const char *whose, unsigned char **der, size_t *derlen,
                       hsm_err *err)
{
    unsigned char *out = NULL;
    size_t outlen = 0;
    X509 *back = NULL;
    int rc = -1;
    if (hsm_ossl_x509_sign_raw(x, sa, sign, ctx, err) < 0 || hsm_ossl_cert_der(x, &out, &outlen, err) < 0
        || !(back = hsm_ossl_cert_parse(out, outlen, err)))
        goto out;
    int v = X509_verify(back, key);
    if (v != 1) {
        if (v == 0)
            hsm_ossl_fail(err, "the signer's signature does not verify with %s", whose);
        else
            hsm_ossl_ofail(err, "cannot verify the signer's signature");
        goto out;
    }
    *der = out;
    *derlen = outlen;
    out = NULL;
    rc = 0;
out:
    free(out);
    X509_free(back);
    return rc;
}

int hsm_x509_self_signed_ex(const unsigned char *spki, size_t spkilen,
                            const hsm_x509_name *subject, const hsm_cert_opts *opts,
                            hsm_raw_signer sign, void *ctx, unsigned char **der, size_t *derlen,
                            hsm_err *err)
{
    const unsigned char *serial;
    size_t serial_len;
    if (!sign)
        return hsm_ossl_fail(err, "no signer given");
    if (!der || !derlen)
        return hsm_ossl_fail(err, "no output given");
    if (opts_check(opts, &serial, &serial_len, err) < 0)
        return -1;

    int rc = -1;
    X509_NAME *name = NULL;
    X509 *x = NULL;
    sig_alg sa;
    EVP_PKEY *pk = hsm_ossl_pubkey_parse(spki, spkilen, err);
    if (!pk || hsm_ossl_sig_alg_for(pk, opts->hash, &sa, err) < 0 || hsm_ossl_name_build(subject, &name, err) < 0)
        goto out;
    cert_spec cs = {
        .subject_key = pk, .subject = name, .issuer = name, .days = opts->days,
        .ca = opts->ca != 0,
        .key_usage = opts->ca ? KU_KEY_CERT_SIGN | KU_CRL_SIGN : ee_key_usage(pk),
        .serial = serial, .serial_len = serial_len, .not_before = opts->not_before,
        .pathlen = opts->pathlen, .akid_mode = AKID_SELF,
    };
    if ((x = hsm_ossl_cert_build(&cs, err)))
        rc = cert_finish(x, &sa, sign, ctx, pk, "the certificate's public key (wrong key or "
                         "mechanism?)", der, derlen, err);
out:
    X509_free(x);
    X509_NAME_free(name);
    EVP_PKEY_free(pk);
    return rc;
}

int hsm_cert_issue(const hsm_cert_subject *subj, const unsigned char *issuer, size_t issuerlen,
                   const hsm_cert_opts *opts, hsm_raw_signer sign, void *ctx,
                   unsigned char **der, size_t *derlen, hsm_err *err)
{
    const unsigned char *serial;
    size_t serial_len;
    if (!subj || (!subj->csr && !subj->spki))
        return hsm_ossl_fail(err, "no certificate request or SubjectPublicKeyInfo given");
    if (!sign)
        return hsm_ossl_fail(err, "no signer given");
    if (!der || !derlen)
        return hsm_ossl_fail(err, "no output given");
    if (opts_check(opts, &serial, &serial_len, err) < 0)
        return -1;

    int rc = -1;
    X509 *ix = NULL, *x = NULL;
    X509_REQ *req = NULL;
    X509_NAME *name = NULL;
    EVP_PKEY *spk = NULL;
    ASN1_OCTET_STRING *kid = NULL;
    sig_alg sa;
    char iname[256] = "";

    /* the issuer: a CA that may sign this kind of certificate */
    if (!(ix = hsm_ossl_cert_parse(issuer, issuerlen, err))) {
        hsm_ossl_prefix_err(err, "issuer certificate");
        goto out;
    }
    hsm_ossl_name_out(X509_get_subject_name(ix), iname, sizeof iname, "issuer", err);   /* best effort */
    uint32_t xf = X509_get_extension_flags(ix);
    if (X509_check_ca(ix) != 1) {
        if ((xf & EXFLAG_KUSAGE) && !(X509_get_key_usage(ix) & KU_KEY_CERT_SIGN))
            hsm_ossl_fail(err, "the issuer certificate \"%s\" is not a CA: its keyUsage lacks keyCertSign",
                 iname);
        else
            hsm_ossl_fail(err, "the issuer certificate \"%s\" is not a CA (no basicConstraints CA:TRUE)",
                 iname);
        goto out;
    }
    if (opts->ca && X509_get_pathlen(ix) == 0) {
        hsm_ossl_fail(err, "the issuer \"%s\" has pathlen:0: it may certify end entities only, not "
                  "another CA", iname);
        goto out;
    }
    EVP_PKEY *ipk = X509_get0_pubkey(ix);
    if (!ipk) {
        hsm_ossl_ofail(err, "the issuer certificate's public key cannot be decoded");
        goto out;
    }
    if (hsm_ossl_sig_alg_for(ipk, opts->hash, &sa, err) < 0)
        goto out;

    /* the subject: from a CSR whose signature verifies, or a bare key and name */
    const X509_NAME *subject = NULL;
    if (subj->csr) {
        if (!(req = hsm_ossl_csr_parse(subj->csr, subj->csrlen, err)))
            goto out;
        if (!(spk = X509_REQ_get_pubkey(req))) {
            hsm_ossl_ofail(err, "the certificate request's public key cannot be decoded");
            goto out;
        }
        if (X509_REQ_verify(req, spk) != 1) {
            hsm_ossl_fail(err, "the certificate request's signature does not verify with the public key it "
                      "names (altered, or signed by another key); refused");
            goto out;
        }
        if (subj->name.cn) {
            if (hsm_ossl_name_build(&subj->name, &name, err) < 0)
                goto out;
            subject = name;
        } else {
            subject = X509_REQ_get_subject_name(req);
            if (X509_NAME_entry_count(subject) == 0) {
                hsm_ossl_fail(err, "the certificate request has an empty subject; give a common name");
                goto out;
            }
        }
    } else {
        if (!subj->name.cn || !*subj->name.cn) {
            hsm_ossl_fail(err, "a certificate for a bare SubjectPublicKeyInfo needs a subject common "
                      "name (CN)");
            goto out;
        }
        if (!(spk = hsm_ossl_pubkey_parse(subj->spki, subj->spkilen, err))
            || hsm_ossl_name_build(&subj->name, &name, err) < 0)
            goto out;
        subject = name;
    }

    /* authorityKeyIdentifier = the issuer's subjectKeyIdentifier, or its RFC 5280 method (1) */
    const ASN1_OCTET_STRING *ikid = X509_get0_subject_key_id(ix);
    if (!ikid) {
        unsigned char id[EVP_MAX_MD_SIZE];
        unsigned int idlen = 0;
        if (!X509_pubkey_digest(ix, EVP_sha1(), id, &idlen)) {
            hsm_ossl_ofail(err, "cannot compute the issuer's key identifier");
            goto out;
        }
        if (!(kid = ASN1_OCTET_STRING_new()) || !ASN1_OCTET_STRING_set(kid, id, (int)idlen)) {
            hsm_ossl_nomem(err);
            goto out;
        }
        ikid = kid;
    }

    cert_spec cs = {
        .subject_key = spk, .subject = subject, .issuer = X509_get_subject_name(ix),
        .days = opts->days, .ca = opts->ca != 0,
        .key_usage = opts->ca ? KU_KEY_CERT_SIGN | KU_CRL_SIGN : ee_key_usage(spk),
        .serial = serial, .serial_len = serial_len, .not_before = opts->not_before,
        .pathlen = opts->pathlen, .akid_mode = AKID_GIVEN, .akid = ikid,
    };
    if ((x = hsm_ossl_cert_build(&cs, err)))
        rc = cert_finish(x, &sa, sign, ctx, ipk, "the issuer certificate's public key (is the "
                         "signer the issuer's private key?)", der, derlen, err);
out:
    ERR_clear_error();
    ASN1_OCTET_STRING_free(kid);
    EVP_PKEY_free(spk);
    X509_NAME_free(name);
    X509_REQ_free(req);
    X509_free(x);
    X509_free(ix);
    return rc;
}

/* ASN1_TIME as unix time. */
