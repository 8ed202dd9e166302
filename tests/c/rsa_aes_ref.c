/* rsa_aes_ref.c - an independent, pure-OpenSSL reference for the PKCS#11 CKM_RSA_AES_KEY_WRAP
 * blob (v2.40 §2.1.21: RSA-OAEP(ephemeral AES key) || AES-KWP(ephemeral key, payload)) and for
 * AES key wrap (RFC 3394) / with padding (RFC 5649). A test tool, not a ctest test itself.
 *
 *   rsa_aes_ref unwrap PRIV BLOB_FILE [HASH] [AESBITS]        prints the payload in hex
 *   rsa_aes_ref wrap PUB PAYLOAD_HEX OUT_FILE [HASH] [AESBITS] writes the blob (binary)
 *   rsa_aes_ref kw|kwp|kw-unwrap|kwp-unwrap KEK_HEX DATA_HEX   prints the result in hex
 *   rsa_aes_ref selftest                                        RFC 3394 / 5649 vectors
 * HASH (OAEP and MGF1, empty label): sha1 (default), sha224, sha256, sha384, sha512.
 * AESBITS: 128, 192, 256 (default). Keys: PEM or DER, SPKI / PKCS#1 / PKCS#8 / certificate.
 * Exit 0 ok, 1 error (one line on stderr), 2 usage. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/core_names.h>
#include <openssl/decoder.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

typedef struct { unsigned char *p; size_t len; } buf;

static void buf_free(buf *b) { if (b->p) { OPENSSL_cleanse(b->p, b->len); free(b->p); } b->p = NULL; b->len = 0; }

/* err: one line on stderr, with OpenSSL's first queued reason if there is one; returns 1. */
static int err(const char *what, const char *arg)
{
  unsigned long e = ERR_get_error();
  const char *why = e ? ERR_reason_error_string(e) : NULL;
  fprintf(stderr, "rsa_aes_ref: %s%s%s%s%s\n", what, arg ? " " : "", arg ? arg : "",
          why ? ": " : "", why ? why : "");
  ERR_clear_error();
  return 1;
}

static int unhex(const char *s, buf *b)
{
  size_t n = strlen(s);
  b->p = NULL; b->len = 0;
  if (n % 2 || !(b->p = malloc(n / 2 + 1))) return 0;
  for (size_t i = 0; i < n; i += 2) {
    int hi = OPENSSL_hexchar2int((unsigned char)s[i]), lo = OPENSSL_hexchar2int((unsigned char)s[i + 1]);
    if (hi < 0 || lo < 0) { buf_free(b); return 0; }
    b->p[b->len++] = (unsigned char)(hi << 4 | lo);
  }
  return 1;
}

static void puthex(const unsigned char *p, size_t n)
{
  for (size_t i = 0; i < n; i++) printf("%02x", p[i]);
  putchar('\n');
}

/* aes_kw: RFC 3394 (pad 0) or RFC 5649 (pad 1) wrap (enc 1) or unwrap (enc 0) with OpenSSL's
 * fetched AES-<bits>-WRAP[-PAD] cipher; the KEK size picks the AES variant. */
static int aes_kw(int pad, int enc, const unsigned char *kek, size_t keklen,
                  const unsigned char *in, size_t inlen, buf *out)
{
  char name[32];
  int n = 0, f = 0, ok = 0;
  out->p = NULL; out->len = 0;
  if (keklen != 16 && keklen != 24 && keklen != 32) return 0;
  if (inlen == 0 || inlen > INT_MAX - 16) return 0;
  snprintf(name, sizeof name, "AES-%zu-WRAP%s", keklen * 8, pad ? "-PAD" : "");
  EVP_CIPHER *c = EVP_CIPHER_fetch(NULL, name, NULL);
  EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
  if (c && ctx && (out->p = malloc(inlen + 16))) {
    /* Required by OpenSSL 1.x for wrap-mode ciphers; 3.x ignores it (checked on 3.0). */
    EVP_CIPHER_CTX_set_flags(ctx, EVP_CIPHER_CTX_FLAG_WRAP_ALLOW);
    ok = EVP_CipherInit_ex2(ctx, c, kek, NULL, enc, NULL) > 0
      && EVP_CipherUpdate(ctx, out->p, &n, in, (int)inlen) > 0 && n > 0
      && EVP_CipherFinal_ex(ctx, out->p + n, &f) > 0;
    out->len = ok ? (size_t)n + (size_t)f : 0;
  }
  if (!ok) buf_free(out);
  EVP_CIPHER_CTX_free(ctx);
  EVP_CIPHER_free(c);
  return ok;
}

