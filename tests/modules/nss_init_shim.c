/* nss_init_shim.c - lets a PKCS#11 tool that passes no C_Initialize arguments (OpenSC's
 * pkcs11-tool) open an NSS softokn database of a test's own: C_GetFunctionList returns NSS's
 * function list with C_Initialize replaced by one that adds pReserved = $NSS_SHIM_INIT
 * ("configdir='sql:DIR' certPrefix='' keyPrefix='' secmod='secmod.db' flags="). Every other
 * call goes to NSS unchanged. NSS_SHIM_MODULE names softokn (default: Debian's path).
 *
 * Why not p11-kit: a second registration of libsoftokn3.so is dropped as a duplicate of
 * .ci/modules.sh's, and a copy of the library loaded beside it in one process fails C_Login
 * with CKR_USER_TYPE_INVALID (its key database is not opened); a registration is also
 * system-wide for root, seen by every other test.
 *
 * Built by tests/integration/modules_matrix.sh at run time:
 *   cc -shared -fPIC -I/usr/include/p11-kit-1 -o shim.so nss_init_shim.c -ldl
 */
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>

#include <p11-kit/pkcs11.h>

static CK_FUNCTION_LIST shim;
static CK_FUNCTION_LIST_PTR nss;

static CK_RV shim_initialize(CK_VOID_PTR args)
{
    CK_C_INITIALIZE_ARGS a;
    memset(&a, 0, sizeof a);
    if (args) memcpy(&a, args, sizeof a);
    else a.flags = CKF_OS_LOCKING_OK;
    a.pReserved = getenv("NSS_SHIM_INIT");
    return nss->C_Initialize(&a);
}

CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR list)
{
    if (!list) return CKR_ARGUMENTS_BAD;
    if (!nss) {
        const char *path = getenv("NSS_SHIM_MODULE");
        void *lib = dlopen(path && *path ? path : "/usr/lib/x86_64-linux-gnu/libsoftokn3.so",
                           RTLD_NOW | RTLD_LOCAL);
        if (!lib) return CKR_GENERAL_ERROR;
        CK_C_GetFunctionList get = (CK_C_GetFunctionList)dlsym(lib, "C_GetFunctionList");
        CK_FUNCTION_LIST_PTR l = NULL;
        if (!get || get(&l) != CKR_OK || !l) return CKR_GENERAL_ERROR;
        shim = *l;
        shim.C_Initialize = shim_initialize;
        nss = l;
    }
    *list = &shim;
    return CKR_OK;
}
