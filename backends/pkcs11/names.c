/* names.c - the one table of PKCS#11 names: CKR, CKA, CKM, CKK, CKO, CKC, CKU and the CKF
 * bits of CK_TOKEN_INFO.flags and CK_MECHANISM_INFO.flags.
 *
 * Values come from <p11-kit/pkcs11.h> (PKCS#11 2.40): the tables name its macros so the
 * compiler checks them. Names the header lacks (PKCS#11 3.0 ones, CKA_SUBPRIME_BITS, the
 * correctly spelt CKM_DSA_PROBABILISTIC_PARAMETER_GEN) are written as numbers, taken from the
 * OASIS 3.0 pkcs11t.h. Five CKR values are numbers on purpose: p11-kit numbers
 * CKR_EXCEEDED_MAX_ITERATIONS .. CKR_PUBLIC_KEY_INVALID 0x1c0..0x1c4, the standard (and every
 * module built on the OASIS headers, SoftHSM2 included) uses 0x1b5..0x1b9.
 *
 * Each table lists the preferred names in value order; the *_aliases tables hold the other
 * names of the same values (deprecated or misspelt ones), which hsm_value accepts and
 * hsm_name never returns. Lookups go through two indexes built once (pthread_once): one
 * sorted by value, one by case-folded name without the namespace prefix.
 */
#include "hsm_p11.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct hsm_nv {
    const char *name;
    CK_ULONG value;
} hsm_nv;

static const hsm_nv ckr_names[] = {
    { "CKR_OK",                                CKR_OK },
    { "CKR_CANCEL",                            CKR_CANCEL },
    { "CKR_HOST_MEMORY",                       CKR_HOST_MEMORY },
    { "CKR_SLOT_ID_INVALID",                   CKR_SLOT_ID_INVALID },
    { "CKR_GENERAL_ERROR",                     CKR_GENERAL_ERROR },
    { "CKR_FUNCTION_FAILED",                   CKR_FUNCTION_FAILED },
    { "CKR_ARGUMENTS_BAD",                     CKR_ARGUMENTS_BAD },
    { "CKR_NO_EVENT",                          CKR_NO_EVENT },
    { "CKR_NEED_TO_CREATE_THREADS",            CKR_NEED_TO_CREATE_THREADS },
    { "CKR_CANT_LOCK",                         CKR_CANT_LOCK },
    { "CKR_ATTRIBUTE_READ_ONLY",               CKR_ATTRIBUTE_READ_ONLY },
    { "CKR_ATTRIBUTE_SENSITIVE",               CKR_ATTRIBUTE_SENSITIVE },
    { "CKR_ATTRIBUTE_TYPE_INVALID",            CKR_ATTRIBUTE_TYPE_INVALID },
    { "CKR_ATTRIBUTE_VALUE_INVALID",           CKR_ATTRIBUTE_VALUE_INVALID },
    { "CKR_ACTION_PROHIBITED",                 CKR_ACTION_PROHIBITED },
    { "CKR_DATA_INVALID",                      CKR_DATA_INVALID },
    { "CKR_DATA_LEN_RANGE",                    CKR_DATA_LEN_RANGE },
    { "CKR_DEVICE_ERROR",                      CKR_DEVICE_ERROR },
    { "CKR_DEVICE_MEMORY",                     CKR_DEVICE_MEMORY },
    { "CKR_DEVICE_REMOVED",                    CKR_DEVICE_REMOVED },
    { "CKR_ENCRYPTED_DATA_INVALID",            CKR_ENCRYPTED_DATA_INVALID },
    { "CKR_ENCRYPTED_DATA_LEN_RANGE",          CKR_ENCRYPTED_DATA_LEN_RANGE },
    { "CKR_FUNCTION_CANCELED",                 CKR_FUNCTION_CANCELED },
    { "CKR_FUNCTION_NOT_PARALLEL",             CKR_FUNCTION_NOT_PARALLEL },
    { "CKR_FUNCTION_NOT_SUPPORTED",            CKR_FUNCTION_NOT_SUPPORTED },
    { "CKR_KEY_HANDLE_INVALID",                CKR_KEY_HANDLE_INVALID },
    { "CKR_KEY_SIZE_RANGE",                    CKR_KEY_SIZE_RANGE },
    { "CKR_KEY_TYPE_INCONSISTENT",             CKR_KEY_TYPE_INCONSISTENT },
    { "CKR_KEY_NOT_NEEDED",                    CKR_KEY_NOT_NEEDED },
    { "CKR_KEY_CHANGED",                       CKR_KEY_CHANGED },
    { "CKR_KEY_NEEDED",                        CKR_KEY_NEEDED },
    { "CKR_KEY_INDIGESTIBLE",                  CKR_KEY_INDIGESTIBLE },
    { "CKR_KEY_FUNCTION_NOT_PERMITTED",        CKR_KEY_FUNCTION_NOT_PERMITTED },
    { "CKR_KEY_NOT_WRAPPABLE",                 CKR_KEY_NOT_WRAPPABLE },
    { "CKR_KEY_UNEXTRACTABLE",                 CKR_KEY_UNEXTRACTABLE },
    { "CKR_MECHANISM_INVALID",                 CKR_MECHANISM_INVALID },
    { "CKR_MECHANISM_PARAM_INVALID",           CKR_MECHANISM_PARAM_INVALID },
    { "CKR_OBJECT_HANDLE_INVALID",             CKR_OBJECT_HANDLE_INVALID },
    { "CKR_OPERATION_ACTIVE",                  CKR_OPERATION_ACTIVE },
    { "CKR_OPERATION_NOT_INITIALIZED",         CKR_OPERATION_NOT_INITIALIZED },
    { "CKR_PIN_INCORRECT",                     CKR_PIN_INCORRECT },
    { "CKR_PIN_INVALID",                       CKR_PIN_INVALID },
    { "CKR_PIN_LEN_RANGE",                     CKR_PIN_LEN_RANGE },
    { "CKR_PIN_EXPIRED",                       CKR_PIN_EXPIRED },
    { "CKR_PIN_LOCKED",                        CKR_PIN_LOCKED },
    { "CKR_SESSION_CLOSED",                    CKR_SESSION_CLOSED },
    { "CKR_SESSION_COUNT",                     CKR_SESSION_COUNT },
    { "CKR_SESSION_HANDLE_INVALID",            CKR_SESSION_HANDLE_INVALID },
    { "CKR_SESSION_PARALLEL_NOT_SUPPORTED",    CKR_SESSION_PARALLEL_NOT_SUPPORTED },
    { "CKR_SESSION_READ_ONLY",                 CKR_SESSION_READ_ONLY },
    { "CKR_SESSION_EXISTS",                    CKR_SESSION_EXISTS },
    { "CKR_SESSION_READ_ONLY_EXISTS",          CKR_SESSION_READ_ONLY_EXISTS },
    { "CKR_SESSION_READ_WRITE_SO_EXISTS",      CKR_SESSION_READ_WRITE_SO_EXISTS },
    { "CKR_SIGNATURE_INVALID",                 CKR_SIGNATURE_INVALID },
    { "CKR_SIGNATURE_LEN_RANGE",               CKR_SIGNATURE_LEN_RANGE },
    { "CKR_TEMPLATE_INCOMPLETE",               CKR_TEMPLATE_INCOMPLETE },
    { "CKR_TEMPLATE_INCONSISTENT",             CKR_TEMPLATE_INCONSISTENT },
    { "CKR_TOKEN_NOT_PRESENT",                 CKR_TOKEN_NOT_PRESENT },
    { "CKR_TOKEN_NOT_RECOGNIZED",              CKR_TOKEN_NOT_RECOGNIZED },
    { "CKR_TOKEN_WRITE_PROTECTED",             CKR_TOKEN_WRITE_PROTECTED },
    { "CKR_UNWRAPPING_KEY_HANDLE_INVALID",     CKR_UNWRAPPING_KEY_HANDLE_INVALID },
    { "CKR_UNWRAPPING_KEY_SIZE_RANGE",         CKR_UNWRAPPING_KEY_SIZE_RANGE },
    { "CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT",  CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT },
    { "CKR_USER_ALREADY_LOGGED_IN",            CKR_USER_ALREADY_LOGGED_IN },
    { "CKR_USER_NOT_LOGGED_IN",                CKR_USER_NOT_LOGGED_IN },
    { "CKR_USER_PIN_NOT_INITIALIZED",          CKR_USER_PIN_NOT_INITIALIZED },
    { "CKR_USER_TYPE_INVALID",                 CKR_USER_TYPE_INVALID },
    { "CKR_USER_ANOTHER_ALREADY_LOGGED_IN",    CKR_USER_ANOTHER_ALREADY_LOGGED_IN },
    { "CKR_USER_TOO_MANY_TYPES",               CKR_USER_TOO_MANY_TYPES },
    { "CKR_WRAPPED_KEY_INVALID",               CKR_WRAPPED_KEY_INVALID },
    { "CKR_WRAPPED_KEY_LEN_RANGE",             CKR_WRAPPED_KEY_LEN_RANGE },
    { "CKR_WRAPPING_KEY_HANDLE_INVALID",       CKR_WRAPPING_KEY_HANDLE_INVALID },
    { "CKR_WRAPPING_KEY_SIZE_RANGE",           CKR_WRAPPING_KEY_SIZE_RANGE },
    { "CKR_WRAPPING_KEY_TYPE_INCONSISTENT",    CKR_WRAPPING_KEY_TYPE_INCONSISTENT },
    { "CKR_RANDOM_SEED_NOT_SUPPORTED",         CKR_RANDOM_SEED_NOT_SUPPORTED },
    { "CKR_RANDOM_NO_RNG",                     CKR_RANDOM_NO_RNG },
    { "CKR_DOMAIN_PARAMS_INVALID",             CKR_DOMAIN_PARAMS_INVALID },
    { "CKR_CURVE_NOT_SUPPORTED",               CKR_CURVE_NOT_SUPPORTED },
    { "CKR_BUFFER_TOO_SMALL",                  CKR_BUFFER_TOO_SMALL },
    { "CKR_SAVED_STATE_INVALID",               CKR_SAVED_STATE_INVALID },
    { "CKR_INFORMATION_SENSITIVE",             CKR_INFORMATION_SENSITIVE },
    { "CKR_STATE_UNSAVEABLE",                  CKR_STATE_UNSAVEABLE },
    { "CKR_CRYPTOKI_NOT_INITIALIZED",          CKR_CRYPTOKI_NOT_INITIALIZED },
    { "CKR_CRYPTOKI_ALREADY_INITIALIZED",      CKR_CRYPTOKI_ALREADY_INITIALIZED },
    { "CKR_MUTEX_BAD",                         CKR_MUTEX_BAD },
    { "CKR_MUTEX_NOT_LOCKED",                  CKR_MUTEX_NOT_LOCKED },
    { "CKR_NEW_PIN_MODE",                      CKR_NEW_PIN_MODE },
    { "CKR_NEXT_OTP",                          CKR_NEXT_OTP },
    { "CKR_EXCEEDED_MAX_ITERATIONS",           0x1b5UL },  /* p11-kit: 0x1c0 */
    { "CKR_FIPS_SELF_TEST_FAILED",             0x1b6UL },  /* p11-kit: 0x1c1 */
    { "CKR_LIBRARY_LOAD_FAILED",               0x1b7UL },  /* p11-kit: 0x1c2 */
    { "CKR_PIN_TOO_WEAK",                      0x1b8UL },  /* p11-kit: 0x1c3 */
    { "CKR_PUBLIC_KEY_INVALID",                0x1b9UL },  /* p11-kit: 0x1c4 */
    { "CKR_FUNCTION_REJECTED",                 CKR_FUNCTION_REJECTED },
    { "CKR_TOKEN_RESOURCE_EXCEEDED",           0x201UL },
    { "CKR_OPERATION_CANCEL_FAILED",           0x202UL },
    { "CKR_VENDOR_DEFINED",                    CKR_VENDOR_DEFINED },
};
static const hsm_nv ckr_aliases[] = {
    { NULL, 0 }
};