/* load_rsa: an RSA key (public or key pair) from a PEM/DER key file, or a certificate's key. */
static EVP_PKEY *load_rsa(const char *path, int private)
{
  EVP_PKEY *pk = NULL;
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  OSSL_DECODER_CTX *d = OSSL_DECODER_CTX_new_for_pkey(&pk, NULL, NULL, "RSA",
      private ? OSSL_KEYMGMT_SELECT_KEYPAIR : 0, NULL, NULL);   /* 0: public or private */
  if (!d || !OSSL_DECODER_from_fp(d, f)) {
    X509 *x = NULL;
    if (!private && !fseek(f, 0, SEEK_SET) && (x = PEM_read_X509(f, NULL, NULL, NULL))) {
      ERR_clear_error();
      pk = X509_get_pubkey(x);
    }
    X509_free(x);
  }
  OSSL_DECODER_CTX_free(d);
  fclose(f);
  if (pk && !EVP_PKEY_is_a(pk, "RSA")) { EVP_PKEY_free(pk); pk = NULL; }
  if (!pk) ERR_clear_error();   /* the decoders' "unsupported" would only mislead */
  return pk;
}

static EVP_PKEY_CTX *oaep_ctx(EVP_PKEY *k, const char *hash, int enc)
{
  EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_from_pkey(NULL, k, NULL);
  if (!c || (enc ? EVP_PKEY_encrypt_init(c) : EVP_PKEY_decrypt_init(c)) <= 0
      || EVP_PKEY_CTX_set_rsa_padding(c, RSA_PKCS1_OAEP_PADDING) <= 0
      || EVP_PKEY_CTX_set_rsa_oaep_md_name(c, hash, NULL) <= 0
      || EVP_PKEY_CTX_set_rsa_mgf1_md_name(c, hash, NULL) <= 0) {
    EVP_PKEY_CTX_free(c);
    return NULL;
  }
  return c;
}

static int read_file(const char *path, buf *b)
{
  FILE *f = fopen(path, "rb");
  long n;
  b->p = NULL; b->len = 0;
  if (!f) return 0;
  if (!fseek(f, 0, SEEK_END) && (n = ftell(f)) >= 0 && !fseek(f, 0, SEEK_SET)
      && (b->p = malloc((size_t)n + 1)))
    b->len = fread(b->p, 1, (size_t)n, f);
  int ok = b->p && !ferror(f);
  fclose(f);
  if (!ok) buf_free(b);
  return ok;
}

static int rsa_aes_wrap(const char *pub, const char *hex, const char *out, const char *hash, int bits)
{
  unsigned char ek[32];
  buf payload = {0}, kwp = {0}, rsa = {0};
  size_t ekl = (size_t)bits / 8;
  int rc = 1;
  EVP_PKEY *k = load_rsa(pub, 0);
  EVP_PKEY_CTX *c = NULL;
  FILE *f = NULL;
  if (!k) { rc = err("cannot load an RSA public key from", pub); goto done; }
  if (!unhex(hex, &payload) || !payload.len) { rc = err("payload is not non-empty hex", NULL); goto done; }
  if (RAND_bytes(ek, (int)ekl) != 1) { rc = err("RAND_bytes failed", NULL); goto done; }
  if (!(c = oaep_ctx(k, hash, 1)) || EVP_PKEY_encrypt(c, NULL, &rsa.len, ek, ekl) <= 0
      || !(rsa.p = malloc(rsa.len)) || EVP_PKEY_encrypt(c, rsa.p, &rsa.len, ek, ekl) <= 0) {
    rc = err("RSA-OAEP encryption failed", NULL); goto done;
  }
  if (rsa.len != (size_t)EVP_PKEY_get_size(k)) { rc = err("OAEP output is not modulus-sized", NULL); goto done; }
  if (!aes_kw(1, 1, ek, ekl, payload.p, payload.len, &kwp)) { rc = err("AES-KWP wrap failed", NULL); goto done; }
  if (!(f = fopen(out, "wb")) || fwrite(rsa.p, 1, rsa.len, f) != rsa.len
      || fwrite(kwp.p, 1, kwp.len, f) != kwp.len) { rc = err("cannot write", out); goto done; }
  rc = 0;
done:
  if (f && fclose(f) && rc == 0) rc = err("cannot write", out);
  OPENSSL_cleanse(ek, sizeof ek);
  buf_free(&payload); buf_free(&kwp); buf_free(&rsa);
  EVP_PKEY_CTX_free(c);
  EVP_PKEY_free(k);
  return rc;
}

