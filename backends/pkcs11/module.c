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

struct hsm_module {
    char path[PATH_MAX];
    void *dl;
    CK_FUNCTION_LIST *fl;
    int refs;
    int initialized_here;   /* we called C_Initialize, so we call C_Finalize */
    hsm_module *next;
};

/* Each library is loaded once per process and shared (libp11 shares it too). */
static hsm_module *loaded;
static pthread_mutex_t loaded_lock = PTHREAD_MUTEX_INITIALIZER;

/* PKCS#11 3.0 C_GetInterface, declared here because p11-kit's header is 2.40. */
typedef struct { CK_UTF8CHAR *name; void *functions; CK_FLAGS flags; } interface_30;
typedef CK_RV (*get_interface_fn)(CK_UTF8CHAR *, CK_VERSION *, interface_30 **, CK_FLAGS);

/* Finds NAME.module in p11-kit's configuration and returns its "module:" path. */
static int resolve_registered(const char *name, char *out, size_t outlen, hsm_err *err)
{
    static const char *const dirs[] = {"/etc/pkcs11/modules", "/usr/share/p11-kit/modules", NULL};
    for (int i = 0; dirs[i]; i++) {
        char conf[PATH_MAX];
        snprintf(conf, sizeof conf, "%s/%s.module", dirs[i], name);
        FILE *f = fopen(conf, "r");
        if (!f)
            continue;
        char line[PATH_MAX + 32];
        int found = 0;
        while (!found && fgets(line, sizeof line, f)) {
            char *p = line;
            while (*p == ' ' || *p == '\t')
                p++;
            if (strncmp(p, "module:", 7) != 0)
                continue;
            p += 7;
            while (*p == ' ' || *p == '\t')
                p++;
            p[strcspn(p, "\r\n")] = '\0';
            if (p[0] == '/')
                snprintf(out, outlen, "%s", p);
            else
                snprintf(out, outlen, "%s/pkcs11/%s", "/usr/lib/x86_64-linux-gnu", p);
            found = 1;
        }
        fclose(f);
        if (found)
            return 0;
    }
    return hsm_err_set(err, "no PKCS#11 module is registered with p11-kit as \"%s\" "
                       "(give a module-path, or see /usr/share/p11-kit/modules)", name);
}

static int initialize(hsm_module *m, hsm_err *err)
{
    CK_C_INITIALIZE_ARGS args;
    memset(&args, 0, sizeof args);
    args.flags = CKF_OS_LOCKING_OK;
    CK_RV rv = m->fl->C_Initialize(&args);
    if (rv == CKR_CRYPTOKI_ALREADY_INITIALIZED)
        return 0;
    if (rv != CKR_OK)
        return hsm_err_rv(err, "C_Initialize", rv);
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

hsm_module *hsm_module_load(const char *path_or_name, hsm_err *err)
{
    char want[PATH_MAX];
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
        if (resolve_registered(path_or_name, want, sizeof want, err) != 0)
            return NULL;
    } else if (!realpath(path_or_name, want)) {
        hsm_err_set(err, "cannot open PKCS#11 module %s: no such file", path_or_name);
        return NULL;
    }

    pthread_mutex_lock(&loaded_lock);
    for (hsm_module *m = loaded; m; m = m->next)
        if (strcmp(m->path, want) == 0) {
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
    if (hsm_softhsm2_is(m->path))
        hsm_softhsm2_prepare_env();
    m->dl = dlopen(m->path, RTLD_NOW | RTLD_LOCAL);
    if (!m->dl) {
        hsm_err_set(err, "cannot load PKCS#11 module %s: %s", m->path, dlerror());
        goto fail;
    }
    if (bind_functions(m, err) != 0 || initialize(m, err) != 0)
        goto fail;
    m->refs = 1;
    m->next = loaded;
    loaded = m;
    pthread_mutex_unlock(&loaded_lock);
    return m;
fail:
    if (m->dl)
        dlclose(m->dl);
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
    free(m);
}

CK_FUNCTION_LIST *hsm_module_functions(hsm_module *m) { return m->fl; }
const char *hsm_module_path(const hsm_module *m) { return m->path; }

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
