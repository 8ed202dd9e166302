/* route_bench.c - operations per second through one PKCS#11 module (SoftHSM2 directly, or
 * libhsmsh-route.so in front of it), for bench/route.sh.
 *
 *   route_bench MODULE PIN sign|encrypt THREADS SECONDS
 *   route_bench MODULE PIN find ROUNDS
 *
 * sign: C_SignInit + C_Sign (CKM_ECDSA, 32 bytes) with the private key labelled "bench-ec";
 * encrypt: C_EncryptInit + C_Encrypt (CKM_AES_CBC, 64 bytes) with the secret key "bench-aes".
 * Each thread opens its own session and finds its key once. find: C_FindObjectsInit with an
 * empty template + C_FindObjects until empty + C_FindObjectsFinal, ROUNDS times, one session
 * (the first round in a process is where the module reads each object's identity).
 * BENCH_TOKEN=LABEL picks the token (default: the first slot). Prints "ops N seconds S per_s R"
 * (for find: "objects N rounds K seconds S first S1 last SN"). */
#define _POSIX_C_SOURCE 200809L
#include <dlfcn.h>
#include <p11-kit/pkcs11.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static CK_FUNCTION_LIST *f;
static const char *pin, *mode;
static double seconds;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, CK_RV rv)
{
    fprintf(stderr, "route_bench: %s: 0x%lx\n", what, (unsigned long)rv);
    exit(1);
}

/* The slot whose token label is $BENCH_TOKEN (the first slot when it is not set). */
static CK_SLOT_ID pick_slot(void)
{
    CK_SLOT_ID slots[64];
    CK_ULONG n = 64;
    CK_RV rv = f->C_GetSlotList(CK_TRUE, slots, &n);
    if (rv != CKR_OK || n == 0)
        die("C_GetSlotList (no token?)", rv);
    const char *want = getenv("BENCH_TOKEN");
    for (CK_ULONG i = 0; want && i < n; i++) {
        CK_TOKEN_INFO ti;
        char label[33];
        if (f->C_GetTokenInfo(slots[i], &ti) != CKR_OK)
            continue;
        memcpy(label, ti.label, 32);
        label[32] = 0;
        for (int j = 31; j >= 0 && label[j] == ' '; j--)
            label[j] = 0;
        if (strcmp(label, want) == 0)
            return slots[i];
    }
    if (want)
        die("no token with the label in BENCH_TOKEN", 0);
    return slots[0];
}

static CK_SESSION_HANDLE open_session(void)
{
    CK_SESSION_HANDLE s;
    CK_RV rv;
    if ((rv = f->C_OpenSession(pick_slot(), CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s)))
        die("C_OpenSession", rv);
    rv = f->C_Login(s, CKU_USER, (CK_UTF8CHAR *)pin, strlen(pin));
    if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN)
        die("C_Login", rv);
    return s;
}

static CK_OBJECT_HANDLE find_key(CK_SESSION_HANDLE s, CK_OBJECT_CLASS cls, const char *label)
{
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof cls}, {CKA_LABEL, (void *)label, strlen(label)}};
    CK_OBJECT_HANDLE h = 0;
    CK_ULONG n = 0;
    CK_RV rv = f->C_FindObjectsInit(s, t, 2);
    if (rv == CKR_OK)
        rv = f->C_FindObjects(s, &h, 1, &n);
    f->C_FindObjectsFinal(s);
    if (rv != CKR_OK || n != 1)
        die(label, rv);
    return h;
}

static void *loop(void *out)
{
    CK_SESSION_HANDLE s = open_session();
    int sign = strcmp(mode, "sign") == 0;
    CK_OBJECT_HANDLE k = sign ? find_key(s, CKO_PRIVATE_KEY, "bench-ec")
                              : find_key(s, CKO_SECRET_KEY, "bench-aes");
    unsigned char in[64], buf[256], iv[16] = {0};
    memset(in, 7, sizeof in);
    CK_MECHANISM m = sign ? (CK_MECHANISM){CKM_ECDSA, NULL, 0}
                          : (CK_MECHANISM){CKM_AES_CBC, iv, sizeof iv};
    long ops = 0;
    double end = now() + seconds;
    while (now() < end) {
        for (int i = 0; i < 50; i++) {
            CK_ULONG len = sizeof buf;
            CK_RV rv = sign ? f->C_SignInit(s, &m, k) : f->C_EncryptInit(s, &m, k);
            if (rv == CKR_OK)
                rv = sign ? f->C_Sign(s, in, 32, buf, &len) : f->C_Encrypt(s, in, 64, buf, &len);
            if (rv != CKR_OK)
                die(sign ? "C_Sign" : "C_Encrypt", rv);
            ops++;
        }
    }
    f->C_CloseSession(s);
    *(long *)out = ops;
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: route_bench MODULE PIN sign|encrypt THREADS SECONDS | find ROUNDS\n");
        return 2;
    }
    void *dl = dlopen(argv[1], RTLD_NOW);
    CK_C_GetFunctionList gfl = dl ? (CK_C_GetFunctionList)dlsym(dl, "C_GetFunctionList") : NULL;
    if (!gfl || gfl(&f) != CKR_OK)
        die(dl ? "C_GetFunctionList" : dlerror(), 0);
    CK_C_INITIALIZE_ARGS ia = {0};
    ia.flags = CKF_OS_LOCKING_OK;
    CK_RV rv = f->C_Initialize(&ia);
    if (rv != CKR_OK)
        die("C_Initialize", rv);
    pin = argv[2];
    mode = argv[3];
    if (strcmp(mode, "find") == 0) {
        CK_SESSION_HANDLE s = open_session();
        int rounds = atoi(argv[4]);
        CK_OBJECT_HANDLE hs[512];
        long total = 0;
        double t0 = now(), first = 0, last = 0;
        for (int r = 0; r < rounds; r++) {
            double tr = now();
            CK_ULONG n;
            total = 0;
            if ((rv = f->C_FindObjectsInit(s, NULL, 0)) != CKR_OK)
                die("C_FindObjectsInit", rv);
            do {
                if ((rv = f->C_FindObjects(s, hs, 512, &n)) != CKR_OK)
                    die("C_FindObjects", rv);
                total += (long)n;
            } while (n > 0);
            f->C_FindObjectsFinal(s);
            last = now() - tr;
            if (r == 0)
                first = last;
        }
        printf("objects %ld rounds %d seconds %.3f first %.3f last %.3f\n", total, rounds,
               now() - t0, first, last);
    } else {
        int threads = atoi(argv[4]);
        seconds = argc > 5 ? atof(argv[5]) : 3;
        pthread_t th[16];
        long ops[16] = {0}, all = 0;
        double t0 = now();
        for (int i = 0; i < threads && i < 16; i++)
            pthread_create(&th[i], NULL, loop, &ops[i]);
        for (int i = 0; i < threads && i < 16; i++) {
            pthread_join(th[i], NULL);
            all += ops[i];
        }
        double t = now() - t0;
        printf("ops %ld seconds %.3f per_s %.1f\n", all, t, (double)all / t);
    }
    f->C_Finalize(NULL);
    return 0;
}