static int rsa_aes_unwrap(const char *priv, const char *blobfile, const char *hash, int bits)
{
  buf blob = {0}, ek = {0}, payload = {0};
  int rc = 1;
  size_t m;
  EVP_PKEY *k = load_rsa(priv, 1);
  EVP_PKEY_CTX *c = NULL;
  if (!k) { rc = err("cannot load an RSA private key from", priv); goto done; }
  if (!read_file(blobfile, &blob)) { rc = err("cannot read", blobfile); goto done; }
  m = (size_t)EVP_PKEY_get_size(k);
  if (blob.len < m + 16 || (blob.len - m) % 8) {
    fprintf(stderr, "rsa_aes_ref: blob is %zu bytes: need %zu (modulus) + 16 + 8n\n", blob.len, m);
    goto done;
  }
  if (!(c = oaep_ctx(k, hash, 0)) || EVP_PKEY_decrypt(c, NULL, &ek.len, blob.p, m) <= 0
      || !(ek.p = malloc(ek.len)) || EVP_PKEY_decrypt(c, ek.p, &ek.len, blob.p, m) <= 0) {
    rc = err("RSA-OAEP decryption failed", NULL); goto done;
  }
  if (ek.len * 8 != (size_t)bits) {
    fprintf(stderr, "rsa_aes_ref: ephemeral key is %zu bits, expected %d\n", ek.len * 8, bits);
    goto done;
  }
  if (!aes_kw(1, 0, ek.p, ek.len, blob.p + m, blob.len - m, &payload)) {
    rc = err("AES-KWP unwrap failed (integrity check)", NULL); goto done;
  }
  puthex(payload.p, payload.len);
  rc = 0;
done:
  buf_free(&blob); buf_free(&ek); buf_free(&payload);
  EVP_PKEY_CTX_free(c);
  EVP_PKEY_free(k);
  return rc;
}

static int kw_cmd(int pad, int enc, const char *kekhex, const char *datahex)
{
  buf kek = {0}, data = {0}, out = {0};
  int rc = 1;
  if (!unhex(kekhex, &kek) || !unhex(datahex, &data)) rc = err("arguments must be hex", NULL);
  else if (!aes_kw(pad, enc, kek.p, kek.len, data.p, data.len, &out))
    rc = err(enc ? "wrap failed (KEK 16/24/32 bytes; kw data 16+8n bytes)" : "unwrap failed", NULL);
  else { puthex(out.p, out.len); rc = 0; }
  buf_free(&kek); buf_free(&data); buf_free(&out);
  return rc;
}

/* Checked against the RFC texts and an independent implementation (python3-cryptography). */
static const struct { const char *name; int pad; const char *kek, *data, *wrapped; } vectors[] = {
  {"RFC 3394 4.1 (128-bit data, 128-bit KEK)", 0, "000102030405060708090a0b0c0d0e0f",
   "00112233445566778899aabbccddeeff", "1fa68b0a8112b447aef34bd8fb5a7b829d3e862371d2cfe5"},
  {"RFC 3394 4.3 (128-bit data, 256-bit KEK)", 0,
   "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
   "00112233445566778899aabbccddeeff", "64e8c3f9ce0f5ba263e9777905818a2a93c8191e7d6e8ae7"},
  {"RFC 3394 4.6 (256-bit data, 256-bit KEK)", 0,
   "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
   "00112233445566778899aabbccddeeff000102030405060708090a0b0c0d0e0f",
   "28c9f404c4b810f4cbccb35cfb87f8263f5786e2d80ed326cbc7f0e71a99f43bfb988b9b7a02dd21"},
  {"RFC 5649 6 (20 octets, 192-bit KEK)", 1, "5840df6e29b02af1ab493b705bf16ea1ae8338f4dcc176a8",
   "c37b7e6492584340bed12207808941155068f738",
   "138bdeaa9b8fa7fc61f97742e72248ee5ae6ae5360d1ae6a5f54f373fa543b6a"},
  {"RFC 5649 6 (7 octets, 192-bit KEK)", 1, "5840df6e29b02af1ab493b705bf16ea1ae8338f4dcc176a8",
   "466f7250617369", "afbeb0f07dfbf5419200f2ccb50bb24f"},
};