static const hsm_nv cka_names[] = {
    { "CKA_CLASS",                       CKA_CLASS },
    { "CKA_TOKEN",                       CKA_TOKEN },
    { "CKA_PRIVATE",                     CKA_PRIVATE },
    { "CKA_LABEL",                       CKA_LABEL },
    { "CKA_UNIQUE_ID",                   0x4UL },
    { "CKA_APPLICATION",                 CKA_APPLICATION },
    { "CKA_VALUE",                       CKA_VALUE },
    { "CKA_OBJECT_ID",                   CKA_OBJECT_ID },
    { "CKA_CERTIFICATE_TYPE",            CKA_CERTIFICATE_TYPE },
    { "CKA_ISSUER",                      CKA_ISSUER },
    { "CKA_SERIAL_NUMBER",               CKA_SERIAL_NUMBER },
    { "CKA_AC_ISSUER",                   CKA_AC_ISSUER },
    { "CKA_OWNER",                       CKA_OWNER },
    { "CKA_ATTR_TYPES",                  CKA_ATTR_TYPES },
    { "CKA_TRUSTED",                     CKA_TRUSTED },
    { "CKA_CERTIFICATE_CATEGORY",        CKA_CERTIFICATE_CATEGORY },
    { "CKA_JAVA_MIDP_SECURITY_DOMAIN",   CKA_JAVA_MIDP_SECURITY_DOMAIN },
    { "CKA_URL",                         CKA_URL },
    { "CKA_HASH_OF_SUBJECT_PUBLIC_KEY",  CKA_HASH_OF_SUBJECT_PUBLIC_KEY },
    { "CKA_HASH_OF_ISSUER_PUBLIC_KEY",   CKA_HASH_OF_ISSUER_PUBLIC_KEY },
    { "CKA_NAME_HASH_ALGORITHM",         CKA_NAME_HASH_ALGORITHM },
    { "CKA_CHECK_VALUE",                 CKA_CHECK_VALUE },
    { "CKA_KEY_TYPE",                    CKA_KEY_TYPE },
    { "CKA_SUBJECT",                     CKA_SUBJECT },
    { "CKA_ID",                          CKA_ID },
    { "CKA_SENSITIVE",                   CKA_SENSITIVE },
    { "CKA_ENCRYPT",                     CKA_ENCRYPT },
    { "CKA_DECRYPT",                     CKA_DECRYPT },
    { "CKA_WRAP",                        CKA_WRAP },
    { "CKA_UNWRAP",                      CKA_UNWRAP },
    { "CKA_SIGN",                        CKA_SIGN },
    { "CKA_SIGN_RECOVER",                CKA_SIGN_RECOVER },
    { "CKA_VERIFY",                      CKA_VERIFY },
    { "CKA_VERIFY_RECOVER",              CKA_VERIFY_RECOVER },
    { "CKA_DERIVE",                      CKA_DERIVE },
    { "CKA_START_DATE",                  CKA_START_DATE },
    { "CKA_END_DATE",                    CKA_END_DATE },
    { "CKA_MODULUS",                     CKA_MODULUS },
    { "CKA_MODULUS_BITS",                CKA_MODULUS_BITS },
    { "CKA_PUBLIC_EXPONENT",             CKA_PUBLIC_EXPONENT },
    { "CKA_PRIVATE_EXPONENT",            CKA_PRIVATE_EXPONENT },
    { "CKA_PRIME_1",                     CKA_PRIME_1 },
    { "CKA_PRIME_2",                     CKA_PRIME_2 },
    { "CKA_EXPONENT_1",                  CKA_EXPONENT_1 },
    { "CKA_EXPONENT_2",                  CKA_EXPONENT_2 },
    { "CKA_COEFFICIENT",                 CKA_COEFFICIENT },
    { "CKA_PUBLIC_KEY_INFO",             CKA_PUBLIC_KEY_INFO },
    { "CKA_PRIME",                       CKA_PRIME },
    { "CKA_SUBPRIME",                    CKA_SUBPRIME },
    { "CKA_BASE",                        CKA_BASE },
    { "CKA_PRIME_BITS",                  CKA_PRIME_BITS },
    { "CKA_SUBPRIME_BITS",               0x134UL },
    { "CKA_VALUE_BITS",                  CKA_VALUE_BITS },
    { "CKA_VALUE_LEN",                   CKA_VALUE_LEN },
    { "CKA_EXTRACTABLE",                 CKA_EXTRACTABLE },
    { "CKA_LOCAL",                       CKA_LOCAL },
    { "CKA_NEVER_EXTRACTABLE",           CKA_NEVER_EXTRACTABLE },
    { "CKA_ALWAYS_SENSITIVE",            CKA_ALWAYS_SENSITIVE },
    { "CKA_KEY_GEN_MECHANISM",           CKA_KEY_GEN_MECHANISM },
    { "CKA_MODIFIABLE",                  CKA_MODIFIABLE },
    { "CKA_COPYABLE",                    CKA_COPYABLE },
    { "CKA_DESTROYABLE",                 CKA_DESTROYABLE },
    { "CKA_EC_PARAMS",                   CKA_EC_PARAMS },
    { "CKA_EC_POINT",                    CKA_EC_POINT },
    { "CKA_SECONDARY_AUTH",              CKA_SECONDARY_AUTH },
    { "CKA_AUTH_PIN_FLAGS",              CKA_AUTH_PIN_FLAGS },
    { "CKA_ALWAYS_AUTHENTICATE",         CKA_ALWAYS_AUTHENTICATE },
    { "CKA_WRAP_WITH_TRUSTED",           CKA_WRAP_WITH_TRUSTED },
    { "CKA_OTP_FORMAT",                  CKA_OTP_FORMAT },
    { "CKA_OTP_LENGTH",                  CKA_OTP_LENGTH },
    { "CKA_OTP_TIME_INTERVAL",           CKA_OTP_TIME_INTERVAL },
    { "CKA_OTP_USER_FRIENDLY_MODE",      CKA_OTP_USER_FRIENDLY_MODE },
    { "CKA_OTP_CHALLENGE_REQUIREMENT",   CKA_OTP_CHALLENGE_REQUIREMENT },
    { "CKA_OTP_TIME_REQUIREMENT",        CKA_OTP_TIME_REQUIREMENT },
    { "CKA_OTP_COUNTER_REQUIREMENT",     CKA_OTP_COUNTER_REQUIREMENT },
    { "CKA_OTP_PIN_REQUIREMENT",         CKA_OTP_PIN_REQUIREMENT },
    { "CKA_OTP_USER_IDENTIFIER",         CKA_OTP_USER_IDENTIFIER },
    { "CKA_OTP_SERVICE_IDENTIFIER",      CKA_OTP_SERVICE_IDENTIFIER },
    { "CKA_OTP_SERVICE_LOGO",            CKA_OTP_SERVICE_LOGO },
    { "CKA_OTP_SERVICE_LOGO_TYPE",       CKA_OTP_SERVICE_LOGO_TYPE },
    { "CKA_OTP_COUNTER",                 CKA_OTP_COUNTER },
    { "CKA_OTP_TIME",                    CKA_OTP_TIME },
    { "CKA_GOSTR3410_PARAMS",            CKA_GOSTR3410_PARAMS },
    { "CKA_GOSTR3411_PARAMS",            CKA_GOSTR3411_PARAMS },
    { "CKA_GOST28147_PARAMS",            CKA_GOST28147_PARAMS },
    { "CKA_HW_FEATURE_TYPE",             CKA_HW_FEATURE_TYPE },
    { "CKA_RESET_ON_INIT",               CKA_RESET_ON_INIT },
    { "CKA_HAS_RESET",                   CKA_HAS_RESET },
    { "CKA_PIXEL_X",                     CKA_PIXEL_X },
    { "CKA_PIXEL_Y",                     CKA_PIXEL_Y },
    { "CKA_RESOLUTION",                  CKA_RESOLUTION },
    { "CKA_CHAR_ROWS",                   CKA_CHAR_ROWS },
    { "CKA_CHAR_COLUMNS",                CKA_CHAR_COLUMNS },
    { "CKA_COLOR",                       CKA_COLOR },
    { "CKA_BITS_PER_PIXEL",              CKA_BITS_PER_PIXEL },
    { "CKA_CHAR_SETS",                   CKA_CHAR_SETS },
    { "CKA_ENCODING_METHODS",            CKA_ENCODING_METHODS },
    { "CKA_MIME_TYPES",                  CKA_MIME_TYPES },
    { "CKA_MECHANISM_TYPE",              CKA_MECHANISM_TYPE },
    { "CKA_REQUIRED_CMS_ATTRIBUTES",     CKA_REQUIRED_CMS_ATTRIBUTES },
    { "CKA_DEFAULT_CMS_ATTRIBUTES",      CKA_DEFAULT_CMS_ATTRIBUTES },
    { "CKA_SUPPORTED_CMS_ATTRIBUTES",    CKA_SUPPORTED_CMS_ATTRIBUTES },
    { "CKA_PROFILE_ID",                  0x601UL },
    { "CKA_X2RATCHET_BAG",               0x602UL },
    { "CKA_X2RATCHET_BAGSIZE",           0x603UL },
    { "CKA_X2RATCHET_BOBS1STMSG",        0x604UL },
    { "CKA_X2RATCHET_CKR",               0x605UL },
    { "CKA_X2RATCHET_CKS",               0x606UL },
    { "CKA_X2RATCHET_DHP",               0x607UL },
    { "CKA_X2RATCHET_DHR",               0x608UL },
    { "CKA_X2RATCHET_DHS",               0x609UL },
    { "CKA_X2RATCHET_HKR",               0x60aUL },
    { "CKA_X2RATCHET_HKS",               0x60bUL },
    { "CKA_X2RATCHET_ISALICE",           0x60cUL },
    { "CKA_X2RATCHET_NHKR",              0x60dUL },
    { "CKA_X2RATCHET_NHKS",              0x60eUL },
    { "CKA_X2RATCHET_NR",                0x60fUL },
    { "CKA_X2RATCHET_NS",                0x610UL },
    { "CKA_X2RATCHET_PNS",               0x611UL },
    { "CKA_X2RATCHET_RK",                0x612UL },
    { "CKA_WRAP_TEMPLATE",               CKA_WRAP_TEMPLATE },
    { "CKA_UNWRAP_TEMPLATE",             CKA_UNWRAP_TEMPLATE },
    { "CKA_DERIVE_TEMPLATE",             CKA_DERIVE_TEMPLATE },
    { "CKA_ALLOWED_MECHANISMS",          CKA_ALLOWED_MECHANISMS },
    { "CKA_VENDOR_DEFINED",              CKA_VENDOR_DEFINED },
};
static const hsm_nv cka_aliases[] = {
    { "CKA_SUB_PRIME_BITS",              CKA_SUB_PRIME_BITS },
    { "CKA_ECDSA_PARAMS",                CKA_ECDSA_PARAMS },
};

