/* faultp11.c - a fault-injecting PKCS#11 module for tests.
 *
 * Wraps a real module (env HSMSH_FAULT_MODULE, default SoftHSM2). Exports C_GetFunctionList
 * only, returning a 2.40 function list whose other 67 entries forward to the real module's
 * list, counting every call (1-based, overall and per function; C_GetFunctionList is not
 * counted) and injecting the faults given in env HSMSH_FAULT (rules separated by ';'):
 *
 *   FN:K:CKR[:before|:after]   the K-th call of FN returns CKR; before (default) = without
 *                              calling the real function, after = call it, then return CKR
 *   FN:*:CKR[:before|:after]   every call of FN
 *   kill:N[:after]             SIGKILL the process at the N-th call overall (before it is
 *                              forwarded, or after it returned)
 *   kill:FN:K[:after]          the same at the K-th call of FN
 *
 * CKR is a name (CKR_DEVICE_ERROR) or a number (0x30, 48). Env HSMSH_FAULT_COUNT=PATH: the
 * counts are written to PATH ("total N SECONDS", then "C_Xxx N SECONDS" for each of the 67 counted
 * functions) at C_Finalize, at exit (or dlclose), and just before a kill. Env
 * HSMSH_FAULT_TOKEN_FREE=BYTES: C_GetTokenInfo reports that much free private memory. Env
 * HSMSH_FAULT_LOG=PATH: one line appended per call, "N C_Xxx RV" (RV a CKR name; " injected"
 * follows a faked one; "KILL" / "KILL-after" for a kill). See README.md. */
#include <ctype.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <p11-kit/pkcs11.h>

#define FAULT_DEFAULT_MODULE "/usr/lib/softhsm/libsofthsm2.so"

/* ---- the 2.40 function list but C_GetFunctionList (67): X(name, parameters, arguments) ---- */
#define FAULT_FUNCTIONS(X)                                                                   \
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
    FAULT_FUNCTIONS(X)
#undef X
    FN_COUNT
};

static const char *const fn_names[FN_COUNT] = {
#define X(name, params, args) #name,
    FAULT_FUNCTIONS(X)
#undef X
};

