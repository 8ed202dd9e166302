/* module.c - loading PKCS#11 modules (dlopen, C_GetInterface / C_GetFunctionList,
 * C_Initialize once per library), slots, tokens and mechanisms. */
#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hsm_p11.h"
#include "softhsm2/hsm_softhsm2.h"

/* Each module binds its own symbols first. A module may dlopen helpers RTLD_GLOBAL
 * (openCryptoki 3.8 so loads libpkcs11_sw.so, which exports object_create); a module loaded
 * after it would otherwise call that function for its own (tpm2-pkcs11 1.9's C_CreateObject
 * then returns openCryptoki's handles: CKR_KEY_HANDLE_INVALID on the next call). A process
 * with a sanitizer runtime (ASan, TSan) refuses RTLD_DEEPBIND, whoever asks (their malloc
 * would be bypassed): there the plain lookup stays, and tests/integration/modules_matrix
 * shows the difference. Asked at run time: libhsmsh-route.so is not instrumented, yet may be
 * loaded by a process that is. */
static int deepbind(void)
{
#ifdef RTLD_DEEPBIND
    if (!dlsym(RTLD_DEFAULT, "__asan_init") && !dlsym(RTLD_DEFAULT, "__tsan_init"))
        return RTLD_DEEPBIND;
#endif
    return 0;
}

struct hsm_module {
    char path[PATH_MAX];
    void *dl;
    CK_FUNCTION_LIST *fl;
    int refs;
    int initialized_here;   /* we called C_Initialize, so we call C_Finalize */
    char *init_reserved;    /* C_Initialize's pReserved, or NULL */
    hsm_module *next;
};

/* Each library is loaded once per process and shared (libp11 shares it too). */
static hsm_module *loaded;
static pthread_mutex_t loaded_lock = PTHREAD_MUTEX_INITIALIZER;

/* PKCS#11 3.0 C_GetInterface, declared here because p11-kit's header is 2.40. */
typedef struct { CK_UTF8CHAR *name; void *functions; CK_FLAGS flags; } interface_30;
typedef CK_RV (*get_interface_fn)(CK_UTF8CHAR *, CK_VERSION *, interface_30 **, CK_FLAGS);

/* Why C_Initialize failed and what to try, in one sentence after the module's name. */
static int init_failed(hsm_module *m, CK_RV rv, hsm_err *err)
{
    char hex[32];
    const char *name = hsm_name_or_hex(HSM_NS_CKR, rv, hex, sizeof hex);
    const char *args = m->init_reserved;
    if (rv == CKR_ARGUMENTS_BAD && !args)
        hsm_err_set(err, "cannot initialise PKCS#11 module %s: C_Initialize: %s. It may need "
                    "initialisation arguments (C_Initialize pReserved, e.g. NSS softokn's "
                    "configdir='sql:DIR' ...): give them as x-init-reserved= in the URI's query "
                    "(percent-encoded), or register the module with p11-kit (a .module file "
                    "with module: and x-init-reserved:) and name it with module-name=",
                    m->path, name);
    else if (args)
        hsm_err_set(err, "cannot initialise PKCS#11 module %s: C_Initialize: %s with the "
                    "initialisation arguments \"%.160s%s\"%s: check them against the module's "
                    "documentation (and that the directories they name exist)", m->path, name,
                    args, strlen(args) > 160 ? "..." : "",
                    (rv & CKR_VENDOR_DEFINED) ? " (a vendor-defined code)" : "");
    else
        hsm_err_set(err, "cannot initialise PKCS#11 module %s: C_Initialize: %s. Check the "
                    "module's own configuration (its configuration file and environment "
                    "variables) and that any daemon or device it needs is running", m->path,
                    name);
    err->rv = rv;
    snprintf(err->fn, sizeof err->fn, "C_Initialize");
    return -1;
}

static int initialize(hsm_module *m, hsm_err *err)
{
    CK_C_INITIALIZE_ARGS args;
    memset(&args, 0, sizeof args);
    args.flags = CKF_OS_LOCKING_OK;
    args.pReserved = m->init_reserved;
    CK_RV rv = m->fl->C_Initialize(&args);
    if (rv == CKR_CRYPTOKI_ALREADY_INITIALIZED)
        return 0;
    if (rv != CKR_OK)
        return init_failed(m, rv, err);
    m->initialized_here = 1;
    return 0;
}