static const hsm_nv ckm_names[] = {
    { "CKM_RSA_PKCS_KEY_PAIR_GEN",            CKM_RSA_PKCS_KEY_PAIR_GEN },
    { "CKM_RSA_PKCS",                         CKM_RSA_PKCS },
    { "CKM_RSA_9796",                         CKM_RSA_9796 },
    { "CKM_RSA_X_509",                        CKM_RSA_X_509 },
    { "CKM_MD2_RSA_PKCS",                     CKM_MD2_RSA_PKCS },
    { "CKM_MD5_RSA_PKCS",                     CKM_MD5_RSA_PKCS },
    { "CKM_SHA1_RSA_PKCS",                    CKM_SHA1_RSA_PKCS },
    { "CKM_RIPEMD128_RSA_PKCS",               CKM_RIPEMD128_RSA_PKCS },
    { "CKM_RIPEMD160_RSA_PKCS",               CKM_RIPEMD160_RSA_PKCS },
    { "CKM_RSA_PKCS_OAEP",                    CKM_RSA_PKCS_OAEP },
    { "CKM_RSA_X9_31_KEY_PAIR_GEN",           CKM_RSA_X9_31_KEY_PAIR_GEN },
    { "CKM_RSA_X9_31",                        CKM_RSA_X9_31 },
    { "CKM_SHA1_RSA_X9_31",                   CKM_SHA1_RSA_X9_31 },
    { "CKM_RSA_PKCS_PSS",                     CKM_RSA_PKCS_PSS },
    { "CKM_SHA1_RSA_PKCS_PSS",                CKM_SHA1_RSA_PKCS_PSS },
    { "CKM_DSA_KEY_PAIR_GEN",                 CKM_DSA_KEY_PAIR_GEN },
    { "CKM_DSA",                              CKM_DSA },
    { "CKM_DSA_SHA1",                         CKM_DSA_SHA1 },
    { "CKM_DSA_SHA224",                       CKM_DSA_SHA224 },
    { "CKM_DSA_SHA256",                       CKM_DSA_SHA256 },
    { "CKM_DSA_SHA384",                       CKM_DSA_SHA384 },
    { "CKM_DSA_SHA512",                       CKM_DSA_SHA512 },
    { "CKM_DSA_SHA3_224",                     0x18UL },
    { "CKM_DSA_SHA3_256",                     0x19UL },
    { "CKM_DSA_SHA3_384",                     0x1aUL },
    { "CKM_DSA_SHA3_512",                     0x1bUL },
    { "CKM_DH_PKCS_KEY_PAIR_GEN",             CKM_DH_PKCS_KEY_PAIR_GEN },
    { "CKM_DH_PKCS_DERIVE",                   CKM_DH_PKCS_DERIVE },
    { "CKM_X9_42_DH_KEY_PAIR_GEN",            CKM_X9_42_DH_KEY_PAIR_GEN },
    { "CKM_X9_42_DH_DERIVE",                  CKM_X9_42_DH_DERIVE },
    { "CKM_X9_42_DH_HYBRID_DERIVE",           CKM_X9_42_DH_HYBRID_DERIVE },
    { "CKM_X9_42_MQV_DERIVE",                 CKM_X9_42_MQV_DERIVE },
    { "CKM_SHA256_RSA_PKCS",                  CKM_SHA256_RSA_PKCS },
    { "CKM_SHA384_RSA_PKCS",                  CKM_SHA384_RSA_PKCS },
    { "CKM_SHA512_RSA_PKCS",                  CKM_SHA512_RSA_PKCS },
    { "CKM_SHA256_RSA_PKCS_PSS",              CKM_SHA256_RSA_PKCS_PSS },
    { "CKM_SHA384_RSA_PKCS_PSS",              CKM_SHA384_RSA_PKCS_PSS },
    { "CKM_SHA512_RSA_PKCS_PSS",              CKM_SHA512_RSA_PKCS_PSS },
    { "CKM_SHA224_RSA_PKCS",                  CKM_SHA224_RSA_PKCS },
    { "CKM_SHA224_RSA_PKCS_PSS",              CKM_SHA224_RSA_PKCS_PSS },
    { "CKM_SHA512_224",                       CKM_SHA512_224 },
    { "CKM_SHA512_224_HMAC",                  CKM_SHA512_224_HMAC },
    { "CKM_SHA512_224_HMAC_GENERAL",          CKM_SHA512_224_HMAC_GENERAL },
    { "CKM_SHA512_224_KEY_DERIVATION",        CKM_SHA512_224_KEY_DERIVATION },
    { "CKM_SHA512_256",                       CKM_SHA512_256 },
    { "CKM_SHA512_256_HMAC",                  CKM_SHA512_256_HMAC },
    { "CKM_SHA512_256_HMAC_GENERAL",          CKM_SHA512_256_HMAC_GENERAL },
    { "CKM_SHA512_256_KEY_DERIVATION",        CKM_SHA512_256_KEY_DERIVATION },
    { "CKM_SHA512_T",                         CKM_SHA512_T },
    { "CKM_SHA512_T_HMAC",                    CKM_SHA512_T_HMAC },
    { "CKM_SHA512_T_HMAC_GENERAL",            CKM_SHA512_T_HMAC_GENERAL },
    { "CKM_SHA512_T_KEY_DERIVATION",          CKM_SHA512_T_KEY_DERIVATION },
    { "CKM_SHA3_256_RSA_PKCS",                0x60UL },
    { "CKM_SHA3_384_RSA_PKCS",                0x61UL },
    { "CKM_SHA3_512_RSA_PKCS",                0x62UL },
    { "CKM_SHA3_256_RSA_PKCS_PSS",            0x63UL },
    { "CKM_SHA3_384_RSA_PKCS_PSS",            0x64UL },
    { "CKM_SHA3_512_RSA_PKCS_PSS",            0x65UL },
    { "CKM_SHA3_224_RSA_PKCS",                0x66UL },
    { "CKM_SHA3_224_RSA_PKCS_PSS",            0x67UL },
    { "CKM_RC2_KEY_GEN",                      CKM_RC2_KEY_GEN },
    { "CKM_RC2_ECB",                          CKM_RC2_ECB },
    { "CKM_RC2_CBC",                          CKM_RC2_CBC },
    { "CKM_RC2_MAC",                          CKM_RC2_MAC },
    { "CKM_RC2_MAC_GENERAL",                  CKM_RC2_MAC_GENERAL },
    { "CKM_RC2_CBC_PAD",                      CKM_RC2_CBC_PAD },
    { "CKM_RC4_KEY_GEN",                      CKM_RC4_KEY_GEN },
    { "CKM_RC4",                              CKM_RC4 },
    { "CKM_DES_KEY_GEN",                      CKM_DES_KEY_GEN },
    { "CKM_DES_ECB",                          CKM_DES_ECB },
    { "CKM_DES_CBC",                          CKM_DES_CBC },
    { "CKM_DES_MAC",                          CKM_DES_MAC },
    { "CKM_DES_MAC_GENERAL",                  CKM_DES_MAC_GENERAL },
    { "CKM_DES_CBC_PAD",                      CKM_DES_CBC_PAD },
    { "CKM_DES2_KEY_GEN",                     CKM_DES2_KEY_GEN },
    { "CKM_DES3_KEY_GEN",                     CKM_DES3_KEY_GEN },
    { "CKM_DES3_ECB",                         CKM_DES3_ECB },
    { "CKM_DES3_CBC",                         CKM_DES3_CBC },
    { "CKM_DES3_MAC",                         CKM_DES3_MAC },
    { "CKM_DES3_MAC_GENERAL",                 CKM_DES3_MAC_GENERAL },
    { "CKM_DES3_CBC_PAD",                     CKM_DES3_CBC_PAD },
    { "CKM_DES3_CMAC_GENERAL",                CKM_DES3_CMAC_GENERAL },
    { "CKM_DES3_CMAC",                        CKM_DES3_CMAC },
    { "CKM_CDMF_KEY_GEN",                     CKM_CDMF_KEY_GEN },
    { "CKM_CDMF_ECB",                         CKM_CDMF_ECB },
    { "CKM_CDMF_CBC",                         CKM_CDMF_CBC },
    { "CKM_CDMF_MAC",                         CKM_CDMF_MAC },
    { "CKM_CDMF_MAC_GENERAL",                 CKM_CDMF_MAC_GENERAL },
    { "CKM_CDMF_CBC_PAD",                     CKM_CDMF_CBC_PAD },
    { "CKM_DES_OFB64",                        CKM_DES_OFB64 },
    { "CKM_DES_OFB8",                         CKM_DES_OFB8 },
    { "CKM_DES_CFB64",                        CKM_DES_CFB64 },
    { "CKM_DES_CFB8",                         CKM_DES_CFB8 },
    { "CKM_MD2",                              CKM_MD2 },
    { "CKM_MD2_HMAC",                         CKM_MD2_HMAC },
    { "CKM_MD2_HMAC_GENERAL",                 CKM_MD2_HMAC_GENERAL },
    { "CKM_MD5",                              CKM_MD5 },
    { "CKM_MD5_HMAC",                         CKM_MD5_HMAC },
    { "CKM_MD5_HMAC_GENERAL",                 CKM_MD5_HMAC_GENERAL },
    { "CKM_SHA_1",                            CKM_SHA_1 },
    { "CKM_SHA_1_HMAC",                       CKM_SHA_1_HMAC },
    { "CKM_SHA_1_HMAC_GENERAL",               CKM_SHA_1_HMAC_GENERAL },
    { "CKM_RIPEMD128",                        CKM_RIPEMD128 },
    { "CKM_RIPEMD128_HMAC",                   CKM_RIPEMD128_HMAC },
    { "CKM_RIPEMD128_HMAC_GENERAL",           CKM_RIPEMD128_HMAC_GENERAL },
    { "CKM_RIPEMD160",                        CKM_RIPEMD160 },
    { "CKM_RIPEMD160_HMAC",                   CKM_RIPEMD160_HMAC },
    { "CKM_RIPEMD160_HMAC_GENERAL",           CKM_RIPEMD160_HMAC_GENERAL },
    { "CKM_SHA256",                           CKM_SHA256 },
    { "CKM_SHA256_HMAC",                      CKM_SHA256_HMAC },
    { "CKM_SHA256_HMAC_GENERAL",              CKM_SHA256_HMAC_GENERAL },
    { "CKM_SHA224",                           CKM_SHA224 },
    { "CKM_SHA224_HMAC",                      CKM_SHA224_HMAC },
    { "CKM_SHA224_HMAC_GENERAL",              CKM_SHA224_HMAC_GENERAL },
    { "CKM_SHA384",                           CKM_SHA384 },
    { "CKM_SHA384_HMAC",                      CKM_SHA384_HMAC },
    { "CKM_SHA384_HMAC_GENERAL",              CKM_SHA384_HMAC_GENERAL },
    { "CKM_SHA512",                           CKM_SHA512 },
    { "CKM_SHA512_HMAC",                      CKM_SHA512_HMAC },
    { "CKM_SHA512_HMAC_GENERAL",              CKM_SHA512_HMAC_GENERAL },
    { "CKM_SECURID_KEY_GEN",                  CKM_SECURID_KEY_GEN },
    { "CKM_SECURID",                          CKM_SECURID },
    { "CKM_HOTP_KEY_GEN",                     CKM_HOTP_KEY_GEN },
    { "CKM_HOTP",                             CKM_HOTP },
    { "CKM_ACTI",                             CKM_ACTI },
    { "CKM_ACTI_KEY_GEN",                     CKM_ACTI_KEY_GEN },
    { "CKM_SHA3_256",                         0x2b0UL },
    { "CKM_SHA3_256_HMAC",                    0x2b1UL },
    { "CKM_SHA3_256_HMAC_GENERAL",            0x2b2UL },
    { "CKM_SHA3_256_KEY_GEN",                 0x2b3UL },
    { "CKM_SHA3_224",                         0x2b5UL },
    { "CKM_SHA3_224_HMAC",                    0x2b6UL },
    { "CKM_SHA3_224_HMAC_GENERAL",            0x2b7UL },
    { "CKM_SHA3_224_KEY_GEN",                 0x2b8UL },
    { "CKM_SHA3_384",                         0x2c0UL },
    { "CKM_SHA3_384_HMAC",                    0x2c1UL },
    { "CKM_SHA3_384_HMAC_GENERAL",            0x2c2UL },
    { "CKM_SHA3_384_KEY_GEN",                 0x2c3UL },
    { "CKM_SHA3_512",                         0x2d0UL },
    { "CKM_SHA3_512_HMAC",                    0x2d1UL },
    { "CKM_SHA3_512_HMAC_GENERAL",            0x2d2UL },
    { "CKM_SHA3_512_KEY_GEN",                 0x2d3UL },
    { "CKM_CAST_KEY_GEN",                     CKM_CAST_KEY_GEN },
    { "CKM_CAST_ECB",                         CKM_CAST_ECB },
    { "CKM_CAST_CBC",                         CKM_CAST_CBC },
    { "CKM_CAST_MAC",                         CKM_CAST_MAC },
    { "CKM_CAST_MAC_GENERAL",                 CKM_CAST_MAC_GENERAL },
    { "CKM_CAST_CBC_PAD",                     CKM_CAST_CBC_PAD },
    { "CKM_CAST3_KEY_GEN",                    CKM_CAST3_KEY_GEN },
    { "CKM_CAST3_ECB",                        CKM_CAST3_ECB },
    { "CKM_CAST3_CBC",                        CKM_CAST3_CBC },
    { "CKM_CAST3_MAC",                        CKM_CAST3_MAC },
    { "CKM_CAST3_MAC_GENERAL",                CKM_CAST3_MAC_GENERAL },
    { "CKM_CAST3_CBC_PAD",                    CKM_CAST3_CBC_PAD },
    { "CKM_CAST128_KEY_GEN",                  CKM_CAST128_KEY_GEN },
    { "CKM_CAST128_ECB",                      CKM_CAST128_ECB },
    { "CKM_CAST128_CBC",                      CKM_CAST128_CBC },
    { "CKM_CAST128_MAC",                      CKM_CAST128_MAC },
    { "CKM_CAST128_MAC_GENERAL",              CKM_CAST128_MAC_GENERAL },
    { "CKM_CAST128_CBC_PAD",                  CKM_CAST128_CBC_PAD },
    { "CKM_RC5_KEY_GEN",                      CKM_RC5_KEY_GEN },
    { "CKM_RC5_ECB",                          CKM_RC5_ECB },
    { "CKM_RC5_CBC",                          CKM_RC5_CBC },
    { "CKM_RC5_MAC",                          CKM_RC5_MAC },
    { "CKM_RC5_MAC_GENERAL",                  CKM_RC5_MAC_GENERAL },
    { "CKM_RC5_CBC_PAD",                      CKM_RC5_CBC_PAD },
    { "CKM_IDEA_KEY_GEN",                     CKM_IDEA_KEY_GEN },
    { "CKM_IDEA_ECB",                         CKM_IDEA_ECB },
    { "CKM_IDEA_CBC",                         CKM_IDEA_CBC },
    { "CKM_IDEA_MAC",                         CKM_IDEA_MAC },
    { "CKM_IDEA_MAC_GENERAL",                 CKM_IDEA_MAC_GENERAL },
    { "CKM_IDEA_CBC_PAD",                     CKM_IDEA_CBC_PAD },
    { "CKM_GENERIC_SECRET_KEY_GEN",           CKM_GENERIC_SECRET_KEY_GEN },
    { "CKM_CONCATENATE_BASE_AND_KEY",         CKM_CONCATENATE_BASE_AND_KEY },
    { "CKM_CONCATENATE_BASE_AND_DATA",        CKM_CONCATENATE_BASE_AND_DATA },
    { "CKM_CONCATENATE_DATA_AND_BASE",        CKM_CONCATENATE_DATA_AND_BASE },
    { "CKM_XOR_BASE_AND_DATA",                CKM_XOR_BASE_AND_DATA },
    { "CKM_EXTRACT_KEY_FROM_KEY",             CKM_EXTRACT_KEY_FROM_KEY },
    { "CKM_SSL3_PRE_MASTER_KEY_GEN",          CKM_SSL3_PRE_MASTER_KEY_GEN },
    { "CKM_SSL3_MASTER_KEY_DERIVE",           CKM_SSL3_MASTER_KEY_DERIVE },
    { "CKM_SSL3_KEY_AND_MAC_DERIVE",          CKM_SSL3_KEY_AND_MAC_DERIVE },
    { "CKM_SSL3_MASTER_KEY_DERIVE_DH",        CKM_SSL3_MASTER_KEY_DERIVE_DH },
    { "CKM_TLS_PRE_MASTER_KEY_GEN",           CKM_TLS_PRE_MASTER_KEY_GEN },
    { "CKM_TLS_MASTER_KEY_DERIVE",            CKM_TLS_MASTER_KEY_DERIVE },
    { "CKM_TLS_KEY_AND_MAC_DERIVE",           CKM_TLS_KEY_AND_MAC_DERIVE },
    { "CKM_TLS_MASTER_KEY_DERIVE_DH",         CKM_TLS_MASTER_KEY_DERIVE_DH },
    { "CKM_TLS_PRF",                          CKM_TLS_PRF },
    { "CKM_SSL3_MD5_MAC",                     CKM_SSL3_MD5_MAC },
    { "CKM_SSL3_SHA1_MAC",                    CKM_SSL3_SHA1_MAC },
    { "CKM_MD5_KEY_DERIVATION",               CKM_MD5_KEY_DERIVATION },
    { "CKM_MD2_KEY_DERIVATION",               CKM_MD2_KEY_DERIVATION },
    { "CKM_SHA1_KEY_DERIVATION",              CKM_SHA1_KEY_DERIVATION },
    { "CKM_SHA256_KEY_DERIVATION",            CKM_SHA256_KEY_DERIVATION },
    { "CKM_SHA384_KEY_DERIVATION",            CKM_SHA384_KEY_DERIVATION },
    { "CKM_SHA512_KEY_DERIVATION",            CKM_SHA512_KEY_DERIVATION },
    { "CKM_SHA224_KEY_DERIVATION",            CKM_SHA224_KEY_DERIVATION },
    { "CKM_SHA3_256_KEY_DERIVATION",          0x397UL },
    { "CKM_SHA3_224_KEY_DERIVATION",          0x398UL },
    { "CKM_SHA3_384_KEY_DERIVATION",          0x399UL },
    { "CKM_SHA3_512_KEY_DERIVATION",          0x39aUL },
    { "CKM_SHAKE_128_KEY_DERIVATION",         0x39bUL },
    { "CKM_SHAKE_256_KEY_DERIVATION",         0x39cUL },
    { "CKM_PBE_MD2_DES_CBC",                  CKM_PBE_MD2_DES_CBC },
    { "CKM_PBE_MD5_DES_CBC",                  CKM_PBE_MD5_DES_CBC },
    { "CKM_PBE_MD5_CAST_CBC",                 CKM_PBE_MD5_CAST_CBC },
    { "CKM_PBE_MD5_CAST3_CBC",                CKM_PBE_MD5_CAST3_CBC },
    { "CKM_PBE_MD5_CAST128_CBC",              CKM_PBE_MD5_CAST128_CBC },
    { "CKM_PBE_SHA1_CAST128_CBC",             CKM_PBE_SHA1_CAST128_CBC },
    { "CKM_PBE_SHA1_RC4_128",                 CKM_PBE_SHA1_RC4_128 },
    { "CKM_PBE_SHA1_RC4_40",                  CKM_PBE_SHA1_RC4_40 },
    { "CKM_PBE_SHA1_DES3_EDE_CBC",            CKM_PBE_SHA1_DES3_EDE_CBC },
    { "CKM_PBE_SHA1_DES2_EDE_CBC",            CKM_PBE_SHA1_DES2_EDE_CBC },
    { "CKM_PBE_SHA1_RC2_128_CBC",             CKM_PBE_SHA1_RC2_128_CBC },
    { "CKM_PBE_SHA1_RC2_40_CBC",              CKM_PBE_SHA1_RC2_40_CBC },
    { "CKM_SP800_108_COUNTER_KDF",            0x3acUL },
    { "CKM_SP800_108_FEEDBACK_KDF",           0x3adUL },
    { "CKM_SP800_108_DOUBLE_PIPELINE_KDF",    0x3aeUL },
    { "CKM_PKCS5_PBKD2",                      CKM_PKCS5_PBKD2 },
    { "CKM_PBA_SHA1_WITH_SHA1_HMAC",          CKM_PBA_SHA1_WITH_SHA1_HMAC },
    { "CKM_WTLS_PRE_MASTER_KEY_GEN",          CKM_WTLS_PRE_MASTER_KEY_GEN },
    { "CKM_WTLS_MASTER_KEY_DERIVE",           CKM_WTLS_MASTER_KEY_DERIVE },
    { "CKM_WTLS_MASTER_KEY_DERIVE_DH_ECC",    CKM_WTLS_MASTER_KEY_DERIVE_DH_ECC },
    { "CKM_WTLS_PRF",                         CKM_WTLS_PRF },
    { "CKM_WTLS_SERVER_KEY_AND_MAC_DERIVE",   CKM_WTLS_SERVER_KEY_AND_MAC_DERIVE },
    { "CKM_WTLS_CLIENT_KEY_AND_MAC_DERIVE",   CKM_WTLS_CLIENT_KEY_AND_MAC_DERIVE },
    { "CKM_TLS10_MAC_SERVER",                 CKM_TLS10_MAC_SERVER },
    { "CKM_TLS10_MAC_CLIENT",                 CKM_TLS10_MAC_CLIENT },
    { "CKM_TLS12_MAC",                        CKM_TLS12_MAC },
    { "CKM_TLS12_KDF",                        CKM_TLS12_KDF },
    { "CKM_TLS12_MASTER_KEY_DERIVE",          CKM_TLS12_MASTER_KEY_DERIVE },
    { "CKM_TLS12_KEY_AND_MAC_DERIVE",         CKM_TLS12_KEY_AND_MAC_DERIVE },
    { "CKM_TLS12_MASTER_KEY_DERIVE_DH",       CKM_TLS12_MASTER_KEY_DERIVE_DH },
    { "CKM_TLS12_KEY_SAFE_DERIVE",            CKM_TLS12_KEY_SAFE_DERIVE },
    { "CKM_TLS_MAC",                          CKM_TLS_MAC },
    { "CKM_TLS_KDF",                          CKM_TLS_KDF },
    { "CKM_KEY_WRAP_LYNKS",                   CKM_KEY_WRAP_LYNKS },
    { "CKM_KEY_WRAP_SET_OAEP",                CKM_KEY_WRAP_SET_OAEP },
    { "CKM_CMS_SIG",                          CKM_CMS_SIG },
    { "CKM_KIP_DERIVE",                       CKM_KIP_DERIVE },
    { "CKM_KIP_WRAP",                         CKM_KIP_WRAP },
    { "CKM_KIP_MAC",                          CKM_KIP_MAC },
    { "CKM_CAMELLIA_KEY_GEN",                 CKM_CAMELLIA_KEY_GEN },
    { "CKM_CAMELLIA_ECB",                     CKM_CAMELLIA_ECB },
    { "CKM_CAMELLIA_CBC",                     CKM_CAMELLIA_CBC },
    { "CKM_CAMELLIA_MAC",                     CKM_CAMELLIA_MAC },
    { "CKM_CAMELLIA_MAC_GENERAL",             CKM_CAMELLIA_MAC_GENERAL },
    { "CKM_CAMELLIA_CBC_PAD",                 CKM_CAMELLIA_CBC_PAD },
    { "CKM_CAMELLIA_ECB_ENCRYPT_DATA",        CKM_CAMELLIA_ECB_ENCRYPT_DATA },
    { "CKM_CAMELLIA_CBC_ENCRYPT_DATA",        CKM_CAMELLIA_CBC_ENCRYPT_DATA },
    { "CKM_CAMELLIA_CTR",                     CKM_CAMELLIA_CTR },
    { "CKM_ARIA_KEY_GEN",                     CKM_ARIA_KEY_GEN },
    { "CKM_ARIA_ECB",                         CKM_ARIA_ECB },
    { "CKM_ARIA_CBC",                         CKM_ARIA_CBC },
    { "CKM_ARIA_MAC",                         CKM_ARIA_MAC },
    { "CKM_ARIA_MAC_GENERAL",                 CKM_ARIA_MAC_GENERAL },
    { "CKM_ARIA_CBC_PAD",                     CKM_ARIA_CBC_PAD },
    { "CKM_ARIA_ECB_ENCRYPT_DATA",            CKM_ARIA_ECB_ENCRYPT_DATA },
    { "CKM_ARIA_CBC_ENCRYPT_DATA",            CKM_ARIA_CBC_ENCRYPT_DATA },
    { "CKM_SEED_KEY_GEN",                     CKM_SEED_KEY_GEN },
    { "CKM_SEED_ECB",                         CKM_SEED_ECB },
    { "CKM_SEED_CBC",                         CKM_SEED_CBC },
    { "CKM_SEED_MAC",                         CKM_SEED_MAC },
    { "CKM_SEED_MAC_GENERAL",                 CKM_SEED_MAC_GENERAL },
    { "CKM_SEED_CBC_PAD",                     CKM_SEED_CBC_PAD },
    { "CKM_SEED_ECB_ENCRYPT_DATA",            CKM_SEED_ECB_ENCRYPT_DATA },
    { "CKM_SEED_CBC_ENCRYPT_DATA",            CKM_SEED_CBC_ENCRYPT_DATA },
    { "CKM_SKIPJACK_KEY_GEN",                 CKM_SKIPJACK_KEY_GEN },
    { "CKM_SKIPJACK_ECB64",                   CKM_SKIPJACK_ECB64 },
    { "CKM_SKIPJACK_CBC64",                   CKM_SKIPJACK_CBC64 },
    { "CKM_SKIPJACK_OFB64",                   CKM_SKIPJACK_OFB64 },
    { "CKM_SKIPJACK_CFB64",                   CKM_SKIPJACK_CFB64 },
    { "CKM_SKIPJACK_CFB32",                   CKM_SKIPJACK_CFB32 },
    { "CKM_SKIPJACK_CFB16",                   CKM_SKIPJACK_CFB16 },
    { "CKM_SKIPJACK_CFB8",                    CKM_SKIPJACK_CFB8 },
    { "CKM_SKIPJACK_WRAP",                    CKM_SKIPJACK_WRAP },
    { "CKM_SKIPJACK_PRIVATE_WRAP",            CKM_SKIPJACK_PRIVATE_WRAP },
    { "CKM_SKIPJACK_RELAYX",                  CKM_SKIPJACK_RELAYX },
    { "CKM_KEA_KEY_PAIR_GEN",                 CKM_KEA_KEY_PAIR_GEN },
    { "CKM_KEA_KEY_DERIVE",                   CKM_KEA_KEY_DERIVE },
    { "CKM_FORTEZZA_TIMESTAMP",               CKM_FORTEZZA_TIMESTAMP },
    { "CKM_BATON_KEY_GEN",                    CKM_BATON_KEY_GEN },
    { "CKM_BATON_ECB128",                     CKM_BATON_ECB128 },
    { "CKM_BATON_ECB96",                      CKM_BATON_ECB96 },
    { "CKM_BATON_CBC128",                     CKM_BATON_CBC128 },
    { "CKM_BATON_COUNTER",                    CKM_BATON_COUNTER },
    { "CKM_BATON_SHUFFLE",                    CKM_BATON_SHUFFLE },
    { "CKM_BATON_WRAP",                       CKM_BATON_WRAP },
    { "CKM_EC_KEY_PAIR_GEN",                  CKM_EC_KEY_PAIR_GEN },
    { "CKM_ECDSA",                            CKM_ECDSA },
    { "CKM_ECDSA_SHA1",                       CKM_ECDSA_SHA1 },
    { "CKM_ECDSA_SHA224",                     CKM_ECDSA_SHA224 },
    { "CKM_ECDSA_SHA256",                     CKM_ECDSA_SHA256 },
    { "CKM_ECDSA_SHA384",                     CKM_ECDSA_SHA384 },
    { "CKM_ECDSA_SHA512",                     CKM_ECDSA_SHA512 },
    { "CKM_ECDSA_SHA3_224",                   0x1047UL },
    { "CKM_ECDSA_SHA3_256",                   0x1048UL },
    { "CKM_ECDSA_SHA3_384",                   0x1049UL },
    { "CKM_ECDSA_SHA3_512",                   0x104aUL },
    { "CKM_ECDH1_DERIVE",                     CKM_ECDH1_DERIVE },
    { "CKM_ECDH1_COFACTOR_DERIVE",            CKM_ECDH1_COFACTOR_DERIVE },
    { "CKM_ECMQV_DERIVE",                     CKM_ECMQV_DERIVE },
    { "CKM_ECDH_AES_KEY_WRAP",                CKM_ECDH_AES_KEY_WRAP },
    { "CKM_RSA_AES_KEY_WRAP",                 CKM_RSA_AES_KEY_WRAP },
    { "CKM_EC_EDWARDS_KEY_PAIR_GEN",          CKM_EC_EDWARDS_KEY_PAIR_GEN },
    { "CKM_EC_MONTGOMERY_KEY_PAIR_GEN",       0x1056UL },
    { "CKM_EDDSA",                            CKM_EDDSA },
    { "CKM_JUNIPER_KEY_GEN",                  CKM_JUNIPER_KEY_GEN },
    { "CKM_JUNIPER_ECB128",                   CKM_JUNIPER_ECB128 },
    { "CKM_JUNIPER_CBC128",                   CKM_JUNIPER_CBC128 },
    { "CKM_JUNIPER_COUNTER",                  CKM_JUNIPER_COUNTER },
    { "CKM_JUNIPER_SHUFFLE",                  CKM_JUNIPER_SHUFFLE },
    { "CKM_JUNIPER_WRAP",                     CKM_JUNIPER_WRAP },
    { "CKM_FASTHASH",                         CKM_FASTHASH },
    { "CKM_AES_XTS",                          0x1071UL },
    { "CKM_AES_XTS_KEY_GEN",                  0x1072UL },
    { "CKM_AES_KEY_GEN",                      CKM_AES_KEY_GEN },
    { "CKM_AES_ECB",                          CKM_AES_ECB },
    { "CKM_AES_CBC",                          CKM_AES_CBC },
    { "CKM_AES_MAC",                          CKM_AES_MAC },
    { "CKM_AES_MAC_GENERAL",                  CKM_AES_MAC_GENERAL },
    { "CKM_AES_CBC_PAD",                      CKM_AES_CBC_PAD },
    { "CKM_AES_CTR",                          CKM_AES_CTR },
    { "CKM_AES_GCM",                          CKM_AES_GCM },
    { "CKM_AES_CCM",                          CKM_AES_CCM },
    { "CKM_AES_CTS",                          CKM_AES_CTS },
    { "CKM_AES_CMAC",                         CKM_AES_CMAC },
    { "CKM_AES_CMAC_GENERAL",                 CKM_AES_CMAC_GENERAL },
    { "CKM_AES_XCBC_MAC",                     CKM_AES_XCBC_MAC },
    { "CKM_AES_XCBC_MAC_96",                  CKM_AES_XCBC_MAC_96 },
    { "CKM_AES_GMAC",                         CKM_AES_GMAC },
    { "CKM_BLOWFISH_KEY_GEN",                 CKM_BLOWFISH_KEY_GEN },
    { "CKM_BLOWFISH_CBC",                     CKM_BLOWFISH_CBC },
    { "CKM_TWOFISH_KEY_GEN",                  CKM_TWOFISH_KEY_GEN },
    { "CKM_TWOFISH_CBC",                      CKM_TWOFISH_CBC },
    { "CKM_BLOWFISH_CBC_PAD",                 CKM_BLOWFISH_CBC_PAD },
    { "CKM_TWOFISH_CBC_PAD",                  CKM_TWOFISH_CBC_PAD },
    { "CKM_DES_ECB_ENCRYPT_DATA",             CKM_DES_ECB_ENCRYPT_DATA },
    { "CKM_DES_CBC_ENCRYPT_DATA",             CKM_DES_CBC_ENCRYPT_DATA },
    { "CKM_DES3_ECB_ENCRYPT_DATA",            CKM_DES3_ECB_ENCRYPT_DATA },
    { "CKM_DES3_CBC_ENCRYPT_DATA",            CKM_DES3_CBC_ENCRYPT_DATA },
    { "CKM_AES_ECB_ENCRYPT_DATA",             CKM_AES_ECB_ENCRYPT_DATA },
    { "CKM_AES_CBC_ENCRYPT_DATA",             CKM_AES_CBC_ENCRYPT_DATA },
    { "CKM_GOSTR3410_KEY_PAIR_GEN",           CKM_GOSTR3410_KEY_PAIR_GEN },
    { "CKM_GOSTR3410",                        CKM_GOSTR3410 },
    { "CKM_GOSTR3410_WITH_GOSTR3411",         CKM_GOSTR3410_WITH_GOSTR3411 },
    { "CKM_GOSTR3410_KEY_WRAP",               CKM_GOSTR3410_KEY_WRAP },
    { "CKM_GOSTR3410_DERIVE",                 CKM_GOSTR3410_DERIVE },
    { "CKM_GOSTR3411",                        CKM_GOSTR3411 },
    { "CKM_GOSTR3411_HMAC",                   CKM_GOSTR3411_HMAC },
    { "CKM_GOST28147_KEY_GEN",                CKM_GOST28147_KEY_GEN },
    { "CKM_GOST28147_ECB",                    CKM_GOST28147_ECB },
    { "CKM_GOST28147",                        CKM_GOST28147 },
    { "CKM_GOST28147_MAC",                    CKM_GOST28147_MAC },
    { "CKM_GOST28147_KEY_WRAP",               CKM_GOST28147_KEY_WRAP },
    { "CKM_CHACHA20_KEY_GEN",                 0x1225UL },
    { "CKM_CHACHA20",                         0x1226UL },
    { "CKM_POLY1305_KEY_GEN",                 0x1227UL },
    { "CKM_POLY1305",                         0x1228UL },
    { "CKM_EC_KEY_PAIR_GEN_W_EXTRA_BITS",     0x140bUL },
    { "CKM_DSA_PARAMETER_GEN",                CKM_DSA_PARAMETER_GEN },
    { "CKM_DH_PKCS_PARAMETER_GEN",            CKM_DH_PKCS_PARAMETER_GEN },
    { "CKM_X9_42_DH_PARAMETER_GEN",           CKM_X9_42_DH_PARAMETER_GEN },
    { "CKM_DSA_PROBABILISTIC_PARAMETER_GEN",  0x2003UL },
    { "CKM_DSA_SHAWE_TAYLOR_PARAMETER_GEN",   CKM_DSA_SHAWE_TAYLOR_PARAMETER_GEN },
    { "CKM_DSA_FIPS_G_GEN",                   0x2005UL },
    { "CKM_AES_OFB",                          CKM_AES_OFB },
    { "CKM_AES_CFB64",                        CKM_AES_CFB64 },
    { "CKM_AES_CFB8",                         CKM_AES_CFB8 },
    { "CKM_AES_CFB128",                       CKM_AES_CFB128 },
    { "CKM_AES_CFB1",                         CKM_AES_CFB1 },
    { "CKM_AES_KEY_WRAP",                     CKM_AES_KEY_WRAP },
    { "CKM_AES_KEY_WRAP_PAD",                 CKM_AES_KEY_WRAP_PAD },
    { "CKM_AES_KEY_WRAP_KWP",                 0x210bUL },
    { "CKM_RSA_PKCS_TPM_1_1",                 CKM_RSA_PKCS_TPM_1_1 },
    { "CKM_RSA_PKCS_OAEP_TPM_1_1",            CKM_RSA_PKCS_OAEP_TPM_1_1 },
    { "CKM_SHA_1_KEY_GEN",                    0x4003UL },
    { "CKM_SHA224_KEY_GEN",                   0x4004UL },
    { "CKM_SHA256_KEY_GEN",                   0x4005UL },
    { "CKM_SHA384_KEY_GEN",                   0x4006UL },
    { "CKM_SHA512_KEY_GEN",                   0x4007UL },
    { "CKM_SHA512_224_KEY_GEN",               0x4008UL },
    { "CKM_SHA512_256_KEY_GEN",               0x4009UL },
    { "CKM_SHA512_T_KEY_GEN",                 0x400aUL },
    { "CKM_NULL",                             0x400bUL },
    { "CKM_BLAKE2B_160",                      0x400cUL },
    { "CKM_BLAKE2B_160_HMAC",                 0x400dUL },
    { "CKM_BLAKE2B_160_HMAC_GENERAL",         0x400eUL },
    { "CKM_BLAKE2B_160_KEY_DERIVE",           0x400fUL },
    { "CKM_BLAKE2B_160_KEY_GEN",              0x4010UL },
    { "CKM_BLAKE2B_256",                      0x4011UL },
    { "CKM_BLAKE2B_256_HMAC",                 0x4012UL },
    { "CKM_BLAKE2B_256_HMAC_GENERAL",         0x4013UL },
    { "CKM_BLAKE2B_256_KEY_DERIVE",           0x4014UL },
    { "CKM_BLAKE2B_256_KEY_GEN",              0x4015UL },
    { "CKM_BLAKE2B_384",                      0x4016UL },
    { "CKM_BLAKE2B_384_HMAC",                 0x4017UL },
    { "CKM_BLAKE2B_384_HMAC_GENERAL",         0x4018UL },
    { "CKM_BLAKE2B_384_KEY_DERIVE",           0x4019UL },
    { "CKM_BLAKE2B_384_KEY_GEN",              0x401aUL },
    { "CKM_BLAKE2B_512",                      0x401bUL },
    { "CKM_BLAKE2B_512_HMAC",                 0x401cUL },
    { "CKM_BLAKE2B_512_HMAC_GENERAL",         0x401dUL },
    { "CKM_BLAKE2B_512_KEY_DERIVE",           0x401eUL },
    { "CKM_BLAKE2B_512_KEY_GEN",              0x401fUL },
    { "CKM_SALSA20",                          0x4020UL },
    { "CKM_CHACHA20_POLY1305",                0x4021UL },
    { "CKM_SALSA20_POLY1305",                 0x4022UL },
    { "CKM_X3DH_INITIALIZE",                  0x4023UL },
    { "CKM_X3DH_RESPOND",                     0x4024UL },
    { "CKM_X2RATCHET_INITIALIZE",             0x4025UL },
    { "CKM_X2RATCHET_RESPOND",                0x4026UL },
    { "CKM_X2RATCHET_ENCRYPT",                0x4027UL },
    { "CKM_X2RATCHET_DECRYPT",                0x4028UL },
    { "CKM_XEDDSA",                           0x4029UL },
    { "CKM_HKDF_DERIVE",                      0x402aUL },
    { "CKM_HKDF_DATA",                        0x402bUL },
    { "CKM_HKDF_KEY_GEN",                     0x402cUL },
    { "CKM_SALSA20_KEY_GEN",                  0x402dUL },
    { "CKM_IKE2_PRF_PLUS_DERIVE",             0x402eUL },
    { "CKM_IKE_PRF_DERIVE",                   0x402fUL },
    { "CKM_IKE1_PRF_DERIVE",                  0x4030UL },
    { "CKM_IKE1_EXTENDED_DERIVE",             0x4031UL },
    { "CKM_VENDOR_DEFINED",                   CKM_VENDOR_DEFINED },
};
static const hsm_nv ckm_aliases[] = {
    { "CKM_CAST5_KEY_GEN",                    CKM_CAST5_KEY_GEN },
    { "CKM_CAST5_ECB",                        CKM_CAST5_ECB },
    { "CKM_CAST5_CBC",                        CKM_CAST5_CBC },
    { "CKM_CAST5_MAC",                        CKM_CAST5_MAC },
    { "CKM_CAST5_MAC_GENERAL",                CKM_CAST5_MAC_GENERAL },
    { "CKM_CAST5_CBC_PAD",                    CKM_CAST5_CBC_PAD },
    { "CKM_SHA3_256_KEY_DERIVE",              0x397UL },
    { "CKM_SHA3_224_KEY_DERIVE",              0x398UL },
    { "CKM_SHA3_384_KEY_DERIVE",              0x399UL },
    { "CKM_SHA3_512_KEY_DERIVE",              0x39aUL },
    { "CKM_SHAKE_128_KEY_DERIVE",             0x39bUL },
    { "CKM_SHAKE_256_KEY_DERIVE",             0x39cUL },
    { "CKM_PBE_MD5_CAST5_CBC",                CKM_PBE_MD5_CAST5_CBC },
    { "CKM_PBE_SHA1_CAST5_CBC",               CKM_PBE_SHA1_CAST5_CBC },
    { "CKM_ECDSA_KEY_PAIR_GEN",               CKM_ECDSA_KEY_PAIR_GEN },
    { "CKM_DSA_PROBABLISTIC_PARAMETER_GEN",   CKM_DSA_PROBABLISTIC_PARAMETER_GEN },
};

