/* p11prof.c - a timing pass-through PKCS#11 module for bench/migrate.sh (profiling only).
 *
 * Load it instead of the real module (module-path= in a token URI, or as a program's MODULE
 * argument). It forwards every call to the real module (env P11PROF_MODULE, default SoftHSM2)
 * and adds up, per function, the calls and the wall time spent inside the real module. At
 * exit it writes "FUNCTION CALLS SECONDS" lines, then "total CALLS SECONDS" and
 * "process SECONDS" (the time from the first C_GetFunctionList to exit) to the file named by
 * env P11PROF_OUT (default: stderr). Functions never called are left out.
 *
 * Build: cc -O2 -shared -fPIC $(pkg-config --cflags p11-kit-1) p11prof.c -o libp11prof.so -ldl */
#define _POSIX_C_SOURCE 200809L
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <p11-kit/pkcs11.h>

#define PROF_DEFAULT_MODULE "/usr/lib/softhsm/libsofthsm2.so"

/* ---- the 2.40 function list but C_GetFunctionList: X(name, parameters, arguments) ---- */
#define PROF_FUNCTIONS(X)                                                                   \
    X(C_Initialize, (CK_VOID_PTR a), (a))                                                    \
    X(C_Finalize, (CK_VOID_PTR a), (a))                                                      \
    X(C_GetInfo, (CK_INFO_PTR a), (a))                                                       \
    X(C_GetSlotList, (CK_BBOOL a, CK_SLOT_ID_PTR b, CK_ULONG_PTR c), (a, b, c))              \
    X(C_GetSlotInfo, (CK_SLOT_ID a, CK_SLOT_INFO_PTR b), (a, b))                             \
    X(C_GetTokenInfo, (CK_SLOT_ID a, CK_TOKEN_INFO_PTR b), (a, b))                           \
    X(C_GetMechanismList, (CK_SLOT_ID a, CK_MECHANISM_TYPE_PTR b, CK_ULONG_PTR c),           \
      (a, b, c))                                                                             \
    X(C_GetMechanismInfo, (CK_SLOT_ID a, CK_MECHANISM_TYPE b, CK_MECHANISM_INFO_PTR c),      \
      (a, b, c))                                                                             \
    X(C_InitToken, (CK_SLOT_ID a, CK_UTF8CHAR_PTR b, CK_ULONG c, CK_UTF8CHAR_PTR d),         \
      (a, b, c, d))                                                                          \
    X(C_InitPIN, (CK_SESSION_HANDLE a, CK_UTF8CHAR_PTR b, CK_ULONG c), (a, b, c))            \
    X(C_SetPIN,                                                                              \
      (CK_SESSION_HANDLE a, CK_UTF8CHAR_PTR b, CK_ULONG c, CK_UTF8CHAR_PTR d, CK_ULONG e),   \
      (a, b, c, d, e))                                                                       \
    X(C_OpenSession,                                                                         \
      (CK_SLOT_ID a, CK_FLAGS b, CK_VOID_PTR c, CK_NOTIFY d, CK_SESSION_HANDLE_PTR e),       \
      (a, b, c, d, e))                                                                       \
    X(C_CloseSession, (CK_SESSION_HANDLE a), (a))                                            \
    X(C_CloseAllSessions, (CK_SLOT_ID a), (a))                                               \
    X(C_GetSessionInfo, (CK_SESSION_HANDLE a, CK_SESSION_INFO_PTR b), (a, b))                \
    X(C_GetOperationState, (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG_PTR c), (a, b, c))  \
    X(C_SetOperationState,                                                                   \
      (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c, CK_OBJECT_HANDLE d,                   \
       CK_OBJECT_HANDLE e),                                                                  \
      (a, b, c, d, e))                                                                       \
    X(C_Login, (CK_SESSION_HANDLE a, CK_USER_TYPE b, CK_UTF8CHAR_PTR c, CK_ULONG d),         \
      (a, b, c, d))                                                                          \
    X(C_Logout, (CK_SESSION_HANDLE a), (a))                                                  \
    X(C_CreateObject,                                                                        \
      (CK_SESSION_HANDLE a, CK_ATTRIBUTE_PTR b, CK_ULONG c, CK_OBJECT_HANDLE_PTR d),         \
      (a, b, c, d))                                                                          \
    X(C_CopyObject,                                                                          \
      (CK_SESSION_HANDLE a, CK_OBJECT_HANDLE b, CK_ATTRIBUTE_PTR c, CK_ULONG d,              \
       CK_OBJECT_HANDLE_PTR e),                                                              \
      (a, b, c, d, e))                                                                       \
    X(C_DestroyObject, (CK_SESSION_HANDLE a, CK_OBJECT_HANDLE b), (a, b))                    \
    X(C_GetObjectSize, (CK_SESSION_HANDLE a, CK_OBJECT_HANDLE b, CK_ULONG_PTR c), (a, b, c)) \
    X(C_GetAttributeValue,                                                                   \
      (CK_SESSION_HANDLE a, CK_OBJECT_HANDLE b, CK_ATTRIBUTE_PTR c, CK_ULONG d),             \
      (a, b, c, d))                                                                          \
    X(C_SetAttributeValue,                                                                   \
      (CK_SESSION_HANDLE a, CK_OBJECT_HANDLE b, CK_ATTRIBUTE_PTR c, CK_ULONG d),             \
      (a, b, c, d))                                                                          \
    X(C_FindObjectsInit, (CK_SESSION_HANDLE a, CK_ATTRIBUTE_PTR b, CK_ULONG c), (a, b, c))   \
    X(C_FindObjects,                                                                         \
      (CK_SESSION_HANDLE a, CK_OBJECT_HANDLE_PTR b, CK_ULONG c, CK_ULONG_PTR d),             \
      (a, b, c, d))                                                                          \
    X(C_FindObjectsFinal, (CK_SESSION_HANDLE a), (a))                                        \
    X(C_EncryptInit, (CK_SESSION_HANDLE a, CK_MECHANISM_PTR b, CK_OBJECT_HANDLE c),          \
      (a, b, c))                                                                             \
    X(C_Encrypt,                                                                             \
      (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c, CK_BYTE_PTR d, CK_ULONG_PTR e),       \
      (a, b, c, d, e))                                                                       \
    X(C_EncryptUpdate,                                                                       \
      (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c, CK_BYTE_PTR d, CK_ULONG_PTR e),       \
      (a, b, c, d, e))                                                                       \
    X(C_EncryptFinal, (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG_PTR c), (a, b, c))       \
    X(C_DecryptInit, (CK_SESSION_HANDLE a, CK_MECHANISM_PTR b, CK_OBJECT_HANDLE c),          \
      (a, b, c))                                                                             \
    X(C_Decrypt,                                                                             \
      (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c, CK_BYTE_PTR d, CK_ULONG_PTR e),       \
      (a, b, c, d, e))                                                                       \
    X(C_DecryptUpdate,                                                                       \
      (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c, CK_BYTE_PTR d, CK_ULONG_PTR e),       \
      (a, b, c, d, e))                                                                       \
    X(C_DecryptFinal, (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG_PTR c), (a, b, c))       \
    X(C_DigestInit, (CK_SESSION_HANDLE a, CK_MECHANISM_PTR b), (a, b))                       \
    X(C_Digest,                                                                              \
      (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c, CK_BYTE_PTR d, CK_ULONG_PTR e),       \
      (a, b, c, d, e))                                                                       \
    X(C_DigestUpdate, (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c), (a, b, c))           \
    X(C_DigestKey, (CK_SESSION_HANDLE a, CK_OBJECT_HANDLE b), (a, b))                        \
    X(C_DigestFinal, (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG_PTR c), (a, b, c))        \
    X(C_SignInit, (CK_SESSION_HANDLE a, CK_MECHANISM_PTR b, CK_OBJECT_HANDLE c), (a, b, c))  \
    X(C_Sign,                                                                                \
      (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c, CK_BYTE_PTR d, CK_ULONG_PTR e),       \
      (a, b, c, d, e))                                                                       \
    X(C_SignUpdate, (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c), (a, b, c))             \
    X(C_SignFinal, (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG_PTR c), (a, b, c))          \
    X(C_SignRecoverInit, (CK_SESSION_HANDLE a, CK_MECHANISM_PTR b, CK_OBJECT_HANDLE c),      \
      (a, b, c))                                                                             \
    X(C_SignRecover,                                                                         \
      (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c, CK_BYTE_PTR d, CK_ULONG_PTR e),       \
      (a, b, c, d, e))                                                                       \
    X(C_VerifyInit, (CK_SESSION_HANDLE a, CK_MECHANISM_PTR b, CK_OBJECT_HANDLE c),           \
      (a, b, c))                                                                             \
    X(C_Verify, (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c, CK_BYTE_PTR d, CK_ULONG e), \
      (a, b, c, d, e))                                                                       \
    X(C_VerifyUpdate, (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c), (a, b, c))           \
    X(C_VerifyFinal, (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c), (a, b, c))            \
    X(C_VerifyRecoverInit, (CK_SESSION_HANDLE a, CK_MECHANISM_PTR b, CK_OBJECT_HANDLE c),    \
      (a, b, c))                                                                             \
    X(C_VerifyRecover,                                                                       \
      (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c, CK_BYTE_PTR d, CK_ULONG_PTR e),       \
      (a, b, c, d, e))                                                                       \
    X(C_DigestEncryptUpdate,                                                                 \
      (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c, CK_BYTE_PTR d, CK_ULONG_PTR e),       \
      (a, b, c, d, e))                                                                       \
    X(C_DecryptDigestUpdate,                                                                 \
      (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c, CK_BYTE_PTR d, CK_ULONG_PTR e),       \
      (a, b, c, d, e))                                                                       \
    X(C_SignEncryptUpdate,                                                                   \
      (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c, CK_BYTE_PTR d, CK_ULONG_PTR e),       \
      (a, b, c, d, e))                                                                       \
    X(C_DecryptVerifyUpdate,                                                                 \
      (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c, CK_BYTE_PTR d, CK_ULONG_PTR e),       \
      (a, b, c, d, e))                                                                       \
    X(C_GenerateKey,                                                                         \
      (CK_SESSION_HANDLE a, CK_MECHANISM_PTR b, CK_ATTRIBUTE_PTR c, CK_ULONG d,              \
       CK_OBJECT_HANDLE_PTR e),                                                              \
      (a, b, c, d, e))                                                                       \
    X(C_GenerateKeyPair,                                                                     \
      (CK_SESSION_HANDLE a, CK_MECHANISM_PTR b, CK_ATTRIBUTE_PTR c, CK_ULONG d,              \
       CK_ATTRIBUTE_PTR e, CK_ULONG f, CK_OBJECT_HANDLE_PTR g, CK_OBJECT_HANDLE_PTR h),      \
      (a, b, c, d, e, f, g, h))                                                              \
    X(C_WrapKey,                                                                             \
      (CK_SESSION_HANDLE a, CK_MECHANISM_PTR b, CK_OBJECT_HANDLE c, CK_OBJECT_HANDLE d,      \
       CK_BYTE_PTR e, CK_ULONG_PTR f),                                                       \
      (a, b, c, d, e, f))                                                                    \
    X(C_UnwrapKey,                                                                           \
      (CK_SESSION_HANDLE a, CK_MECHANISM_PTR b, CK_OBJECT_HANDLE c, CK_BYTE_PTR d,           \
       CK_ULONG e, CK_ATTRIBUTE_PTR f, CK_ULONG g, CK_OBJECT_HANDLE_PTR h),                  \
      (a, b, c, d, e, f, g, h))                                                              \
    X(C_DeriveKey,                                                                           \
      (CK_SESSION_HANDLE a, CK_MECHANISM_PTR b, CK_OBJECT_HANDLE c, CK_ATTRIBUTE_PTR d,      \
       CK_ULONG e, CK_OBJECT_HANDLE_PTR f),                                                  \
      (a, b, c, d, e, f))                                                                    \
    X(C_SeedRandom, (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c), (a, b, c))             \
    X(C_GenerateRandom, (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c), (a, b, c))         \
    X(C_GetFunctionStatus, (CK_SESSION_HANDLE a), (a))                                       \
    X(C_CancelFunction, (CK_SESSION_HANDLE a), (a))                                          \
    X(C_WaitForSlotEvent, (CK_FLAGS a, CK_SLOT_ID_PTR b, CK_VOID_PTR c), (a, b, c))

