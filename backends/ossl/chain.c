/* chain.c - chain verification naming why. See hsm_ossl.h. */
#include "ossl_int.h"

static int chain_fail(X509_STORE_CTX *sc, X509 *leaf, X509 *ca, long long at, hsm_err *err)
{
    int e = X509_STORE_CTX_get_error(sc);
    X509 *cur = X509_STORE_CTX_get_current_cert(sc);
    int is_ca = cur && X509_cmp(cur, ca) == 0 && X509_cmp(leaf, ca) != 0;
    const char *which = is_ca ? "the CA certificate" : "the certificate";
    char lname[200] = "?", cname[200] = "?", iname[200] = "?", t1[40], t2[40];
    hsm_ossl_name_out(X509_get_subject_name(leaf), lname, sizeof lname, "subject", err);
    hsm_ossl_name_out(X509_get_subject_name(ca), cname, sizeof cname, "subject", err);
    hsm_ossl_name_out(X509_get_issuer_name(leaf), iname, sizeof iname, "issuer", err);
    long long when = 0;
    hsm_ossl_fmt_time(at, t2, sizeof t2);

    switch (e) {
    case X509_V_ERR_CERT_SIGNATURE_FAILURE:
        if (is_ca)
            return hsm_ossl_fail(err, "signature: the CA certificate \"%s\" is self-signed but its "
                             "signature does not verify (altered?)", cname);
        return hsm_ossl_fail(err, "signature: the certificate \"%s\" is not signed by the CA \"%s\" "
                         "(its signature does not verify with the CA's public key)", lname, cname);
    case X509_V_ERR_UNABLE_TO_DECRYPT_CERT_SIGNATURE:
    case X509_V_ERR_UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY:
        return hsm_ossl_fail(err, "signature: %s's signature cannot be checked (%s)", which,
                    X509_verify_cert_error_string(e));
    case X509_V_ERR_CERT_HAS_EXPIRED:
        if (cur && hsm_ossl_time_out(X509_get0_notAfter(cur), &when, "notAfter", err) == 0)
            hsm_ossl_fmt_time(when, t1, sizeof t1);
        else
            snprintf(t1, sizeof t1, "?");
        return hsm_ossl_fail(err, "expired: %s \"%s\" expired at %s (checked at %s)", which,
                    is_ca ? cname : lname, t1, t2);
    case X509_V_ERR_CERT_NOT_YET_VALID:
        if (cur && hsm_ossl_time_out(X509_get0_notBefore(cur), &when, "notBefore", err) == 0)
            hsm_ossl_fmt_time(when, t1, sizeof t1);
        else
            snprintf(t1, sizeof t1, "?");
        return hsm_ossl_fail(err, "not yet valid: %s \"%s\" is valid from %s (checked at %s)", which,
                    is_ca ? cname : lname, t1, t2);
    case X509_V_ERR_INVALID_CA:
    case X509_V_ERR_KEYUSAGE_NO_CERTSIGN: {
        uint32_t xf = X509_get_extension_flags(ca);
        if ((xf & EXFLAG_KUSAGE) && !(X509_get_key_usage(ca) & KU_KEY_CERT_SIGN) && (xf & EXFLAG_CA))
            return hsm_ossl_fail(err, "not a CA: \"%s\" has basicConstraints CA:TRUE but its keyUsage "
                             "lacks keyCertSign", cname);
        return hsm_ossl_fail(err, "not a CA: \"%s\" has no basicConstraints CA:TRUE%s", cname,
                    (xf & EXFLAG_KUSAGE) && !(X509_get_key_usage(ca) & KU_KEY_CERT_SIGN)
                    ? " and its keyUsage lacks keyCertSign" : "");
    }
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN: {
        int why = X509_check_issued(ca, leaf);
        switch (why) {
        case X509_V_ERR_SUBJECT_ISSUER_MISMATCH:
            return hsm_ossl_fail(err, "issuer mismatch: the certificate \"%s\" was issued by \"%s\", not "
                             "by the CA \"%s\"", lname, iname, cname);
        case X509_V_ERR_AKID_SKID_MISMATCH:
        case X509_V_ERR_AKID_ISSUER_SERIAL_MISMATCH:
            return hsm_ossl_fail(err, "issuer mismatch: the certificate \"%s\" names the issuer \"%s\" but "
                             "another key (its authority key identifier is not the CA's subject "
                             "key identifier)", lname, cname);
        case X509_V_ERR_KEYUSAGE_NO_CERTSIGN:
            return hsm_ossl_fail(err, "not a CA: \"%s\" has a keyUsage without keyCertSign", cname);
        default:
            return hsm_ossl_fail(err, "issuer mismatch: the certificate \"%s\" does not chain to the CA "
                             "\"%s\" (%s)", lname, cname,
                        X509_verify_cert_error_string(why != X509_V_OK ? why : e));
        }
    }
    default:
        return hsm_ossl_fail(err, "invalid: %s \"%s\": %s", which, is_ca ? cname : lname,
                    X509_verify_cert_error_string(e));
    }
}

int hsm_cert_verify_chain(const unsigned char *leaf, size_t leaflen, const unsigned char *ca,
                          size_t calen, long long at, hsm_err *err)
{
    X509 *lx = NULL, *cx = NULL;
    X509_STORE *st = NULL;
    X509_STORE_CTX *sc = NULL;
    int rc = -1;
    if (!(lx = hsm_ossl_cert_parse(leaf, leaflen, err)))
        goto out;
    if (!(cx = hsm_ossl_cert_parse(ca, calen, err))) {
        hsm_ossl_prefix_err(err, "CA certificate");
        goto out;
    }
    if (!(st = X509_STORE_new()) || !(sc = X509_STORE_CTX_new())) {
        hsm_ossl_nomem(err);
        goto out;
    }
    if (!X509_STORE_add_cert(st, cx) || !X509_STORE_CTX_init(sc, st, lx, NULL)) {
        hsm_ossl_ofail(err, "cannot set up the certificate verification");
        goto out;
    }
    /* ca is the trust anchor whether or not it is self-signed (PARTIAL_CHAIN); a self-signed
     * anchor's own signature is checked too (CHECK_SS_SIGNATURE). */
    if (at == 0)
        at = (long long)time(NULL);
    X509_VERIFY_PARAM *vp = X509_STORE_CTX_get0_param(sc);
    X509_VERIFY_PARAM_set_flags(vp, X509_V_FLAG_PARTIAL_CHAIN | X509_V_FLAG_CHECK_SS_SIGNATURE);
    X509_VERIFY_PARAM_set_time(vp, (time_t)at);
    int v = X509_verify_cert(sc);
    if (v == 1)
        rc = 0;
    else if (v == 0)
        chain_fail(sc, lx, cx, at, err);
    else
        hsm_ossl_ofail(err, "cannot verify the certificate chain");
out:
    ERR_clear_error();
    X509_STORE_CTX_free(sc);
    X509_STORE_free(st);
    X509_free(cx);
    X509_free(lx);
    return rc;
}