static const hsm_nv ckk_names[] = {
    { "CKK_RSA",               CKK_RSA },
    { "CKK_DSA",               CKK_DSA },
    { "CKK_DH",                CKK_DH },
    { "CKK_EC",                CKK_EC },
    { "CKK_X9_42_DH",          CKK_X9_42_DH },
    { "CKK_KEA",               CKK_KEA },
    { "CKK_GENERIC_SECRET",    CKK_GENERIC_SECRET },
    { "CKK_RC2",               CKK_RC2 },
    { "CKK_RC4",               CKK_RC4 },
    { "CKK_DES",               CKK_DES },
    { "CKK_DES2",              CKK_DES2 },
    { "CKK_DES3",              CKK_DES3 },
    { "CKK_CAST",              CKK_CAST },
    { "CKK_CAST3",             CKK_CAST3 },
    { "CKK_CAST128",           CKK_CAST128 },
    { "CKK_RC5",               CKK_RC5 },
    { "CKK_IDEA",              CKK_IDEA },
    { "CKK_SKIPJACK",          CKK_SKIPJACK },
    { "CKK_BATON",             CKK_BATON },
    { "CKK_JUNIPER",           CKK_JUNIPER },
    { "CKK_CDMF",              CKK_CDMF },
    { "CKK_AES",               CKK_AES },
    { "CKK_BLOWFISH",          CKK_BLOWFISH },
    { "CKK_TWOFISH",           CKK_TWOFISH },
    { "CKK_SECURID",           CKK_SECURID },
    { "CKK_HOTP",              CKK_HOTP },
    { "CKK_ACTI",              CKK_ACTI },
    { "CKK_CAMELLIA",          CKK_CAMELLIA },
    { "CKK_ARIA",              CKK_ARIA },
    { "CKK_MD5_HMAC",          CKK_MD5_HMAC },
    { "CKK_SHA_1_HMAC",        CKK_SHA_1_HMAC },
    { "CKK_RIPEMD128_HMAC",    CKK_RIPEMD128_HMAC },
    { "CKK_RIPEMD160_HMAC",    CKK_RIPEMD160_HMAC },
    { "CKK_SHA256_HMAC",       CKK_SHA256_HMAC },
    { "CKK_SHA384_HMAC",       CKK_SHA384_HMAC },
    { "CKK_SHA512_HMAC",       CKK_SHA512_HMAC },
    { "CKK_SHA224_HMAC",       CKK_SHA224_HMAC },
    { "CKK_SEED",              CKK_SEED },
    { "CKK_GOSTR3410",         CKK_GOSTR3410 },
    { "CKK_GOSTR3411",         CKK_GOSTR3411 },
    { "CKK_GOST28147",         CKK_GOST28147 },
    { "CKK_CHACHA20",          0x33UL },
    { "CKK_POLY1305",          0x34UL },
    { "CKK_AES_XTS",           0x35UL },
    { "CKK_SHA3_224_HMAC",     0x36UL },
    { "CKK_SHA3_256_HMAC",     0x37UL },
    { "CKK_SHA3_384_HMAC",     0x38UL },
    { "CKK_SHA3_512_HMAC",     0x39UL },
    { "CKK_BLAKE2B_160_HMAC",  0x3aUL },
    { "CKK_BLAKE2B_256_HMAC",  0x3bUL },
    { "CKK_BLAKE2B_384_HMAC",  0x3cUL },
    { "CKK_BLAKE2B_512_HMAC",  0x3dUL },
    { "CKK_SALSA20",           0x3eUL },
    { "CKK_X2RATCHET",         0x3fUL },
    { "CKK_EC_EDWARDS",        CKK_EC_EDWARDS },
    { "CKK_EC_MONTGOMERY",     0x41UL },
    { "CKK_HKDF",              0x42UL },
    { "CKK_SHA512_224_HMAC",   0x43UL },
    { "CKK_SHA512_256_HMAC",   0x44UL },
    { "CKK_SHA512_T_HMAC",     0x45UL },
    { "CKK_VENDOR_DEFINED",    CKK_VENDOR_DEFINED },
};
static const hsm_nv ckk_aliases[] = {
    { "CKK_ECDSA",             CKK_ECDSA },
    { "CKK_CAST5",             0x18UL },
};