/* ---- CKR names, with the standard (PKCS#11 2.40) values ---- */
static const struct { const char *name; unsigned long value; } ckr_names[] = {
    {"CKR_OK", 0x0}, {"CKR_CANCEL", 0x1}, {"CKR_HOST_MEMORY", 0x2},
    {"CKR_SLOT_ID_INVALID", 0x3}, {"CKR_GENERAL_ERROR", 0x5}, {"CKR_FUNCTION_FAILED", 0x6},
    {"CKR_ARGUMENTS_BAD", 0x7}, {"CKR_NO_EVENT", 0x8}, {"CKR_NEED_TO_CREATE_THREADS", 0x9},
    {"CKR_CANT_LOCK", 0xa}, {"CKR_ATTRIBUTE_READ_ONLY", 0x10},
    {"CKR_ATTRIBUTE_SENSITIVE", 0x11}, {"CKR_ATTRIBUTE_TYPE_INVALID", 0x12},
    {"CKR_ATTRIBUTE_VALUE_INVALID", 0x13}, {"CKR_ACTION_PROHIBITED", 0x1b},
    {"CKR_DATA_INVALID", 0x20}, {"CKR_DATA_LEN_RANGE", 0x21}, {"CKR_DEVICE_ERROR", 0x30},
    {"CKR_DEVICE_MEMORY", 0x31}, {"CKR_DEVICE_REMOVED", 0x32},
    {"CKR_ENCRYPTED_DATA_INVALID", 0x40}, {"CKR_ENCRYPTED_DATA_LEN_RANGE", 0x41},
    {"CKR_FUNCTION_CANCELED", 0x50}, {"CKR_FUNCTION_NOT_PARALLEL", 0x51},
    {"CKR_FUNCTION_NOT_SUPPORTED", 0x54}, {"CKR_KEY_HANDLE_INVALID", 0x60},
    {"CKR_KEY_SIZE_RANGE", 0x62}, {"CKR_KEY_TYPE_INCONSISTENT", 0x63},
    {"CKR_KEY_NOT_NEEDED", 0x64}, {"CKR_KEY_CHANGED", 0x65}, {"CKR_KEY_NEEDED", 0x66},
    {"CKR_KEY_INDIGESTIBLE", 0x67}, {"CKR_KEY_FUNCTION_NOT_PERMITTED", 0x68},
    {"CKR_KEY_NOT_WRAPPABLE", 0x69}, {"CKR_KEY_UNEXTRACTABLE", 0x6a},
    {"CKR_MECHANISM_INVALID", 0x70}, {"CKR_MECHANISM_PARAM_INVALID", 0x71},
    {"CKR_OBJECT_HANDLE_INVALID", 0x82}, {"CKR_OPERATION_ACTIVE", 0x90},
    {"CKR_OPERATION_NOT_INITIALIZED", 0x91}, {"CKR_PIN_INCORRECT", 0xa0},
    {"CKR_PIN_INVALID", 0xa1}, {"CKR_PIN_LEN_RANGE", 0xa2}, {"CKR_PIN_EXPIRED", 0xa3},
    {"CKR_PIN_LOCKED", 0xa4}, {"CKR_SESSION_CLOSED", 0xb0}, {"CKR_SESSION_COUNT", 0xb1},
    {"CKR_SESSION_HANDLE_INVALID", 0xb3}, {"CKR_SESSION_PARALLEL_NOT_SUPPORTED", 0xb4},
    {"CKR_SESSION_READ_ONLY", 0xb5}, {"CKR_SESSION_EXISTS", 0xb6},
    {"CKR_SESSION_READ_ONLY_EXISTS", 0xb7}, {"CKR_SESSION_READ_WRITE_SO_EXISTS", 0xb8},
    {"CKR_SIGNATURE_INVALID", 0xc0}, {"CKR_SIGNATURE_LEN_RANGE", 0xc1},
    {"CKR_TEMPLATE_INCOMPLETE", 0xd0}, {"CKR_TEMPLATE_INCONSISTENT", 0xd1},
    {"CKR_TOKEN_NOT_PRESENT", 0xe0}, {"CKR_TOKEN_NOT_RECOGNIZED", 0xe1},
    {"CKR_TOKEN_WRITE_PROTECTED", 0xe2}, {"CKR_UNWRAPPING_KEY_HANDLE_INVALID", 0xf0},
    {"CKR_UNWRAPPING_KEY_SIZE_RANGE", 0xf1}, {"CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT", 0xf2},
    {"CKR_USER_ALREADY_LOGGED_IN", 0x100}, {"CKR_USER_NOT_LOGGED_IN", 0x101},
    {"CKR_USER_PIN_NOT_INITIALIZED", 0x102}, {"CKR_USER_TYPE_INVALID", 0x103},
    {"CKR_USER_ANOTHER_ALREADY_LOGGED_IN", 0x104}, {"CKR_USER_TOO_MANY_TYPES", 0x105},
    {"CKR_WRAPPED_KEY_INVALID", 0x110}, {"CKR_WRAPPED_KEY_LEN_RANGE", 0x112},
    {"CKR_WRAPPING_KEY_HANDLE_INVALID", 0x113}, {"CKR_WRAPPING_KEY_SIZE_RANGE", 0x114},
    {"CKR_WRAPPING_KEY_TYPE_INCONSISTENT", 0x115}, {"CKR_RANDOM_SEED_NOT_SUPPORTED", 0x120},
    {"CKR_RANDOM_NO_RNG", 0x121}, {"CKR_DOMAIN_PARAMS_INVALID", 0x130},
    {"CKR_CURVE_NOT_SUPPORTED", 0x140}, {"CKR_BUFFER_TOO_SMALL", 0x150},
    {"CKR_SAVED_STATE_INVALID", 0x160}, {"CKR_INFORMATION_SENSITIVE", 0x170},
    {"CKR_STATE_UNSAVEABLE", 0x180}, {"CKR_CRYPTOKI_NOT_INITIALIZED", 0x190},
    {"CKR_CRYPTOKI_ALREADY_INITIALIZED", 0x191}, {"CKR_MUTEX_BAD", 0x1a0},
    {"CKR_MUTEX_NOT_LOCKED", 0x1a1}, {"CKR_NEW_PIN_MODE", 0x1b0}, {"CKR_NEXT_OTP", 0x1b1},
    {"CKR_EXCEEDED_MAX_ITERATIONS", 0x1c0}, {"CKR_FIPS_SELF_TEST_FAILED", 0x1c1},
    {"CKR_LIBRARY_LOAD_FAILED", 0x1c2}, {"CKR_PIN_TOO_WEAK", 0x1c3},
    {"CKR_PUBLIC_KEY_INVALID", 0x1c4}, {"CKR_FUNCTION_REJECTED", 0x200},
    {"CKR_VENDOR_DEFINED", 0x80000000UL},
};
#define N_CKR_NAMES (sizeof ckr_names / sizeof ckr_names[0])