static int bind_functions(hsm_module *m, hsm_err *err)
{
    get_interface_fn get_interface = (get_interface_fn)dlsym(m->dl, "C_GetInterface");
    if (get_interface) {
        interface_30 *iface = NULL;
        if (get_interface(NULL, NULL, &iface, 0) == CKR_OK && iface && iface->functions) {
            /* A 3.x function list begins with the 2.40 layout. */
            m->fl = iface->functions;
            return 0;
        }
    }
    CK_C_GetFunctionList get_list = (CK_C_GetFunctionList)dlsym(m->dl, "C_GetFunctionList");
    if (!get_list)
        return hsm_err_set(err, "%s is not a PKCS#11 module (no C_GetFunctionList)", m->path);
    CK_RV rv = get_list(&m->fl);
    if (rv != CKR_OK)
        return hsm_err_rv(err, "C_GetFunctionList", rv);
    if (!m->fl)
        return hsm_err_set(err, "%s returned no function list", m->path);
    return 0;
}

static int same_args(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

hsm_module *hsm_module_load(const char *path_or_name, hsm_err *err)
{
    return hsm_module_load_init(path_or_name, NULL, err);
}

hsm_module *hsm_module_load_init(const char *path_or_name, const char *init_reserved,
                                 hsm_err *err)
{
    char want[PATH_MAX];
    hsm_registration reg;
    hsm_err_clear(err);
    if (!path_or_name || !*path_or_name) {
        const char *def = hsm_softhsm2_library();
        if (!def) {
            hsm_err_set(err, "no module-path given and SoftHSM2 (the default module) is not "
                        "installed: apt-get install softhsm2");
            return NULL;
        }
        if (!realpath(def, want))
            snprintf(want, sizeof want, "%s", def);
    } else if (!strchr(path_or_name, '/')) {
        if (hsm_p11kit_lookup(path_or_name, NULL, &reg, err) != 0)
            return NULL;
        if (!realpath(reg.path, want)) {
            hsm_err_set(err, "%s names module %s, which does not exist", reg.file, reg.path);
            return NULL;
        }
        if (!init_reserved && reg.has_init_reserved)
            init_reserved = reg.init_reserved;
    } else if (!realpath(path_or_name, want)) {
        hsm_err_set(err, "cannot open PKCS#11 module %s: no such file", path_or_name);
        return NULL;
    }

    pthread_mutex_lock(&loaded_lock);
    for (hsm_module *m = loaded; m; m = m->next)
        if (strcmp(m->path, want) == 0) {
            if (init_reserved && !same_args(init_reserved, m->init_reserved)) {
                pthread_mutex_unlock(&loaded_lock);
                hsm_err_set(err, "PKCS#11 module %s is already initialised in this process "
                            "with %s initialisation arguments; a library is initialised once "
                            "per process, so give every URI naming it the same "
                            "x-init-reserved", want, m->init_reserved ? "other" : "no");
                return NULL;
            }
            m->refs++;
            pthread_mutex_unlock(&loaded_lock);
            return m;
        }
    hsm_module *m = calloc(1, sizeof *m);
    if (!m) {
        pthread_mutex_unlock(&loaded_lock);
        hsm_err_set(err, "out of memory");
        return NULL;
    }
    snprintf(m->path, sizeof m->path, "%s", want);
    if (init_reserved && !(m->init_reserved = strdup(init_reserved))) {
        pthread_mutex_unlock(&loaded_lock);
        free(m);
        hsm_err_set(err, "out of memory");
        return NULL;
    }
    if (hsm_softhsm2_is(m->path))
        hsm_softhsm2_prepare_env();
    m->dl = dlopen(m->path, RTLD_NOW | RTLD_LOCAL | deepbind());
    if (!m->dl) {
        hsm_err_set(err, "cannot load PKCS#11 module %s: %s", m->path, dlerror());
        goto fail;
    }
    if (bind_functions(m, err) != 0)
        goto fail;
    if (hsm_softhsm2_is(m->path))
        m->fl = hsm_softhsm2_guard(m->fl);
    if (initialize(m, err) != 0)
        goto fail;
    m->refs = 1;
    m->next = loaded;
    loaded = m;
    pthread_mutex_unlock(&loaded_lock);
    return m;
fail:
    if (m->dl)
        dlclose(m->dl);
    free(m->init_reserved);
    free(m);
    pthread_mutex_unlock(&loaded_lock);
    return NULL;
}

hsm_module *hsm_module_ref(hsm_module *m)
{
    pthread_mutex_lock(&loaded_lock);
    m->refs++;
    pthread_mutex_unlock(&loaded_lock);
    return m;
}

void hsm_module_unref(hsm_module *m)
{
    if (!m)
        return;
    pthread_mutex_lock(&loaded_lock);
    if (--m->refs > 0) {
        pthread_mutex_unlock(&loaded_lock);
        return;
    }
    for (hsm_module **p = &loaded; *p; p = &(*p)->next)
        if (*p == m) {
            *p = m->next;
            break;
        }
    pthread_mutex_unlock(&loaded_lock);
    if (m->initialized_here)
        m->fl->C_Finalize(NULL);
    /* dlclose is skipped on purpose: modules (SoftHSM2 among them) register atexit
     * handlers and thread-local destructors that must not outlive their code. */
    free(m->init_reserved);
    free(m);
}

CK_FUNCTION_LIST *hsm_module_functions(hsm_module *m) { return m->fl; }
const char *hsm_module_path(const hsm_module *m) { return m->path; }
const char *hsm_module_init_reserved(const hsm_module *m) { return m->init_reserved; }

int hsm_module_info(hsm_module *m, CK_INFO *out, hsm_err *err)
{
    CK_RV rv = m->fl->C_GetInfo(out);
    return rv == CKR_OK ? 0 : hsm_err_rv(err, "C_GetInfo", rv);
}

int hsm_slots(hsm_module *m, int token_present, CK_SLOT_ID **out, CK_ULONG *n, hsm_err *err)
{
    *out = NULL;
    *n = 0;
    for (int attempt = 0; attempt < 8; attempt++) {
        CK_ULONG count = 0;
        CK_RV rv = m->fl->C_GetSlotList(token_present ? CK_TRUE : CK_FALSE, NULL, &count);
        if (rv != CKR_OK)
            return hsm_err_rv(err, "C_GetSlotList", rv);
        CK_SLOT_ID *list = calloc(count ? count : 1, sizeof *list);
        if (!list)
            return hsm_err_set(err, "out of memory");
        rv = m->fl->C_GetSlotList(token_present ? CK_TRUE : CK_FALSE, list, &count);
        if (rv == CKR_BUFFER_TOO_SMALL) {   /* a slot appeared in between */
            free(list);
            continue;
        }
        if (rv != CKR_OK) {
            free(list);
            return hsm_err_rv(err, "C_GetSlotList", rv);
        }
        *out = list;
        *n = count;
        return 0;
    }
    return hsm_err_set(err, "C_GetSlotList: the slot list keeps changing");
}

int hsm_slot_info(hsm_module *m, CK_SLOT_ID slot, CK_SLOT_INFO *out, hsm_err *err)
{
    CK_RV rv = m->fl->C_GetSlotInfo(slot, out);
    return rv == CKR_OK ? 0 : hsm_err_rv(err, "C_GetSlotInfo", rv);
}

int hsm_token_info(hsm_module *m, CK_SLOT_ID slot, CK_TOKEN_INFO *out, hsm_err *err)
{
    CK_RV rv = m->fl->C_GetTokenInfo(slot, out);
    return rv == CKR_OK ? 0 : hsm_err_rv(err, "C_GetTokenInfo", rv);
}

int hsm_mechanisms(hsm_module *m, CK_SLOT_ID slot, CK_MECHANISM_TYPE **out, CK_ULONG *n,
                   hsm_err *err)
{
    CK_ULONG count = 0;
    *out = NULL;
    *n = 0;
    CK_RV rv = m->fl->C_GetMechanismList(slot, NULL, &count);
    if (rv != CKR_OK)
        return hsm_err_rv(err, "C_GetMechanismList", rv);
    CK_MECHANISM_TYPE *list = calloc(count ? count : 1, sizeof *list);
    if (!list)
        return hsm_err_set(err, "out of memory");
    rv = m->fl->C_GetMechanismList(slot, list, &count);
    if (rv != CKR_OK) {
        free(list);
        return hsm_err_rv(err, "C_GetMechanismList", rv);
    }
    *out = list;
    *n = count;
    return 0;
}

int hsm_mechanism_info(hsm_module *m, CK_SLOT_ID slot, CK_MECHANISM_TYPE t,
                       CK_MECHANISM_INFO *out, hsm_err *err)
{
    CK_RV rv = m->fl->C_GetMechanismInfo(slot, t, out);
    return rv == CKR_OK ? 0 : hsm_err_rv(err, "C_GetMechanismInfo", rv);
}

int hsm_init_token(hsm_module *m, CK_SLOT_ID slot, const unsigned char *so_pin, size_t so_len,
                   const char *label, hsm_err *err)
{
    unsigned char padded[32];
    size_t len = strlen(label);
    if (len > sizeof padded)
        return hsm_err_set(err, "token label \"%s\" is longer than 32 bytes", label);
    memset(padded, ' ', sizeof padded);
    memcpy(padded, label, len);
    CK_RV rv = m->fl->C_InitToken(slot, (CK_UTF8CHAR *)so_pin, so_len, padded);
    return rv == CKR_OK ? 0 : hsm_err_rv(err, "C_InitToken", rv);
}

const char *hsm_field(const unsigned char *field, size_t width, char *buf, size_t buflen)
{
    size_t n = width;
    while (n > 0 && (field[n - 1] == ' ' || field[n - 1] == '\0'))
        n--;
    if (n >= buflen)
        n = buflen - 1;
    memcpy(buf, field, n);
    buf[n] = '\0';
    return buf;
}