static const hsm_nv cko_names[] = {
    { "CKO_DATA",               CKO_DATA },
    { "CKO_CERTIFICATE",        CKO_CERTIFICATE },
    { "CKO_PUBLIC_KEY",         CKO_PUBLIC_KEY },
    { "CKO_PRIVATE_KEY",        CKO_PRIVATE_KEY },
    { "CKO_SECRET_KEY",         CKO_SECRET_KEY },
    { "CKO_HW_FEATURE",         CKO_HW_FEATURE },
    { "CKO_DOMAIN_PARAMETERS",  CKO_DOMAIN_PARAMETERS },
    { "CKO_MECHANISM",          CKO_MECHANISM },
    { "CKO_OTP_KEY",            CKO_OTP_KEY },
    { "CKO_PROFILE",            0x9UL },
    { "CKO_VENDOR_DEFINED",     CKO_VENDOR_DEFINED },
};
static const hsm_nv cko_aliases[] = {
    { NULL, 0 }
};

static const hsm_nv ckc_names[] = {
    { "CKC_X_509",            CKC_X_509 },
    { "CKC_X_509_ATTR_CERT",  CKC_X_509_ATTR_CERT },
    { "CKC_WTLS",             CKC_WTLS },
    { "CKC_VENDOR_DEFINED",   CKC_VENDOR_DEFINED },
    { "CKC_OPENPGP",          CKC_OPENPGP },
};
static const hsm_nv ckc_aliases[] = {
    { NULL, 0 }
};