/* ---- state ---- */
enum { RULE_FAIL, RULE_KILL };

struct rule {
    int kind;           /* RULE_FAIL or RULE_KILL */
    int fn;             /* FN_xxx, or -1 for a kill at the N-th call overall */
    unsigned long k;    /* the K-th call (1-based); 0 = every call ('*', fail rules only) */
    CK_RV rv;           /* RULE_FAIL: what to return */
    int after;          /* 1 = forward the call first */
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int loaded;                  /* load() ran (successfully or not) */
static CK_FUNCTION_LIST *real;      /* the real module's list; NULL if loading failed */
static char load_error[512];
static char rules_error[512];       /* non-empty: HSMSH_FAULT is malformed */
#define MAX_RULES 64
static struct rule rules[MAX_RULES];   /* static: nothing to leak when the module is dlclosed */
static size_t n_rules;
static unsigned long total_calls;
static unsigned long fn_calls[FN_COUNT];
static double fn_secs[FN_COUNT];    /* wall time spent inside the real module */

static double now_secs(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static const char *ckr_name(CK_RV rv, char *buf, size_t len)
{
    for (size_t i = 0; i < N_CKR_NAMES; i++)
        if (ckr_names[i].value == rv)
            return ckr_names[i].name;
    snprintf(buf, len, "0x%lx", (unsigned long)rv);
    return buf;
}

/* ---- HSMSH_FAULT parsing ---- */

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    return s;
}

/* A decimal count >= 1. */
static int parse_count(const char *s, unsigned long *out)
{
    if (!*s || !isdigit((unsigned char)*s))
        return -1;
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (*end || errno || v == 0)
        return -1;
    *out = v;
    return 0;
}

static int parse_ckr(const char *s, CK_RV *out)
{
    for (size_t i = 0; i < N_CKR_NAMES; i++)
        if (strcmp(ckr_names[i].name, s) == 0) {
            *out = ckr_names[i].value;
            return 0;
        }
    if (!isdigit((unsigned char)*s))
        return -1;
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 0);
    if (*end || errno)
        return -1;
    *out = v;
    return 0;
}

static int parse_fn(const char *s)
{
    for (int i = 0; i < FN_COUNT; i++)
        if (strcmp(fn_names[i], s) == 0)
            return i;
    return -1;
}