static int selftest(void)
{
  int failed = 0;
  for (size_t i = 0; i < sizeof vectors / sizeof vectors[0]; i++) {
    buf kek, data, want, w = {0}, u = {0}, bad = {0};
    int ok = unhex(vectors[i].kek, &kek) & unhex(vectors[i].data, &data)
           & unhex(vectors[i].wrapped, &want);
    ok = ok && aes_kw(vectors[i].pad, 1, kek.p, kek.len, data.p, data.len, &w)
         && w.len == want.len && !memcmp(w.p, want.p, w.len)
         && aes_kw(vectors[i].pad, 0, kek.p, kek.len, want.p, want.len, &u)
         && u.len == data.len && !memcmp(u.p, data.p, u.len);
    if (ok) {   /* and a flipped bit in the last byte must fail the integrity check */
      w.p[w.len - 1] ^= 1;
      ok = !aes_kw(vectors[i].pad, 0, kek.p, kek.len, w.p, w.len, &bad);
      ERR_clear_error();
    }
    printf("%s %s\n", ok ? "ok  " : "FAIL", vectors[i].name);
    failed += !ok;
    buf_free(&kek); buf_free(&data); buf_free(&want); buf_free(&w); buf_free(&u); buf_free(&bad);
  }
  printf("selftest: %d failed\n", failed);
  return failed != 0;
}

static int usage(void)
{
  fputs("usage: rsa_aes_ref unwrap PRIV BLOB_FILE [sha1|sha224|sha256|sha384|sha512] [128|192|256]\n"
        "       rsa_aes_ref wrap PUB PAYLOAD_HEX OUT_FILE [HASH] [AESBITS]\n"
        "       rsa_aes_ref kw|kwp|kw-unwrap|kwp-unwrap KEK_HEX DATA_HEX\n"
        "       rsa_aes_ref selftest\n", stderr);
  return 2;
}

/* opts: the optional [HASH] [AESBITS] arguments; 0 if one is not recognized. */
static int opts(int argc, char **argv, int i, const char **hash, int *bits)
{
  static const char *const hashes[] = {"sha1", "sha224", "sha256", "sha384", "sha512"};
  *hash = "sha1"; *bits = 256;
  if (i < argc) {
    size_t h = 0;
    while (h < 5 && strcmp(argv[i], hashes[h])) h++;
    if (h == 5) return 0;
    *hash = hashes[h];
  }
  if (++i < argc) {
    *bits = atoi(argv[i]);
    if (*bits != 128 && *bits != 192 && *bits != 256) return 0;
  }
  return 1;
}

int main(int argc, char **argv)
{
  const char *cmd = argc > 1 ? argv[1] : "", *hash;
  int bits;
  if (!strcmp(cmd, "selftest") && argc == 2) return selftest();
  if (argc == 4 && !strcmp(cmd, "kw")) return kw_cmd(0, 1, argv[2], argv[3]);
  if (argc == 4 && !strcmp(cmd, "kwp")) return kw_cmd(1, 1, argv[2], argv[3]);
  if (argc == 4 && !strcmp(cmd, "kw-unwrap")) return kw_cmd(0, 0, argv[2], argv[3]);
  if (argc == 4 && !strcmp(cmd, "kwp-unwrap")) return kw_cmd(1, 0, argv[2], argv[3]);
  if (!strcmp(cmd, "wrap") && argc >= 5 && argc <= 7 && opts(argc, argv, 5, &hash, &bits))
    return rsa_aes_wrap(argv[2], argv[3], argv[4], hash, bits);
  if (!strcmp(cmd, "unwrap") && argc >= 4 && argc <= 6 && opts(argc, argv, 4, &hash, &bits))
    return rsa_aes_unwrap(argv[2], argv[3], hash, bits);
  return usage();
}