static const hsm_nv cku_names[] = {
    { "CKU_SO",                CKU_SO },
    { "CKU_USER",              CKU_USER },
    { "CKU_CONTEXT_SPECIFIC",  CKU_CONTEXT_SPECIFIC },
};
static const hsm_nv cku_aliases[] = {
    { NULL, 0 }
};

static const hsm_nv ckf_token_names[] = {
    { "CKF_RNG",                            CKF_RNG },
    { "CKF_WRITE_PROTECTED",                CKF_WRITE_PROTECTED },
    { "CKF_LOGIN_REQUIRED",                 CKF_LOGIN_REQUIRED },
    { "CKF_USER_PIN_INITIALIZED",           CKF_USER_PIN_INITIALIZED },
    { "CKF_RESTORE_KEY_NOT_NEEDED",         CKF_RESTORE_KEY_NOT_NEEDED },
    { "CKF_CLOCK_ON_TOKEN",                 CKF_CLOCK_ON_TOKEN },
    { "CKF_PROTECTED_AUTHENTICATION_PATH",  CKF_PROTECTED_AUTHENTICATION_PATH },
    { "CKF_DUAL_CRYPTO_OPERATIONS",         CKF_DUAL_CRYPTO_OPERATIONS },
    { "CKF_TOKEN_INITIALIZED",              CKF_TOKEN_INITIALIZED },
    { "CKF_SECONDARY_AUTHENTICATION",       CKF_SECONDARY_AUTHENTICATION },
    { "CKF_USER_PIN_COUNT_LOW",             CKF_USER_PIN_COUNT_LOW },
    { "CKF_USER_PIN_FINAL_TRY",             CKF_USER_PIN_FINAL_TRY },
    { "CKF_USER_PIN_LOCKED",                CKF_USER_PIN_LOCKED },
    { "CKF_USER_PIN_TO_BE_CHANGED",         CKF_USER_PIN_TO_BE_CHANGED },
    { "CKF_SO_PIN_COUNT_LOW",               CKF_SO_PIN_COUNT_LOW },
    { "CKF_SO_PIN_FINAL_TRY",               CKF_SO_PIN_FINAL_TRY },
    { "CKF_SO_PIN_LOCKED",                  CKF_SO_PIN_LOCKED },
    { "CKF_SO_PIN_TO_BE_CHANGED",           CKF_SO_PIN_TO_BE_CHANGED },
    { "CKF_ERROR_STATE",                    0x1000000UL },
};
static const hsm_nv ckf_token_aliases[] = {
    { NULL, 0 }
};