/* Parses one rule (already trimmed, non-empty) into *r; on error fills why. */
static int parse_rule(char *text, struct rule *r, char *why, size_t whylen)
{
    char *f[6];
    int n = 0;
    for (char *p = text;;) {
        char *colon = strchr(p, ':');
        if (n == 5) {
            snprintf(why, whylen, "too many ':' fields");
            return -1;
        }
        if (colon)
            *colon = '\0';
        f[n++] = trim(p);
        if (!colon)
            break;
        p = colon + 1;
    }
    memset(r, 0, sizeof *r);
    if (strcmp(f[0], "kill") == 0) {
        r->kind = RULE_KILL;
        int i = 1;
        if (n >= 2 && isdigit((unsigned char)f[1][0])) {
            r->fn = -1;
        } else if (n >= 3) {
            if ((r->fn = parse_fn(f[1])) < 0) {
                snprintf(why, whylen, "unknown function '%s'", f[1]);
                return -1;
            }
            i = 2;
        } else {
            snprintf(why, whylen, "expected kill:N[:after] or kill:FN:K[:after]");
            return -1;
        }
        if (parse_count(f[i], &r->k) != 0) {
            snprintf(why, whylen, "'%s' is not a call number (1, 2, ...)", f[i]);
            return -1;
        }
        i++;
        if (i < n) {
            if (strcmp(f[i], "after") == 0)
                r->after = 1;
            else if (strcmp(f[i], "before") != 0) {
                snprintf(why, whylen, "expected 'before' or 'after', not '%s'", f[i]);
                return -1;
            }
            i++;
        }
        if (i != n) {
            snprintf(why, whylen, "expected kill:N[:after] or kill:FN:K[:after]");
            return -1;
        }
        return 0;
    }
    r->kind = RULE_FAIL;
    if (n < 3 || n > 4) {
        snprintf(why, whylen, "expected FN:K:CKR[:before|:after] or kill:N[:after]");
        return -1;
    }
    if ((r->fn = parse_fn(f[0])) < 0) {
        snprintf(why, whylen, "unknown function '%s'", f[0]);
        return -1;
    }
    if (strcmp(f[1], "*") == 0)
        r->k = 0;
    else if (parse_count(f[1], &r->k) != 0) {
        snprintf(why, whylen, "'%s' is not a call number (1, 2, ...) or '*'", f[1]);
        return -1;
    }
    if (parse_ckr(f[2], &r->rv) != 0) {
        snprintf(why, whylen, "unknown return value '%s' (a CKR_ name or a number)", f[2]);
        return -1;
    }
    if (n == 4) {
        if (strcmp(f[3], "after") == 0)
            r->after = 1;
        else if (strcmp(f[3], "before") != 0) {
            snprintf(why, whylen, "expected 'before' or 'after', not '%s'", f[3]);
            return -1;
        }
    }
    return 0;
}

static void parse_rules(const char *spec)
{
    if (!spec)
        return;
    char *copy = strdup(spec);
    if (!copy) {
        snprintf(rules_error, sizeof rules_error, "faultp11: HSMSH_FAULT: out of memory");
        return;
    }
    char *save = NULL;
    for (char *tok = strtok_r(copy, ";", &save); tok; tok = strtok_r(NULL, ";", &save)) {
        char *text = trim(tok);
        if (!*text)
            continue;
        char shown[200], why[200];
        snprintf(shown, sizeof shown, "%s", text);
        if (n_rules == MAX_RULES) {
            snprintf(rules_error, sizeof rules_error,
                     "faultp11: HSMSH_FAULT: bad rule '%s': more than %d rules", shown, MAX_RULES);
            n_rules = 0;
            break;
        }
        if (parse_rule(text, &rules[n_rules], why, sizeof why) != 0) {
            snprintf(rules_error, sizeof rules_error,
                     "faultp11: HSMSH_FAULT: bad rule '%s': %s", shown, why);
            n_rules = 0;
            break;
        }
        n_rules++;
    }
    free(copy);
}

/* ---- counts and log ---- */

static void write_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t w = write(fd, buf, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return;
        buf += w;
        len -= (size_t)w;
    }
}

