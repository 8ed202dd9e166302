/* raw_migrate.c - the reference for bench/migrate.sh: a minimal PKCS#11 loop that migrates
 * every extractable token secret key of one token to another, the way hsmsh's
 * generic/migrate moves it (composed RSA-AES key wrap), with nothing else around it.
 *
 *   raw_migrate MODULE PIN rsa-aes SRC DST   RSA-3072 transport pair on DST (session objects),
 *                                            public key imported into SRC; per key: ephemeral
 *                                            AES-256 on SRC, OAEP(SHA-1) wrap of it, AES-KWP
 *                                            wrap of the key, on DST OAEP unwrap -> ephemeral,
 *                                            KWP unwrap -> token object; ephemerals destroyed
 *   raw_migrate MODULE PIN kwp SRC DST       the floor: a pre-shared session AES-256 KEK on both
 *                                            tokens; per key one KWP wrap and one KWP unwrap
 *   raw_migrate MODULE PIN kwp-copy SRC DST  the same, unwrapping into a session object that
 *                                            C_CopyObject puts on the token (then destroyed):
 *                                            the call sequence hsmsh uses on SoftHSM2, which
 *                                            writes a new token object's file once per default
 *                                            attribute in C_UnwrapKey but once in C_CopyObject
 *   raw_migrate MODULE PIN count TOKEN       prints the number of token secret keys on TOKEN
 *
 * SRC, DST and TOKEN are token labels. The source is enumerated once (batched C_FindObjects)
 * and each key's label, ID and usage flags are read once. Every CK_RV is checked: any failure
 * prints the function, the return value and the key, and exits with status 1.
 *
 * Build: cc -O2 $(pkg-config --cflags p11-kit-1) raw_migrate.c -ldl */
#define _POSIX_C_SOURCE 200809L
#include <dlfcn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <p11-kit/pkcs11.h>