static const hsm_nv ckf_mech_names[] = {
    { "CKF_HW",                 CKF_HW },
    { "CKF_MESSAGE_ENCRYPT",    0x2UL },
    { "CKF_MESSAGE_DECRYPT",    0x4UL },
    { "CKF_MESSAGE_SIGN",       0x8UL },
    { "CKF_MESSAGE_VERIFY",     0x10UL },
    { "CKF_MULTI_MESSAGE",      0x20UL },
    { "CKF_FIND_OBJECTS",       0x40UL },
    { "CKF_ENCRYPT",            CKF_ENCRYPT },
    { "CKF_DECRYPT",            CKF_DECRYPT },
    { "CKF_DIGEST",             CKF_DIGEST },
    { "CKF_SIGN",               CKF_SIGN },
    { "CKF_SIGN_RECOVER",       CKF_SIGN_RECOVER },
    { "CKF_VERIFY",             CKF_VERIFY },
    { "CKF_VERIFY_RECOVER",     CKF_VERIFY_RECOVER },
    { "CKF_GENERATE",           CKF_GENERATE },
    { "CKF_GENERATE_KEY_PAIR",  CKF_GENERATE_KEY_PAIR },
    { "CKF_WRAP",               CKF_WRAP },
    { "CKF_UNWRAP",             CKF_UNWRAP },
    { "CKF_DERIVE",             CKF_DERIVE },
    { "CKF_EC_F_P",             CKF_EC_F_P },
    { "CKF_EC_F_2M",            0x200000UL },
    { "CKF_EC_ECPARAMETERS",    0x400000UL },
    { "CKF_EC_OID",             0x800000UL },
    { "CKF_EC_UNCOMPRESS",      CKF_EC_UNCOMPRESS },
    { "CKF_EC_COMPRESS",        CKF_EC_COMPRESS },
    { "CKF_EC_CURVENAME",       0x4000000UL },
    { "CKF_EXTENSION",          CKF_EXTENSION },
};
static const hsm_nv ckf_mech_aliases[] = {
    { "CKF_EC_NAMEDCURVE",      CKF_EC_NAMEDCURVE },
};

/* ------------------------------------------------------------------ the indexes */

typedef struct ns_table {
    const char *prefix;        /* "CKA_" */
    size_t plen;
    const hsm_nv *names;       /* preferred names */
    size_t n;
    const hsm_nv *aliases;     /* may end with a { NULL, 0 } placeholder */
    size_t na;
    const hsm_nv **by_value;   /* n entries, sorted by value */
    const hsm_nv **by_name;    /* up to n + na entries, sorted by case-folded suffix */
    size_t nn;                 /* entries in by_name */
} ns_table;

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

#define NS_INDEX(low)                                                   \
    static const hsm_nv *low##_by_value[COUNT(low##_names)];            \
    static const hsm_nv *low##_by_name[COUNT(low##_names) + COUNT(low##_aliases)];

NS_INDEX(ckr)
NS_INDEX(cka)
NS_INDEX(ckm)
NS_INDEX(ckk)
NS_INDEX(cko)
NS_INDEX(ckc)
NS_INDEX(cku)
NS_INDEX(ckf_token)
NS_INDEX(ckf_mech)