/* Writes HSMSH_FAULT_COUNT; the caller holds the lock. Failures are ignored. */
static void write_counts_locked(void)
{
    const char *path = getenv("HSMSH_FAULT_COUNT");
    if (!path || !*path)
        return;
    char buf[FN_COUNT * 64 + 64];
    double secs = 0;
    for (int i = 0; i < FN_COUNT; i++)
        secs += fn_secs[i];
    size_t len = (size_t)snprintf(buf, sizeof buf, "total %lu %.6f\n", total_calls, secs);
    for (int i = 0; i < FN_COUNT && len < sizeof buf; i++)
        len += (size_t)snprintf(buf + len, sizeof buf - len, "%s %lu %.6f\n", fn_names[i],
                                fn_calls[i], fn_secs[i]);
    if (len > sizeof buf)
        len = sizeof buf;
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return;
    write_all(fd, buf, len);
    close(fd);
}

static void write_counts(void)
{
    pthread_mutex_lock(&lock);
    write_counts_locked();
    pthread_mutex_unlock(&lock);
}

static void log_call(unsigned long n, int fn, const char *what)
{
    const char *path = getenv("HSMSH_FAULT_LOG");
    if (!path || !*path)
        return;
    char line[160];
    int len = snprintf(line, sizeof line, "%lu %s %s\n", n, fn_names[fn], what);
    if (len <= 0)
        return;
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0)
        return;
    write_all(fd, line, (size_t)len < sizeof line ? (size_t)len : sizeof line - 1);
    close(fd);
}

static void log_rv(unsigned long n, int fn, CK_RV rv, const char *suffix)
{
    if (!getenv("HSMSH_FAULT_LOG"))
        return;
    char buf[32], what[96];
    snprintf(what, sizeof what, "%s%s", ckr_name(rv, buf, sizeof buf), suffix);
    log_call(n, fn, what);
}

static void die_now(unsigned long n, int fn, const char *when)
{
    write_counts();
    log_call(n, fn, when);
    raise(SIGKILL);
    _exit(137);
}

/* ---- loading ---- */

static void at_exit(void)
{
    write_counts();
}

/* Loads the real module and parses the rules once; returns the real list or NULL. */
static CK_FUNCTION_LIST *load(void)
{
    pthread_mutex_lock(&lock);
    if (!loaded) {
        loaded = 1;
        parse_rules(getenv("HSMSH_FAULT"));
        const char *path = getenv("HSMSH_FAULT_MODULE");
        if (!path || !*path)
            path = FAULT_DEFAULT_MODULE;
        void *dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
        if (!dl) {
            const char *e = dlerror();
            snprintf(load_error, sizeof load_error, "faultp11: cannot load %s: %s", path,
                     e ? e : "unknown error");
        } else {
            CK_C_GetFunctionList get = (CK_C_GetFunctionList)dlsym(dl, "C_GetFunctionList");
            CK_FUNCTION_LIST *fl = NULL;
            if (!get)
                snprintf(load_error, sizeof load_error,
                         "faultp11: %s has no C_GetFunctionList", path);
            else if (get(&fl) != CKR_OK || !fl)
                snprintf(load_error, sizeof load_error,
                         "faultp11: C_GetFunctionList of %s failed", path);
            else
                real = fl;
            /* never dlclosed: the real module may have atexit handlers of its own */
        }
        atexit(at_exit);
    }
    CK_FUNCTION_LIST *fl = real;
    pthread_mutex_unlock(&lock);
    return fl;
}

/* ---- the call path ---- */

struct action {
    unsigned long n;    /* this call's number overall */
    int kill_before, kill_after;
    int fail;           /* 0 none, 1 before, 2 after */
    CK_RV rv;
};

