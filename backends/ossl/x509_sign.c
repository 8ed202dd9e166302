/* x509_sign.c - signing X.509 structures through a raw HSM signer, building certificates,
 * self-signed certificates. See hsm_ossl.h. */
#include "ossl_int.h"

/* ------------------------------------------------------------------ signing through an HSM */

/* DigestInfo headers, RFC 8017 section 9.2 note 1. */
static const unsigned char DI_SHA256[] = {0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48,
    0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20};
static const unsigned char DI_SHA384[] = {0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48,
    0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05, 0x00, 0x04, 0x30};
static const unsigned char DI_SHA512[] = {0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48,
    0x01, 0x65, 0x03, 0x04, 0x02, 0x03, 0x05, 0x00, 0x04, 0x40};

int hsm_ossl_sig_alg_for(EVP_PKEY *signer, const char *hash, sig_alg *sa, hsm_err *err)
{
    static const struct { const char *name; int md_nid; const unsigned char *di; size_t dilen; }
    hashes[] = {
        {"sha256", NID_sha256, DI_SHA256, sizeof DI_SHA256},
        {"sha384", NID_sha384, DI_SHA384, sizeof DI_SHA384},
        {"sha512", NID_sha512, DI_SHA512, sizeof DI_SHA512},
    };
    size_t h;
    const char *hname = hash ? hash : "sha256";
    for (h = 0; h < sizeof hashes / sizeof hashes[0]; h++)
        if (hsm_ossl_ascii_ieq(hname, hashes[h].name))
            break;
    if (h == sizeof hashes / sizeof hashes[0])
        return hsm_ossl_fail(err, "signature hash \"%s\" is not supported (use sha256, sha384 or sha512)",
                    hname);

    memset(sa, 0, sizeof *sa);
    sa->key_type = EVP_PKEY_get_base_id(signer);
    sa->md = hsm_ossl_md_by_name(hashes[h].name);
    int bits = EVP_PKEY_get_bits(signer);
    switch (sa->key_type) {
    case EVP_PKEY_RSA:
        sa->sig_nid = hashes[h].md_nid == NID_sha256 ? NID_sha256WithRSAEncryption
                    : hashes[h].md_nid == NID_sha384 ? NID_sha384WithRSAEncryption
                    : NID_sha512WithRSAEncryption;
        sa->prefix = hashes[h].di;
        sa->prefix_len = hashes[h].dilen;
        break;
    case EVP_PKEY_EC:
        sa->sig_nid = hashes[h].md_nid == NID_sha256 ? NID_ecdsa_with_SHA256
                    : hashes[h].md_nid == NID_sha384 ? NID_ecdsa_with_SHA384
                    : NID_ecdsa_with_SHA512;
        break;
    case EVP_PKEY_ED25519:
        return hsm_ossl_fail(err, "certificates for Ed25519 keys are not supported yet");
    case EVP_PKEY_ED448:
        return hsm_ossl_fail(err, "certificates for Ed448 keys are not supported yet");
    default: {
        char name[80] = "unknown";
        hsm_ossl_key_describe(signer, name, sizeof name, NULL, err);
        return hsm_ossl_fail(err, "certificates for %s keys are not supported (RSA and EC only)", name);
    }
    }
    if (!sa->md || bits <= 0)
        return hsm_ossl_ofail(err, "cannot size the %s signature", hname);
    sa->sig_bytes = ((size_t)bits + 7) / 8;
    return 0;
}

int hsm_ossl_set_algor(X509_ALGOR *a, const sig_alg *sa)
{
    /* RSA PKCS#1 v1.5 carries NULL parameters; ECDSA omits them (RFC 5758). */
    return X509_ALGOR_set0(a, OBJ_nid2obj(sa->sig_nid),
                           sa->key_type == EVP_PKEY_RSA ? V_ASN1_NULL : V_ASN1_UNDEF, NULL)
           ? 0 : -1;
}

/* Signs the DER to-be-signed bytes through the raw signer: hashes them, builds the
 * mechanism input (DigestInfo for RSA, the bare hash for ECDSA), and returns the signature
 * as X.509 carries it (PKCS#1 bytes at full modulus length; DER ECDSA-Sig-Value). Shared by
 * certificates (and, later, CSRs and certificates signed by another key). */