#define NS_ENTRY(low, prefix)                                                   \
    { prefix, sizeof(prefix) - 1, low##_names, COUNT(low##_names), low##_aliases, \
      COUNT(low##_aliases), low##_by_value, low##_by_name, 0 }

/* Indexed by hsm_ns. */
static ns_table tables[HSM_NS_COUNT] = {
    [HSM_NS_CKR] = NS_ENTRY(ckr, "CKR_"),
    [HSM_NS_CKA] = NS_ENTRY(cka, "CKA_"),
    [HSM_NS_CKM] = NS_ENTRY(ckm, "CKM_"),
    [HSM_NS_CKK] = NS_ENTRY(ckk, "CKK_"),
    [HSM_NS_CKO] = NS_ENTRY(cko, "CKO_"),
    [HSM_NS_CKC] = NS_ENTRY(ckc, "CKC_"),
    [HSM_NS_CKU] = NS_ENTRY(cku, "CKU_"),
    [HSM_NS_CKF_TOKEN] = NS_ENTRY(ckf_token, "CKF_"),
    [HSM_NS_CKF_MECH] = NS_ENTRY(ckf_mech, "CKF_"),
};

static pthread_once_t tables_once = PTHREAD_ONCE_INIT;

static int fold(int c)
{
    return (c >= 'a' && c <= 'z') ? c - 'a' + 'A' : c;
}

/* ASCII case-insensitive strcmp (locale-independent). */
static int cmp_fold(const char *a, const char *b)
{
    for (;; a++, b++) {
        int ca = fold((unsigned char)*a), cb = fold((unsigned char)*b);
        if (ca != cb || ca == 0)
            return ca - cb;
    }
}

static int has_prefix_fold(const char *s, const char *prefix)
{
    for (; *prefix; s++, prefix++)
        if (fold((unsigned char)*s) != fold((unsigned char)*prefix))
            return 0;
    return 1;
}

/* qsort has no context argument: the prefix length of the table being sorted. */
static size_t sort_plen;

static int by_value_cmp(const void *pa, const void *pb)
{
    const hsm_nv *a = *(const hsm_nv *const *)pa, *b = *(const hsm_nv *const *)pb;
    if (a->value != b->value)
        return a->value < b->value ? -1 : 1;
    return a < b ? -1 : (a > b);   /* stable: table order */
}

static int by_name_cmp(const void *pa, const void *pb)
{
    const hsm_nv *a = *(const hsm_nv *const *)pa, *b = *(const hsm_nv *const *)pb;
    return cmp_fold(a->name + sort_plen, b->name + sort_plen);
}

static void build_tables(void)
{
    for (size_t k = 0; k < HSM_NS_COUNT; k++) {
        ns_table *t = &tables[k];
        size_t nn = 0;
        for (size_t i = 0; i < t->n; i++) {
            t->by_value[i] = &t->names[i];
            t->by_name[nn++] = &t->names[i];
        }
        for (size_t i = 0; i < t->na; i++)
            if (t->aliases[i].name)
                t->by_name[nn++] = &t->aliases[i];
        t->nn = nn;
        qsort(t->by_value, t->n, sizeof t->by_value[0], by_value_cmp);
        sort_plen = t->plen;
        qsort(t->by_name, nn, sizeof t->by_name[0], by_name_cmp);
    }
}

static const ns_table *table(hsm_ns ns)
{
    if ((unsigned)ns >= HSM_NS_COUNT)
        return NULL;
    pthread_once(&tables_once, build_tables);
    return &tables[ns];
}

static const hsm_nv *find_value(const ns_table *t, CK_ULONG value)
{
    size_t lo = 0, hi = t->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        CK_ULONG v = t->by_value[mid]->value;
        if (v == value)
            return t->by_value[mid];
        if (v < value)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

static const hsm_nv *find_name(const ns_table *t, const char *suffix)
{
    size_t lo = 0, hi = t->nn;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = cmp_fold(suffix, t->by_name[mid]->name + t->plen);
        if (c == 0)
            return t->by_name[mid];
        if (c > 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* "0x1F" (hex) or "31" (decimal); the whole string, no sign, no blanks, no overflow. */
static int parse_number(const char *s, CK_ULONG *out)
{
    CK_ULONG v = 0;
    unsigned base = 10;
    if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
        base = 16;
        s += 2;
    }
    if (!*s)
        return -1;
    for (; *s; s++) {
        unsigned d;
        if (*s >= '0' && *s <= '9')
            d = (unsigned)(*s - '0');
        else if (base == 16 && fold((unsigned char)*s) >= 'A' && fold((unsigned char)*s) <= 'F')
            d = (unsigned)(fold((unsigned char)*s) - 'A' + 10);
        else
            return -1;
        if (v > ((CK_ULONG)-1 - d) / base)
            return -1;
        v = v * base + d;
    }
    *out = v;
    return 0;
}

/* ------------------------------------------------------------------ public API */

const char *hsm_name(hsm_ns ns, CK_ULONG value)
{
    const ns_table *t = table(ns);
    const hsm_nv *e = t ? find_value(t, value) : NULL;
    return e ? e->name : NULL;
}

/* Returns the table's name (also copied into buf when it fits), or buf holding
 * "<PREFIX>0x%08lx". NULL only for an unknown value with no buffer to write to. */
const char *hsm_name_or_hex(hsm_ns ns, CK_ULONG value, char *buf, size_t buflen)
{
    const ns_table *t = table(ns);
    const hsm_nv *e = t ? find_value(t, value) : NULL;
    if (e) {
        if (buf && buflen)
            snprintf(buf, buflen, "%s", e->name);
        return e->name;
    }
    if (!buf || !buflen)
        return NULL;
    snprintf(buf, buflen, "%s0x%08lx", t ? t->prefix : "CK?_", (unsigned long)value);
    return buf;
}

int hsm_value(hsm_ns ns, const char *name, CK_ULONG *out)
{
    const ns_table *t = table(ns);
    const hsm_nv *e;
    CK_ULONG v;
    if (!t || !name || !*name)
        return -1;
    if (parse_number(name, &v) == 0)
        goto found;
    if (has_prefix_fold(name, t->prefix)) {
        name += t->plen;
        if (parse_number(name, &v) == 0)   /* "CKA_0x80000001", as hsm_name_or_hex writes */
            goto found;
    }
    e = find_name(t, name);
    if (!e)
        return -1;
    v = e->value;
found:
    if (out)
        *out = v;
    return 0;
}

int hsm_name_at(hsm_ns ns, size_t i, const char **name, CK_ULONG *value)
{
    const ns_table *t = table(ns);
    if (!t || i >= t->n)
        return 0;
    if (name)
        *name = t->by_value[i]->name;
    if (value)
        *value = t->by_value[i]->value;
    return 1;
}

/* ------------------------------------------------------------------ attribute types */

/* PKCS#11 3.0 attributes the 2.40 header lacks. */
#define HSM_CKA_UNIQUE_ID           0x004UL
#define HSM_CKA_PROFILE_ID          0x601UL
#define HSM_CKA_X2RATCHET_BAG       0x602UL
#define HSM_CKA_X2RATCHET_BAGSIZE   0x603UL
#define HSM_CKA_X2RATCHET_BOBS1STMSG 0x604UL
#define HSM_CKA_X2RATCHET_CKR       0x605UL
#define HSM_CKA_X2RATCHET_CKS       0x606UL
#define HSM_CKA_X2RATCHET_DHP       0x607UL
#define HSM_CKA_X2RATCHET_DHR       0x608UL
#define HSM_CKA_X2RATCHET_DHS       0x609UL
#define HSM_CKA_X2RATCHET_HKR       0x60aUL
#define HSM_CKA_X2RATCHET_HKS       0x60bUL
#define HSM_CKA_X2RATCHET_ISALICE   0x60cUL
#define HSM_CKA_X2RATCHET_NHKR      0x60dUL
#define HSM_CKA_X2RATCHET_NHKS      0x60eUL
#define HSM_CKA_X2RATCHET_NR        0x60fUL
#define HSM_CKA_X2RATCHET_NS        0x610UL
#define HSM_CKA_X2RATCHET_PNS       0x611UL
#define HSM_CKA_X2RATCHET_RK        0x612UL

/* Types as the PKCS#11 2.40/3.0 attribute tables give them ("RFC2279 string" is STRING,
 * "Big integer" is BIGINT, "Byte array" is BYTES ...). Unknown and vendor attributes are BYTES. */
hsm_atype hsm_attr_type(CK_ATTRIBUTE_TYPE type)
{
    switch (type) {
    /* CK_BBOOL */
    case CKA_TOKEN: case CKA_PRIVATE: case CKA_TRUSTED: case CKA_SENSITIVE:
    case CKA_ENCRYPT: case CKA_DECRYPT: case CKA_WRAP: case CKA_UNWRAP: case CKA_SIGN:
    case CKA_SIGN_RECOVER: case CKA_VERIFY: case CKA_VERIFY_RECOVER: case CKA_DERIVE:
    case CKA_EXTRACTABLE: case CKA_LOCAL: case CKA_NEVER_EXTRACTABLE:
    case CKA_ALWAYS_SENSITIVE: case CKA_MODIFIABLE: case CKA_COPYABLE: case CKA_DESTROYABLE:
    case CKA_SECONDARY_AUTH: case CKA_ALWAYS_AUTHENTICATE: case CKA_WRAP_WITH_TRUSTED:
    case CKA_OTP_USER_FRIENDLY_MODE: case CKA_RESET_ON_INIT: case CKA_HAS_RESET:
    case CKA_COLOR: case HSM_CKA_X2RATCHET_BOBS1STMSG: case HSM_CKA_X2RATCHET_ISALICE:
        return HSM_AT_BOOL;

    /* RFC2279 (UTF-8) strings */
    case CKA_LABEL: case HSM_CKA_UNIQUE_ID: case CKA_APPLICATION: case CKA_URL:
    case CKA_OTP_TIME: case CKA_OTP_USER_IDENTIFIER: case CKA_OTP_SERVICE_IDENTIFIER:
    case CKA_OTP_SERVICE_LOGO_TYPE: case CKA_CHAR_SETS: case CKA_ENCODING_METHODS:
    case CKA_MIME_TYPES:
        return HSM_AT_STRING;

    /* Big integers */
    case CKA_MODULUS: case CKA_PUBLIC_EXPONENT: case CKA_PRIVATE_EXPONENT:
    case CKA_PRIME_1: case CKA_PRIME_2: case CKA_EXPONENT_1: case CKA_EXPONENT_2:
    case CKA_COEFFICIENT: case CKA_PRIME: case CKA_SUBPRIME: case CKA_BASE:
        return HSM_AT_BIGINT;

    /* Plain CK_ULONG (and CK_ULONG-sized enumerations with no table here) */
    case CKA_CERTIFICATE_CATEGORY: case CKA_JAVA_MIDP_SECURITY_DOMAIN:
    case CKA_MODULUS_BITS: case CKA_PRIME_BITS: case CKA_SUB_PRIME_BITS:
    case CKA_VALUE_BITS: case CKA_VALUE_LEN: case CKA_AUTH_PIN_FLAGS:
    case CKA_OTP_FORMAT: case CKA_OTP_LENGTH: case CKA_OTP_TIME_INTERVAL:
    case CKA_OTP_CHALLENGE_REQUIREMENT: case CKA_OTP_TIME_REQUIREMENT:
    case CKA_OTP_COUNTER_REQUIREMENT: case CKA_OTP_PIN_REQUIREMENT:
    case CKA_HW_FEATURE_TYPE: case CKA_PIXEL_X: case CKA_PIXEL_Y: case CKA_RESOLUTION:
    case CKA_CHAR_ROWS: case CKA_CHAR_COLUMNS: case CKA_BITS_PER_PIXEL:
    case HSM_CKA_PROFILE_ID: case HSM_CKA_X2RATCHET_BAGSIZE: case HSM_CKA_X2RATCHET_NR:
    case HSM_CKA_X2RATCHET_NS: case HSM_CKA_X2RATCHET_PNS:
        return HSM_AT_ULONG;

    /* CK_ULONG naming a member of another table */
    case CKA_CLASS: case CKA_KEY_TYPE: case CKA_CERTIFICATE_TYPE:
    case CKA_KEY_GEN_MECHANISM: case CKA_MECHANISM_TYPE: case CKA_NAME_HASH_ALGORITHM:
        return HSM_AT_ENUM;

    case CKA_START_DATE: case CKA_END_DATE:
        return HSM_AT_DATE;

    case CKA_WRAP_TEMPLATE: case CKA_UNWRAP_TEMPLATE: case CKA_DERIVE_TEMPLATE:
        return HSM_AT_ATTRS;

    case CKA_ALLOWED_MECHANISMS:
        return HSM_AT_MECHS;

    /* CKA_VALUE, CKA_OBJECT_ID, CKA_ISSUER, CKA_SERIAL_NUMBER, CKA_AC_ISSUER, CKA_OWNER,
     * CKA_ATTR_TYPES, CKA_HASH_OF_*, CKA_CHECK_VALUE, CKA_SUBJECT, CKA_ID,
     * CKA_PUBLIC_KEY_INFO, CKA_EC_PARAMS, CKA_EC_POINT, CKA_OTP_COUNTER,
     * CKA_OTP_SERVICE_LOGO, CKA_GOST*_PARAMS, CKA_*_CMS_ATTRIBUTES, CKA_X2RATCHET_BAG and
     * the X2RATCHET keys, vendor attributes ... */
    default:
        return HSM_AT_BYTES;
    }
}

/* For HSM_AT_ENUM attributes the table naming their value; HSM_NS_COUNT for the others. */
hsm_ns hsm_attr_enum_ns(CK_ATTRIBUTE_TYPE type)
{
    switch (type) {
    case CKA_CLASS: return HSM_NS_CKO;
    case CKA_KEY_TYPE: return HSM_NS_CKK;
    case CKA_CERTIFICATE_TYPE: return HSM_NS_CKC;
    case CKA_KEY_GEN_MECHANISM: case CKA_MECHANISM_TYPE: case CKA_NAME_HASH_ALGORITHM:
        return HSM_NS_CKM;
    default: return HSM_NS_COUNT;
    }
}

/* Key material: CKA_VALUE of secret and private keys (and of the old CKO_OTP_KEY class and of
 * vendor-defined classes, whose meaning we cannot know), the RSA private components, and the
 * secret parts of PKCS#11 3.0 X2Ratchet state. hsmsh never reads these. */
int hsm_attr_is_key_material(CK_OBJECT_CLASS cls, CK_ATTRIBUTE_TYPE type)
{
    switch (type) {
    case CKA_VALUE:
        return cls == CKO_SECRET_KEY || cls == CKO_PRIVATE_KEY || cls == CKO_OTP_KEY ||
               (cls & CKO_VENDOR_DEFINED) != 0;
    case CKA_PRIVATE_EXPONENT: case CKA_PRIME_1: case CKA_PRIME_2:
    case CKA_EXPONENT_1: case CKA_EXPONENT_2: case CKA_COEFFICIENT:
    case HSM_CKA_X2RATCHET_CKR: case HSM_CKA_X2RATCHET_CKS: case HSM_CKA_X2RATCHET_DHS:
    case HSM_CKA_X2RATCHET_HKR: case HSM_CKA_X2RATCHET_HKS: case HSM_CKA_X2RATCHET_NHKR:
    case HSM_CKA_X2RATCHET_NHKS: case HSM_CKA_X2RATCHET_RK:
        return 1;
    default:
        return 0;
    }
}