static void begin(int fn, struct action *a)
{
    memset(a, 0, sizeof *a);
    pthread_mutex_lock(&lock);
    a->n = ++total_calls;
    unsigned long k = ++fn_calls[fn];
    for (size_t i = 0; i < n_rules; i++) {
        const struct rule *r = &rules[i];
        if (r->kind == RULE_KILL) {
            int hit = r->fn < 0 ? r->k == a->n : (r->fn == fn && r->k == k);
            if (hit) {
                if (r->after)
                    a->kill_after = 1;
                else
                    a->kill_before = 1;
            }
        } else if (!a->fail && r->fn == fn && (r->k == 0 || r->k == k)) {
            a->fail = r->after ? 2 : 1;
            a->rv = r->rv;
        }
    }
    pthread_mutex_unlock(&lock);
}

/* Counts the call, applies the rules, forwards to the real module. C_Initialize also
 * reports a malformed HSMSH_FAULT. */
#define X(name, params, args)                                                                \
    static CK_RV w_##name params                                                             \
    {                                                                                        \
        CK_FUNCTION_LIST *fl = load();                                                       \
        struct action act;                                                                   \
        CK_RV rv;                                                                            \
        begin(FN_##name, &act);                                                              \
        if (act.kill_before)                                                                 \
            die_now(act.n, FN_##name, "KILL");                                               \
        if (FN_##name == FN_C_Initialize && rules_error[0]) {                                \
            fprintf(stderr, "%s\n", rules_error);                                            \
            rv = CKR_ARGUMENTS_BAD;                                                          \
        } else if (act.fail == 1) {                                                          \
            rv = act.rv;                                                                     \
        } else {                                                                             \
            if (!fl)                                                                         \
                rv = CKR_GENERAL_ERROR;                                                      \
            else if (!fl->name)                                                              \
                rv = CKR_FUNCTION_NOT_SUPPORTED;                                             \
            else {                                                                           \
                double t0 = now_secs();                                                      \
                rv = fl->name args;                                                          \
                double dt = now_secs() - t0;                                                 \
                pthread_mutex_lock(&lock);                                                   \
                fn_secs[FN_##name] += dt;                                                    \
                pthread_mutex_unlock(&lock);                                                 \
            }                                                                                \
            if (act.fail == 2)                                                               \
                rv = act.rv;                                                                 \
        }                                                                                    \
        if (FN_##name == FN_C_Finalize)                                                      \
            write_counts();                                                                  \
        log_rv(act.n, FN_##name, rv, act.fail ? " injected" : "");                           \
        if (act.kill_after)                                                                  \
            die_now(act.n, FN_##name, "KILL-after");                                         \
        return rv;                                                                           \
    }
FAULT_FUNCTIONS(X)
#undef X

static CK_RV get_function_list(CK_FUNCTION_LIST_PTR_PTR out);

/* HSMSH_FAULT_TOKEN_FREE=BYTES: C_GetTokenInfo reports that much free private memory (a
 * small smart card on a real token that reports none). */
static CK_RV token_info(CK_SLOT_ID slot, CK_TOKEN_INFO_PTR info)
{
    CK_RV rv = w_C_GetTokenInfo(slot, info);
    const char *free_bytes = getenv("HSMSH_FAULT_TOKEN_FREE");
    if (rv == CKR_OK && info && free_bytes && *free_bytes)
        info->ulFreePrivateMemory = strtoul(free_bytes, NULL, 10);
    return rv;
}

static CK_FUNCTION_LIST function_list = {
    .version = {2, 40},
#define X(name, params, args) .name = w_##name,
    FAULT_FUNCTIONS(X)
#undef X
    .C_GetFunctionList = get_function_list,
};

static CK_RV get_function_list(CK_FUNCTION_LIST_PTR_PTR out)
{
    if (!out)
        return CKR_ARGUMENTS_BAD;
    if (!load()) {
        fprintf(stderr, "%s\n", load_error);
        return CKR_GENERAL_ERROR;
    }
    function_list.C_GetTokenInfo = token_info;
    *out = &function_list;
    return CKR_OK;
}

/* The only exported symbol (the target is built with hidden visibility). */
__attribute__((visibility("default"))) CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR out)
{
    return get_function_list(out);
}