int hsm_ossl_sign_tbs(const sig_alg *sa, const unsigned char *tbs, size_t tbslen,
                    hsm_raw_signer sign, void *ctx, unsigned char **sig, size_t *siglen,
                    hsm_err *err)
{
    unsigned char in[32 + EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    size_t inlen = sa->prefix_len;
    if (sa->prefix_len)
        memcpy(in, sa->prefix, sa->prefix_len);
    if (!EVP_Digest(tbs, tbslen, in + inlen, &mdlen, sa->md, NULL))
        return hsm_ossl_ofail(err, "cannot hash the data to be signed");
    inlen += mdlen;

    unsigned char *raw = NULL;
    size_t rawlen = 0;
    hsm_err_clear(err);
    if (sign(ctx, in, inlen, &raw, &rawlen, err) != 0) {
        free(raw);
        if (!err->msg[0])
            hsm_ossl_fail(err, "the signer failed without saying why");
        return -1;
    }
    if (!raw || rawlen == 0) {
        free(raw);
        return hsm_ossl_fail(err, "the signer returned an empty signature");
    }

    int rc = -1;
    if (sa->key_type == EVP_PKEY_RSA) {
        if (rawlen > sa->sig_bytes) {
            hsm_ossl_fail(err, "the signer returned a %zu-byte RSA signature for a %zu-byte modulus",
                 rawlen, sa->sig_bytes);
            goto out;
        }
        unsigned char *s = calloc(1, sa->sig_bytes);   /* left-pad short results with zeros */
        if (!s) {
            hsm_ossl_nomem(err);
            goto out;
        }
        memcpy(s + sa->sig_bytes - rawlen, raw, rawlen);
        *sig = s;
        *siglen = sa->sig_bytes;
        rc = 0;
        goto out;
    }

    /* ECDSA: r||s, each half at most the order's length */
    if (rawlen % 2 || rawlen / 2 > sa->sig_bytes) {
        hsm_ossl_fail(err, "the signer returned %zu bytes; expected ECDSA r||s of 2 x %zu bytes",
             rawlen, sa->sig_bytes);
        goto out;
    }
    size_t half = rawlen / 2;
    ECDSA_SIG *es = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(raw, (int)half, NULL), *s = BN_bin2bn(raw + half, (int)half, NULL);
    if (!es || !r || !s) {
        hsm_ossl_nomem(err);
    } else if (BN_is_zero(r) || BN_is_zero(s)) {
        hsm_ossl_fail(err, "the signer returned an ECDSA signature with r or s = 0");
    } else if (!ECDSA_SIG_set0(es, r, s)) {
        hsm_ossl_ofail(err, "cannot assemble the ECDSA signature");
    } else {
        r = s = NULL;   /* owned by es now */
        unsigned char *d = NULL;
        int n = i2d_ECDSA_SIG(es, &d);
        if (n <= 0)
            hsm_ossl_ofail(err, "cannot encode the ECDSA signature");
        else
            rc = hsm_ossl_dup_out(d, (size_t)n, sig, siglen, err);
        OPENSSL_free(d);
    }
    BN_free(r);
    BN_free(s);
    ECDSA_SIG_free(es);
out:
    free(raw);
    return rc;
}

/* Puts a finished signature into an X.509 BIT STRING (no unused bits). */
int hsm_ossl_set_signature(ASN1_BIT_STRING *bs, const unsigned char *sig, size_t siglen,
                         hsm_err *err)
{
    if (siglen > INT_MAX || !ASN1_BIT_STRING_set(bs, (unsigned char *)sig, (int)siglen))
        return hsm_ossl_ofail(err, "cannot store the signature");
    bs->flags &= ~(ASN1_STRING_FLAG_BITS_LEFT | 0x07);
    bs->flags |= ASN1_STRING_FLAG_BITS_LEFT;
    return 0;
}

/* Signs a built certificate: signature algorithm in the TBS and the outer structure,
 * TBS DER through hsm_ossl_sign_tbs, signature installed. */
int hsm_ossl_x509_sign_raw(X509 *x, const sig_alg *sa, hsm_raw_signer sign, void *ctx,
                         hsm_err *err)
{
    const ASN1_BIT_STRING *csig = NULL;
    const X509_ALGOR *calg = NULL;
    X509_get0_signature(&csig, &calg, x);
    if (hsm_ossl_set_algor((X509_ALGOR *)X509_get0_tbs_sigalg(x), sa) < 0
        || hsm_ossl_set_algor((X509_ALGOR *)calg, sa) < 0)
        return hsm_ossl_ofail(err, "cannot set the signature algorithm");

    unsigned char *tbs = NULL;
    int tbslen = i2d_re_X509_tbs(x, &tbs);
    if (tbslen <= 0)
        return hsm_ossl_ofail(err, "cannot encode the TBSCertificate");
    unsigned char *sig = NULL;
    size_t siglen = 0;
    int rc = hsm_ossl_sign_tbs(sa, tbs, (size_t)tbslen, sign, ctx, &sig, &siglen, err);
    OPENSSL_free(tbs);
    if (rc == 0)
        rc = hsm_ossl_set_signature((ASN1_BIT_STRING *)csig, sig, siglen, err);
    free(sig);
    return rc;
}

static int add_ext(X509 *x, int nid, void *value, int critical, hsm_err *err)
{
    if (X509_add1_ext_i2d(x, nid, value, critical, X509V3_ADD_DEFAULT) != 1)
        return hsm_ossl_ofail(err, "cannot add the %s extension", OBJ_nid2ln(nid));
    return 0;
}

/* Builds an unsigned v3 certificate: serial, names, validity, key, extensions. */
X509 *hsm_ossl_cert_build(const cert_spec *cs, hsm_err *err)
{
    X509 *x = X509_new();
    BIGNUM *bn = NULL;
    ASN1_INTEGER *serial = NULL;
    BASIC_CONSTRAINTS *bc = NULL;
    ASN1_BIT_STRING *ku = NULL;
    ASN1_OCTET_STRING *ski = NULL;
    AUTHORITY_KEYID *akid = NULL;
    int ok = 0;
    if (!x) {
        hsm_ossl_nomem(err);
        goto out;
    }

    /* the caller's serial, or a random positive 128-bit one with its top byte in
     * 0x40..0x7f: always 16 bytes */
    unsigned char sn[16];
    const unsigned char *snp = cs->serial;
    size_t snlen = cs->serial_len;
    if (!snp) {
        if (RAND_bytes(sn, sizeof sn) != 1) {
            hsm_ossl_ofail(err, "cannot draw a random serial number");
            goto out;
        }
        sn[0] = (unsigned char)((sn[0] & 0x3f) | 0x40);
        snp = sn;
        snlen = sizeof sn;
    }
    if (!(bn = BN_bin2bn(snp, (int)snlen, NULL)) || !(serial = BN_to_ASN1_INTEGER(bn, NULL))
        || !X509_set_version(x, X509_VERSION_3) || !X509_set_serialNumber(x, serial)
        || !X509_set_subject_name(x, cs->subject) || !X509_set_issuer_name(x, cs->issuer)) {
        hsm_ossl_ofail(err, "cannot fill the certificate");
        goto out;
    }
    time_t base = cs->not_before ? (time_t)cs->not_before : time(NULL);
    if (!X509_time_adj_ex(X509_getm_notBefore(x), 0, 0, &base)
        || !X509_time_adj_ex(X509_getm_notAfter(x), (int)cs->days, 0, &base)) {
        hsm_ossl_ofail(err, "validity of %ld days is out of range", cs->days);
        goto out;
    }
    if (!X509_set_pubkey(x, cs->subject_key)) {
        hsm_ossl_ofail(err, "cannot set the certificate's public key");
        goto out;
    }

    if (!(bc = BASIC_CONSTRAINTS_new())) {
        hsm_ossl_nomem(err);
        goto out;
    }
    bc->ca = cs->ca ? 0xff : 0;
    if (cs->ca && cs->pathlen >= 0
        && (!(bc->pathlen = ASN1_INTEGER_new()) || !ASN1_INTEGER_set(bc->pathlen, cs->pathlen))) {
        hsm_ossl_nomem(err);
        goto out;
    }
    if (add_ext(x, NID_basic_constraints, bc, 1, err) < 0)
        goto out;

    if (cs->key_usage) {
        if (!(ku = ASN1_BIT_STRING_new())) {
            hsm_ossl_nomem(err);
            goto out;
        }
        for (int bit = 0; bit < 9; bit++) {   /* KU_ flags: bit 0 = 0x80 ... bit 7 = 0x01, bit 8 = 0x8000 */
            int flag = bit < 8 ? 0x80 >> bit : 0x8000;
            if ((cs->key_usage & flag) && !ASN1_BIT_STRING_set_bit(ku, bit, 1)) {
                hsm_ossl_nomem(err);
                goto out;
            }
        }
        if (add_ext(x, NID_key_usage, ku, 1, err) < 0)
            goto out;
    }

    /* subjectKeyIdentifier: SHA-1 of the subjectPublicKey bits (RFC 5280 4.2.1.2 (1)) */
    const unsigned char *pkbits = NULL;
    int pkbitslen = 0;
    unsigned char id[20];
    if (!X509_PUBKEY_get0_param(NULL, &pkbits, &pkbitslen, NULL, X509_get_X509_PUBKEY(x))
        || !EVP_Digest(pkbits, (size_t)pkbitslen, id, NULL, EVP_sha1(), NULL)) {
        hsm_ossl_ofail(err, "cannot compute the subject key identifier");
        goto out;
    }
    if (!(ski = ASN1_OCTET_STRING_new()) || !ASN1_OCTET_STRING_set(ski, id, sizeof id)) {
        hsm_ossl_nomem(err);
        goto out;
    }
    if (add_ext(x, NID_subject_key_identifier, ski, 0, err) < 0)
        goto out;

    /* authorityKeyIdentifier: keyIdentifier only (RFC 5280 4.2.1.1) */
    if (cs->akid_mode != AKID_NONE) {
        const ASN1_OCTET_STRING *kid = cs->akid_mode == AKID_SELF ? ski : cs->akid;
        if (!kid) {
            hsm_ossl_fail(err, "no authority key identifier given");
            goto out;
        }
        if (!(akid = AUTHORITY_KEYID_new()) || !(akid->keyid = ASN1_OCTET_STRING_dup(kid))) {
            hsm_ossl_nomem(err);
            goto out;
        }
        if (add_ext(x, NID_authority_key_identifier, akid, 0, err) < 0)
            goto out;
    }
    ok = 1;
out:
    AUTHORITY_KEYID_free(akid);
    ASN1_OCTET_STRING_free(ski);
    ASN1_BIT_STRING_free(ku);
    BASIC_CONSTRAINTS_free(bc);
    ASN1_INTEGER_free(serial);
    BN_free(bn);
    if (!ok) {
        X509_free(x);
        return NULL;
    }
    return x;
}

int hsm_x509_self_signed(const unsigned char *spki, size_t spkilen, const char *cn, long days,
                         const char *hash, hsm_raw_signer sign, void *ctx,
                         unsigned char **der, size_t *derlen, hsm_err *err)
{
    if (!cn || !*cn)
        return hsm_ossl_fail(err, "certificate common name is empty");
    if (days < 1 || days > INT_MAX)
        return hsm_ossl_fail(err, "certificate validity must be at least 1 day (got %ld)", days);
    if (!sign)
        return hsm_ossl_fail(err, "no signer given");
    if (!der || !derlen)
        return hsm_ossl_fail(err, "no output given");

    int rc = -1;
    X509_NAME *name = NULL;
    X509 *x = NULL, *back = NULL;
    unsigned char *out = NULL;
    size_t outlen = 0;
    sig_alg sa;
    EVP_PKEY *pk = hsm_ossl_pubkey_parse(spki, spkilen, err);
    if (!pk || hsm_ossl_sig_alg_for(pk, hash, &sa, err) < 0)
        goto out;
    if (!(name = X509_NAME_new())) {
        hsm_ossl_nomem(err);
        goto out;
    }
    if (!X509_NAME_add_entry_by_NID(name, NID_commonName, MBSTRING_UTF8,
                                    (const unsigned char *)cn, -1, -1, 0)) {
        hsm_ossl_ofail(err, "common name \"%.80s\" is not 1 to 64 characters of UTF-8", cn);
        goto out;
    }
    cert_spec cs = {
        .subject_key = pk, .subject = name, .issuer = name, .days = days,
        .ca = 0, .key_usage = KU_DIGITAL_SIGNATURE,
    };
    if (!(x = hsm_ossl_cert_build(&cs, err)) || hsm_ossl_x509_sign_raw(x, &sa, sign, ctx, err) < 0
        || hsm_ossl_cert_der(x, &out, &outlen, err) < 0)
        goto out;

    /* The HSM signed it: check it really was the key of spki before handing it out. */
    if (!(back = hsm_ossl_cert_parse(out, outlen, err)))
        goto out;
    int v = X509_verify(back, pk);
    if (v != 1) {
        if (v == 0)
            hsm_ossl_fail(err, "the signer's signature does not verify with the certificate's public key "
                      "(wrong key or mechanism?)");
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
    X509_free(x);
    X509_NAME_free(name);
    EVP_PKEY_free(pk);
    return rc;
}