static CK_FUNCTION_LIST *p11;
static const char *current = "setup";   /* what the loop is doing, for error messages */

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("raw_migrate: ", stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

/* CK(C_Xxx, args...) calls the function and exits naming it unless it returns CKR_OK. */
#define CK(fn, ...)                                                                         \
    do {                                                                                    \
        CK_RV ck_rv_ = p11->fn(__VA_ARGS__);                                                \
        if (ck_rv_ != CKR_OK)                                                               \
            die("%s failed: CKR 0x%lx (%s)", #fn, (unsigned long)ck_rv_, current);          \
    } while (0)

static double now(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
        die("clock_gettime failed");
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        die("out of memory");
    return p;
}

static void load(const char *path)
{
    void *dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!dl)
        die("cannot load %s: %s", path, dlerror());
    CK_C_GetFunctionList get;
    void *sym = dlsym(dl, "C_GetFunctionList");
    if (!sym)
        die("%s has no C_GetFunctionList", path);
    memcpy(&get, &sym, sizeof get);   /* object pointer -> function pointer, C11-clean */
    CK_RV rv = get(&p11);
    if (rv != CKR_OK || !p11)
        die("C_GetFunctionList failed: CKR 0x%lx", (unsigned long)rv);
    CK_C_INITIALIZE_ARGS args;
    memset(&args, 0, sizeof args);
    args.flags = CKF_OS_LOCKING_OK;
    CK(C_Initialize, &args);
}

/* The slot of the one initialized token whose (blank-padded) label is label. */
static CK_SLOT_ID slot_of(const char *label)
{
    CK_ULONG n = 0;
    CK(C_GetSlotList, CK_TRUE, NULL, &n);
    CK_SLOT_ID *slots = xmalloc(n * sizeof *slots);
    CK(C_GetSlotList, CK_TRUE, slots, &n);
    size_t len = strlen(label);
    if (len > 32)
        die("token label '%s' is longer than 32 bytes", label);
    int found = 0;
    CK_SLOT_ID slot = 0;
    for (CK_ULONG i = 0; i < n; i++) {
        CK_TOKEN_INFO ti;
        CK(C_GetTokenInfo, slots[i], &ti);
        if (!(ti.flags & CKF_TOKEN_INITIALIZED))
            continue;
        int same = memcmp(ti.label, label, len) == 0;
        for (size_t j = len; same && j < sizeof ti.label; j++)
            same = ti.label[j] == ' ';
        if (same) {
            found++;
            slot = slots[i];
        }
    }
    free(slots);
    if (found != 1)
        die("%d tokens are labelled '%s' (expected one)", found, label);
    return slot;
}

static CK_SESSION_HANDLE open_login(const char *label, const char *pin)
{
    CK_SESSION_HANDLE s;
    CK(C_OpenSession, slot_of(label), CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s);
    CK(C_Login, s, CKU_USER, (CK_UTF8CHAR_PTR)pin, (CK_ULONG)strlen(pin));
    return s;
}

/* Every object matching tmpl, in batches of 256. */
static CK_OBJECT_HANDLE *find_all(CK_SESSION_HANDLE s, CK_ATTRIBUTE *tmpl, CK_ULONG n,
                                  CK_ULONG *count)
{
    enum { BATCH = 256 };
    CK_ULONG cap = BATCH, have = 0;
    CK_OBJECT_HANDLE *all = xmalloc(cap * sizeof *all);
    CK(C_FindObjectsInit, s, tmpl, n);
    for (;;) {
        if (cap - have < BATCH) {
            cap *= 2;
            CK_OBJECT_HANDLE *grown = realloc(all, cap * sizeof *all);
            if (!grown)
                die("out of memory");
            all = grown;
        }
        CK_ULONG got = 0;
        CK(C_FindObjects, s, all + have, BATCH, &got);
        if (got == 0)
            break;
        have += got;
    }
    CK(C_FindObjectsFinal, s);
    *count = have;
    return all;
}

/* ---- one source key: what the destination template needs ---- */

/* The source key's booleans that hsmsh's unwrap template carries too (CKA_MODIFIABLE last:
 * SoftHSM2 applies a template in order and refuses what follows CKA_MODIFIABLE=false). */
static const CK_ATTRIBUTE_TYPE FLAGS[] = {
    CKA_PRIVATE, CKA_SENSITIVE, CKA_EXTRACTABLE, CKA_ENCRYPT,   CKA_DECRYPT,
    CKA_WRAP,    CKA_UNWRAP,    CKA_SIGN,        CKA_VERIFY,    CKA_DERIVE,
    CKA_COPYABLE, CKA_DESTROYABLE, CKA_WRAP_WITH_TRUSTED, CKA_MODIFIABLE,
};
#define NFLAGS (sizeof FLAGS / sizeof FLAGS[0])
#define MAXLEN 256   /* longer labels or IDs: C_GetAttributeValue fails, and so does the run */

struct key {
    CK_OBJECT_HANDLE h;
    CK_KEY_TYPE type;
    CK_BYTE label[MAXLEN], id[MAXLEN];
    CK_ULONG label_len, id_len;
    CK_BBOOL flags[NFLAGS];
};

static void read_key(CK_SESSION_HANDLE s, struct key *k)
{
    CK_ATTRIBUTE a[3 + NFLAGS] = {
        {CKA_KEY_TYPE, &k->type, sizeof k->type},
        {CKA_LABEL, k->label, sizeof k->label},
        {CKA_ID, k->id, sizeof k->id},
    };
    for (size_t i = 0; i < NFLAGS; i++) {
        a[3 + i].type = FLAGS[i];
        a[3 + i].pValue = &k->flags[i];
        a[3 + i].ulValueLen = sizeof k->flags[i];
    }
    CK(C_GetAttributeValue, s, k->h, a, (CK_ULONG)(3 + NFLAGS));
    k->label_len = a[1].ulValueLen;
    k->id_len = a[2].ulValueLen;
}

/* The destination template: a token secret key with the source key's label, ID and flags
 * (no CKA_VALUE_LEN: SoftHSM2 refuses it in an unwrap template). */
static CK_ULONG key_template(struct key *k, CK_ATTRIBUTE *t, CK_OBJECT_CLASS *cls,
                             CK_BBOOL *yes)
{
    CK_ULONG n = 0;
    t[n++] = (CK_ATTRIBUTE){CKA_CLASS, cls, sizeof *cls};
    t[n++] = (CK_ATTRIBUTE){CKA_KEY_TYPE, &k->type, sizeof k->type};
    t[n++] = (CK_ATTRIBUTE){CKA_TOKEN, yes, sizeof *yes};
    t[n++] = (CK_ATTRIBUTE){CKA_LABEL, k->label, k->label_len};
    t[n++] = (CK_ATTRIBUTE){CKA_ID, k->id, k->id_len};
    for (size_t i = 0; i < NFLAGS; i++)
        t[n++] = (CK_ATTRIBUTE){FLAGS[i], &k->flags[i], sizeof k->flags[i]};
    return n;
}

/* ---- timing of each step of the loop ---- */

enum { T_GEN, T_WRAP_OAEP, T_WRAP_KWP, T_DESTROY_SRC, T_UNWRAP_OAEP, T_UNWRAP_KWP,
       T_DESTROY_DST, T_COPY, T_COUNT };
static const char *const t_names[T_COUNT] = {"generate", "wrap-oaep", "wrap-kwp",
                                             "destroy-src", "unwrap-oaep", "unwrap-kwp",
                                             "destroy-dst", "copy-to-token"};
static double t_sum[T_COUNT];
static double t_mark;
static void lap(int step)
{
    double t = now();
    t_sum[step] += t - t_mark;
    t_mark = t;
}

static unsigned char tmpl_label[MAXLEN + 1];
static const char *key_name(const struct key *k)
{
    memcpy(tmpl_label, k->label, k->label_len);
    tmpl_label[k->label_len] = 0;
    return (const char *)tmpl_label;
}

int main(int argc, char **argv)
{
    if (argc < 5)
        die("usage: raw_migrate MODULE PIN rsa-aes|kwp|kwp-copy SRC DST | raw_migrate MODULE PIN count TOKEN");
    const char *module = argv[1], *pin = argv[2], *mode = argv[3];
    int via_copy = strcmp(mode, "kwp-copy") == 0;
    int rsa_aes = strcmp(mode, "rsa-aes") == 0, kwp = strcmp(mode, "kwp") == 0 || via_copy;
    int count_only = strcmp(mode, "count") == 0;
    if (!(rsa_aes || kwp || count_only) || argc != (count_only ? 5 : 6))
        die("usage: raw_migrate MODULE PIN rsa-aes|kwp|kwp-copy SRC DST | raw_migrate MODULE PIN count TOKEN");

    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    CK_OBJECT_CLASS secret = CKO_SECRET_KEY, pubc = CKO_PUBLIC_KEY;
    CK_KEY_TYPE aes = CKK_AES, rsa = CKK_RSA;
    CK_ULONG aes256 = 32;

    double t0 = now();
    load(module);

    if (count_only) {
        CK_SESSION_HANDLE s = open_login(argv[4], pin);
        CK_ATTRIBUTE f[] = {{CKA_CLASS, &secret, sizeof secret}, {CKA_TOKEN, &yes, sizeof yes}};
        CK_ULONG n = 0;
        free(find_all(s, f, 2, &n));
        printf("%lu\n", (unsigned long)n);
        CK(C_Logout, s);
        CK(C_CloseSession, s);
        CK(C_Finalize, NULL);
        return 0;
    }

    CK_SESSION_HANDLE src = open_login(argv[4], pin), dst = open_login(argv[5], pin);

    /* Transport: an RSA-3072 pair on dst (rsa-aes) or one AES-256 KEK on both (kwp). */
    CK_OBJECT_HANDLE spub = 0, dpub = 0, dpriv = 0, skek = 0, dkek = 0;
    if (rsa_aes) {
        CK_MECHANISM gen = {CKM_RSA_PKCS_KEY_PAIR_GEN, NULL, 0};
        CK_ULONG bits = 3072;
        CK_BYTE e65537[] = {1, 0, 1};
        CK_ATTRIBUTE pubt[] = {
            {CKA_TOKEN, &no, sizeof no},          {CKA_WRAP, &yes, sizeof yes},
            {CKA_ENCRYPT, &no, sizeof no},        {CKA_VERIFY, &no, sizeof no},
            {CKA_MODULUS_BITS, &bits, sizeof bits}, {CKA_PUBLIC_EXPONENT, e65537, sizeof e65537},
        };
        CK_ATTRIBUTE privt[] = {
            {CKA_TOKEN, &no, sizeof no},       {CKA_PRIVATE, &yes, sizeof yes},
            {CKA_SENSITIVE, &yes, sizeof yes}, {CKA_EXTRACTABLE, &no, sizeof no},
            {CKA_UNWRAP, &yes, sizeof yes},    {CKA_DECRYPT, &no, sizeof no},
            {CKA_SIGN, &no, sizeof no},
        };
        CK(C_GenerateKeyPair, dst, &gen, pubt, 6, privt, 7, &dpub, &dpriv);
        CK_BYTE n[1024], e[16];
        CK_ATTRIBUTE ne[] = {{CKA_MODULUS, n, sizeof n}, {CKA_PUBLIC_EXPONENT, e, sizeof e}};
        CK(C_GetAttributeValue, dst, dpub, ne, 2);
        CK_ATTRIBUTE imp[] = {
            {CKA_CLASS, &pubc, sizeof pubc},  {CKA_KEY_TYPE, &rsa, sizeof rsa},
            {CKA_TOKEN, &no, sizeof no},      {CKA_WRAP, &yes, sizeof yes},
            {CKA_ENCRYPT, &no, sizeof no},    {CKA_VERIFY, &no, sizeof no},
            {CKA_MODULUS, n, ne[0].ulValueLen}, {CKA_PUBLIC_EXPONENT, e, ne[1].ulValueLen},
        };
        CK(C_CreateObject, src, imp, 8, &spub);
    } else {
        CK_BYTE value[32];
        CK(C_GenerateRandom, src, value, sizeof value);
        CK_ATTRIBUTE kt[] = {
            {CKA_CLASS, &secret, sizeof secret}, {CKA_KEY_TYPE, &aes, sizeof aes},
            {CKA_TOKEN, &no, sizeof no},         {CKA_PRIVATE, &yes, sizeof yes},
            {CKA_SENSITIVE, &yes, sizeof yes},   {CKA_WRAP, &yes, sizeof yes},
            {CKA_UNWRAP, &yes, sizeof yes},      {CKA_VALUE, value, sizeof value},
        };
        CK(C_CreateObject, src, kt, 8, &skek);
        CK(C_CreateObject, dst, kt, 8, &dkek);
        memset(value, 0, sizeof value);
    }
    double t_setup = now();

    /* The source keys: one enumeration, one attribute read each. */
    CK_ATTRIBUTE filter[] = {{CKA_CLASS, &secret, sizeof secret}, {CKA_TOKEN, &yes, sizeof yes},
                             {CKA_EXTRACTABLE, &yes, sizeof yes}};
    CK_ULONG nkeys = 0;
    CK_OBJECT_HANDLE *handles = find_all(src, filter, 3, &nkeys);
    struct key *keys = xmalloc(nkeys * sizeof *keys);
    for (CK_ULONG i = 0; i < nkeys; i++) {
        keys[i].h = handles[i];
        read_key(src, &keys[i]);
    }
    free(handles);
    double t_enum = now();

    CK_RSA_PKCS_OAEP_PARAMS oaep_params = {CKM_SHA_1, CKG_MGF1_SHA1, CKZ_DATA_SPECIFIED, NULL, 0};
    CK_MECHANISM oaep = {CKM_RSA_PKCS_OAEP, &oaep_params, sizeof oaep_params};
    CK_MECHANISM kwpm = {CKM_AES_KEY_WRAP_PAD, NULL, 0};
    CK_MECHANISM aesgen = {CKM_AES_KEY_GEN, NULL, 0};
    CK_ATTRIBUTE ephgen[] = {
        {CKA_CLASS, &secret, sizeof secret}, {CKA_KEY_TYPE, &aes, sizeof aes},
        {CKA_TOKEN, &no, sizeof no},         {CKA_PRIVATE, &yes, sizeof yes},
        {CKA_SENSITIVE, &yes, sizeof yes},   {CKA_EXTRACTABLE, &yes, sizeof yes},
        {CKA_WRAP, &yes, sizeof yes},        {CKA_ENCRYPT, &no, sizeof no},
        {CKA_DECRYPT, &no, sizeof no},       {CKA_VALUE_LEN, &aes256, sizeof aes256},
    };
    CK_ATTRIBUTE ephunw[] = {
        {CKA_CLASS, &secret, sizeof secret}, {CKA_KEY_TYPE, &aes, sizeof aes},
        {CKA_TOKEN, &no, sizeof no},         {CKA_PRIVATE, &yes, sizeof yes},
        {CKA_SENSITIVE, &yes, sizeof yes},   {CKA_EXTRACTABLE, &no, sizeof no},
        {CKA_UNWRAP, &yes, sizeof yes},      {CKA_ENCRYPT, &no, sizeof no},
        {CKA_DECRYPT, &no, sizeof no},
    };

    t_mark = now();
    for (CK_ULONG i = 0; i < nkeys; i++) {
        struct key *k = &keys[i];
        current = key_name(k);
        CK_BYTE blob_eph[1024], blob_key[1024];
        CK_ULONG len_eph = sizeof blob_eph, len_key = sizeof blob_key;
        CK_ATTRIBUTE t[5 + NFLAGS];
        CK_ULONG nt = key_template(k, t, &secret, &yes);
        CK_OBJECT_HANDLE made = 0;
        if (rsa_aes) {
            CK_OBJECT_HANDLE eph = 0, deph = 0;
            CK(C_GenerateKey, src, &aesgen, ephgen, 10, &eph);
            lap(T_GEN);
            CK(C_WrapKey, src, &oaep, spub, eph, blob_eph, &len_eph);
            lap(T_WRAP_OAEP);
            CK(C_WrapKey, src, &kwpm, eph, k->h, blob_key, &len_key);
            lap(T_WRAP_KWP);
            CK(C_DestroyObject, src, eph);
            lap(T_DESTROY_SRC);
            CK(C_UnwrapKey, dst, &oaep, dpriv, blob_eph, len_eph, ephunw, 9, &deph);
            lap(T_UNWRAP_OAEP);
            CK(C_UnwrapKey, dst, &kwpm, deph, blob_key, len_key, t, nt, &made);
            lap(T_UNWRAP_KWP);
            CK(C_DestroyObject, dst, deph);
            lap(T_DESTROY_DST);
        } else {
            CK(C_WrapKey, src, &kwpm, skek, k->h, blob_key, &len_key);
            lap(T_WRAP_KWP);
            if (via_copy)
                t[2].pValue = &no;   /* CKA_TOKEN: a session object first */
            CK(C_UnwrapKey, dst, &kwpm, dkek, blob_key, len_key, t, nt, &made);
            lap(T_UNWRAP_KWP);
            if (via_copy) {
                CK_ATTRIBUTE to_token = {CKA_TOKEN, &yes, sizeof yes};
                CK_OBJECT_HANDLE copy = 0;
                CK(C_CopyObject, dst, made, &to_token, 1, &copy);
                CK(C_DestroyObject, dst, made);
                lap(T_COPY);
            }
        }
    }
    double t_loop = now();
    current = "teardown";

    if (rsa_aes) {
        CK(C_DestroyObject, src, spub);
        CK(C_DestroyObject, dst, dpub);
        CK(C_DestroyObject, dst, dpriv);
    } else {
        CK(C_DestroyObject, src, skek);
        CK(C_DestroyObject, dst, dkek);
    }
    CK(C_Logout, src);
    CK(C_Logout, dst);
    CK(C_CloseSession, src);
    CK(C_CloseSession, dst);
    CK(C_Finalize, NULL);
    double t_end = now();
    free(keys);

    double loop = t_loop - t_enum;
    printf("raw_migrate: mode=%s keys=%lu setup=%.3f enumerate=%.3f loop=%.3f total=%.3f "
           "loop_keys_per_s=%.1f\n",
           mode, (unsigned long)nkeys, t_setup - t0, t_enum - t_setup, loop, t_end - t0,
           loop > 0 ? (double)nkeys / loop : 0.0);
    printf("raw_migrate: per key (ms):");
    for (int i = 0; i < T_COUNT; i++)
        if (t_sum[i] > 0)
            printf(" %s=%.3f", t_names[i], nkeys ? 1e3 * t_sum[i] / (double)nkeys : 0.0);
    printf("\n");
    return 0;
}