enum {
#define X(name, params, args) FN_##name,
    PROF_FUNCTIONS(X)
#undef X
    FN_COUNT
};

static const char *const fn_names[FN_COUNT] = {
#define X(name, params, args) #name,
    PROF_FUNCTIONS(X)
#undef X
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static CK_FUNCTION_LIST *real;
static unsigned long calls[FN_COUNT];
static double seconds[FN_COUNT];
static double started;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void report(void)
{
    const char *path = getenv("P11PROF_OUT");
    FILE *f = path && *path ? fopen(path, "w") : NULL;
    FILE *out = f ? f : stderr;
    unsigned long n = 0;
    double t = 0;
    pthread_mutex_lock(&lock);
    for (int i = 0; i < FN_COUNT; i++) {
        if (!calls[i])
            continue;
        fprintf(out, "%s %lu %.6f\n", fn_names[i], calls[i], seconds[i]);
        n += calls[i];
        t += seconds[i];
    }
    fprintf(out, "total %lu %.6f\nprocess %.6f\n", n, t, now() - started);
    pthread_mutex_unlock(&lock);
    if (f)
        fclose(f);
}

static CK_FUNCTION_LIST *load(void)
{
    pthread_mutex_lock(&lock);
    if (!real) {
        const char *path = getenv("P11PROF_MODULE");
        if (!path || !*path)
            path = PROF_DEFAULT_MODULE;
        void *dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
        void *sym = dl ? dlsym(dl, "C_GetFunctionList") : NULL;
        CK_C_GetFunctionList get = NULL;
        if (sym)
            memcpy(&get, &sym, sizeof get);
        CK_FUNCTION_LIST *fl = NULL;
        if (!get || get(&fl) != CKR_OK || !fl) {
            fprintf(stderr, "p11prof: cannot load %s: %s\n", path, dl ? "no function list" : dlerror());
        } else {
            real = fl;
            started = now();
            atexit(report);   /* the real module is never dlclosed */
        }
    }
    CK_FUNCTION_LIST *fl = real;
    pthread_mutex_unlock(&lock);
    return fl;
}

#define X(name, params, args)                                                                \
    static CK_RV w_##name params                                                             \
    {                                                                                        \
        CK_FUNCTION_LIST *fl = real;                                                         \
        if (!fl)                                                                             \
            return CKR_GENERAL_ERROR;                                                        \
        if (!fl->name)                                                                       \
            return CKR_FUNCTION_NOT_SUPPORTED;                                               \
        double t0 = now();                                                                   \
        CK_RV rv = fl->name args;                                                            \
        double dt = now() - t0;                                                              \
        pthread_mutex_lock(&lock);                                                           \
        calls[FN_##name]++;                                                                  \
        seconds[FN_##name] += dt;                                                            \
        pthread_mutex_unlock(&lock);                                                         \
        return rv;                                                                           \
    }
PROF_FUNCTIONS(X)
#undef X

static CK_RV get_function_list(CK_FUNCTION_LIST_PTR_PTR out);

static CK_FUNCTION_LIST function_list = {
    .version = {2, 40},
#define X(name, params, args) .name = w_##name,
    PROF_FUNCTIONS(X)
#undef X
    .C_GetFunctionList = get_function_list,
};

static CK_RV get_function_list(CK_FUNCTION_LIST_PTR_PTR out)
{
    if (!out)
        return CKR_ARGUMENTS_BAD;
    if (!load())
        return CKR_GENERAL_ERROR;
    *out = &function_list;
    return CKR_OK;
}

CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR out) { return get_function_list(out); }
