/* hsm_p11.h - the pure-C PKCS#11 client of hsmsh (no Lua here).
 *
 * Conventions: functions return 0 on success and -1 on failure, filling an hsm_err.
 * A failure that came from the module keeps its CK_RV and the name of the C_ function;
 * other failures (dlopen, malformed URI, out of memory) have rv == CKR_OK and a message.
 */
#ifndef HSM_P11_H
#define HSM_P11_H

#include <stddef.h>
#include <p11-kit/pkcs11.h>

/* ------------------------------------------------------------------ errors */
typedef struct hsm_err {
    CK_RV rv;       /* module return value, or CKR_OK when the failure is ours */
    char fn[40];    /* "C_Login", or "" */
    char msg[512];  /* "C_Login: CKR_PIN_INCORRECT" or our own sentence */
} hsm_err;

void hsm_err_clear(hsm_err *e);
/* Records a module failure: msg becomes "<fn>: <CKR name>". Returns -1. */
int hsm_err_rv(hsm_err *e, const char *fn, CK_RV rv);
/* Records one of our own failures (printf-style). Returns -1. */
int hsm_err_set(hsm_err *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ------------------------------------------------------------ name tables (names.c) */
typedef enum hsm_ns {
    HSM_NS_CKR,   /* return values */
    HSM_NS_CKA,   /* attribute types */
    HSM_NS_CKM,   /* mechanism types */
    HSM_NS_CKK,   /* key types */
    HSM_NS_CKO,   /* object classes */
    HSM_NS_CKC,   /* certificate types */
    HSM_NS_CKU,   /* user types */
    HSM_NS_CKF_TOKEN, /* token info flags (bit names) */
    HSM_NS_CKF_MECH,  /* mechanism info flags (bit names) */
    HSM_NS_COUNT
} hsm_ns;

/* How an attribute's value is encoded. */
typedef enum hsm_atype {
    HSM_AT_BYTES,   /* opaque byte string (CKA_ID, CKA_VALUE, CKA_EC_POINT ...) */
    HSM_AT_STRING,  /* UTF-8 text (CKA_LABEL, CKA_APPLICATION, CKA_URL ...) */
    HSM_AT_BIGINT,  /* big-endian integer (CKA_MODULUS, CKA_PUBLIC_EXPONENT ...) */
    HSM_AT_BOOL,    /* CK_BBOOL */
    HSM_AT_ULONG,   /* plain CK_ULONG (CKA_VALUE_LEN, CKA_MODULUS_BITS ...) */
    HSM_AT_ENUM,    /* CK_ULONG naming a member of another table: see hsm_attr_enum_ns */
    HSM_AT_DATE,    /* CK_DATE */
    HSM_AT_ATTRS,   /* attribute array (CKA_WRAP_TEMPLATE, CKA_UNWRAP_TEMPLATE, CKA_DERIVE_TEMPLATE) */
    HSM_AT_MECHS    /* CK_MECHANISM_TYPE array (CKA_ALLOWED_MECHANISMS) */
} hsm_atype;

/* Long-form name ("CKA_LABEL") of a value, or NULL when the table has none.
 * Aliases (CKA_ECDSA_PARAMS, CKK_ECDSA ...) map to the preferred current name. */
const char *hsm_name(hsm_ns ns, CK_ULONG value);
/* Long-form name, or "CKA_0x%08lx"-style text for unknown values; buf must hold 32 bytes. */
const char *hsm_name_or_hex(hsm_ns ns, CK_ULONG value, char *buf, size_t buflen);
/* Looks a name up: accepts "CKA_LABEL", "label", "LABEL", aliases, any case, and numbers
 * ("0x80000001", "3"). Returns 0 and sets *out, or -1 when unknown. */
int hsm_value(hsm_ns ns, const char *name, CK_ULONG *out);
/* Iterates a table's preferred names: returns 0 past the end. */
int hsm_name_at(hsm_ns ns, size_t i, const char **name, CK_ULONG *value);
hsm_atype hsm_attr_type(CK_ATTRIBUTE_TYPE type);
/* For HSM_AT_ENUM attributes: which table names the value (CKA_CLASS -> HSM_NS_CKO). */
hsm_ns hsm_attr_enum_ns(CK_ATTRIBUTE_TYPE type);
/* Attributes that are key material (CKA_VALUE of a key, private exponents, primes ...):
 * hsmsh never reads them, so they never leave the HSM in clear. */
int hsm_attr_is_key_material(CK_OBJECT_CLASS cls, CK_ATTRIBUTE_TYPE type);

/* ------------------------------------------------------------ RFC 7512 URIs (uri.c) */
typedef struct hsm_uri {
    /* path attributes, percent-decoded, NULL when absent */
    char *token, *manufacturer, *serial, *model;
    char *library_manufacturer, *library_description, *library_version;
    char *slot_description, *slot_manufacturer;
    char *object;                 /* CKA_LABEL */
    char *type;                   /* "public" "private" "secret-key" "cert" "data" */
    unsigned char *id; size_t id_len; int has_id;
    CK_SLOT_ID slot_id; int has_slot_id;
    /* query attributes */
    char *module_path, *module_name, *pin_source;
    char *init_reserved;          /* x-init-reserved: C_Initialize's pReserved (NSS softokn) */
    unsigned char *pin_value; size_t pin_value_len; /* zeroized by hsm_uri_free */
} hsm_uri;

/* Parses s; on error fills err with a message that names the bad part and returns -1
 * (out is left empty). */
int hsm_uri_parse(const char *s, hsm_uri *out, hsm_err *err);
void hsm_uri_free(hsm_uri *u);
/* Formats u as a URI (malloc'd). pin-value is written only if with_pin. */
char *hsm_uri_format(const hsm_uri *u, int with_pin);

/* ------------------------------------------------------------ p11-kit registrations (p11kit.c) */
typedef struct hsm_registration {
    char file[4096];            /* the NAME.module file read */
    char path[4096];            /* its "module:", absolute */
    char init_reserved[1024];   /* its "x-init-reserved:" */
    int has_init_reserved;
} hsm_registration;

/* Finds NAME.module in dirs (NULL: p11-kit's own directories, in p11-kit's order). */
int hsm_p11kit_lookup(const char *name, const char *const *dirs, hsm_registration *out,
                      hsm_err *err);

/* ------------------------------------------------------------ modules (module.c) */
typedef struct hsm_module hsm_module;

/* Loads a module by file path, or by p11-kit registered name (no '/' in the string).
 * The same library is loaded and C_Initialize'd once per process (reference counted);
 * "already initialized" is tolerated. */
hsm_module *hsm_module_load(const char *path_or_name, hsm_err *err);
/* The same, with C_Initialize's pReserved: init_reserved (when not NULL) else the p11-kit
 * registration's x-init-reserved for a name, else none. A library already loaded with
 * other arguments is an error (one C_Initialize per process); NULL accepts what it has. */
hsm_module *hsm_module_load_init(const char *path_or_name, const char *init_reserved,
                                 hsm_err *err);
/* The pReserved string the module was initialised with, or NULL. */
const char *hsm_module_init_reserved(const hsm_module *m);
hsm_module *hsm_module_ref(hsm_module *m);
/* Drops a reference; the last one calls C_Finalize (unless someone else initialized it) and dlclose. */
void hsm_module_unref(hsm_module *m);
CK_FUNCTION_LIST *hsm_module_functions(hsm_module *m);
const char *hsm_module_path(const hsm_module *m);
int hsm_module_info(hsm_module *m, CK_INFO *out, hsm_err *err);
/* *out is malloc'd. */
int hsm_slots(hsm_module *m, int token_present, CK_SLOT_ID **out, CK_ULONG *n, hsm_err *err);
int hsm_slot_info(hsm_module *m, CK_SLOT_ID slot, CK_SLOT_INFO *out, hsm_err *err);
int hsm_token_info(hsm_module *m, CK_SLOT_ID slot, CK_TOKEN_INFO *out, hsm_err *err);
int hsm_mechanisms(hsm_module *m, CK_SLOT_ID slot, CK_MECHANISM_TYPE **out, CK_ULONG *n, hsm_err *err);
int hsm_mechanism_info(hsm_module *m, CK_SLOT_ID slot, CK_MECHANISM_TYPE t, CK_MECHANISM_INFO *out, hsm_err *err);
int hsm_init_token(hsm_module *m, CK_SLOT_ID slot, const unsigned char *so_pin, size_t so_len,
                   const char *label, hsm_err *err);
/* Trims the blank padding of a fixed-width PKCS#11 text field into buf (NUL-terminated). */
const char *hsm_field(const unsigned char *field, size_t width, char *buf, size_t buflen);

/* ------------------------------------------------------------ sessions (session.c) */
typedef struct hsm_session {
    hsm_module *module;   /* referenced while the session is open */
    CK_SLOT_ID slot;
    CK_SESSION_HANDLE h;
    int open;
} hsm_session;

int hsm_session_open(hsm_module *m, CK_SLOT_ID slot, int rw, hsm_session *out, hsm_err *err);
/* Idempotent. */
int hsm_session_close(hsm_session *s, hsm_err *err);
int hsm_session_info(hsm_session *s, CK_SESSION_INFO *out, hsm_err *err);

/* One attempt. Refuses (without calling C_Login) when the token reports the PIN locked.
 * *final_try is set when the token says the next wrong PIN locks it. CKU_CONTEXT_SPECIFIC
 * is accepted. CKR_USER_ALREADY_LOGGED_IN counts as success. */
int hsm_login(hsm_session *s, CK_USER_TYPE who, const unsigned char *pin, size_t len,
              int *final_try, hsm_err *err);
int hsm_logout(hsm_session *s, hsm_err *err);
int hsm_init_pin(hsm_session *s, const unsigned char *pin, size_t len, hsm_err *err);

/* ------------------------------------------------------------ templates (template.c) */
/* A template owns its values (and nested templates for HSM_AT_ATTRS); free zeroizes them. */
typedef struct hsm_tmpl {
    CK_ATTRIBUTE *a;
    CK_ULONG n, cap;
} hsm_tmpl;

void hsm_tmpl_init(hsm_tmpl *t);
void hsm_tmpl_free(hsm_tmpl *t);
int hsm_tmpl_add(hsm_tmpl *t, CK_ATTRIBUTE_TYPE type, const void *value, CK_ULONG len);
int hsm_tmpl_add_bool(hsm_tmpl *t, CK_ATTRIBUTE_TYPE type, int v);
int hsm_tmpl_add_ulong(hsm_tmpl *t, CK_ATTRIBUTE_TYPE type, CK_ULONG v);
/* Moves inner into t as an attribute-array value (inner is left empty). */
int hsm_tmpl_add_tmpl(hsm_tmpl *t, CK_ATTRIBUTE_TYPE type, hsm_tmpl *inner);
/* The attribute of that type, or NULL. */
const CK_ATTRIBUTE *hsm_tmpl_get(const hsm_tmpl *t, CK_ATTRIBUTE_TYPE type);

/* ------------------------------------------------------------ objects (object.c) */
/* Enumerates every match once (C_FindObjectsInit/C_FindObjects in batches/Final).
 * A failed search is an error, never "no objects". *out is malloc'd. */
int hsm_find(hsm_session *s, const hsm_tmpl *filter, CK_OBJECT_HANDLE **out, CK_ULONG *n,
             hsm_err *err);
/* Every readable attribute of the object, known key material excluded, in table order. */
int hsm_get_all(hsm_session *s, CK_OBJECT_HANDLE o, hsm_tmpl *out, hsm_err *err);
/* One attribute. Returns 1 and appends it to out, 0 when the object has no such readable
 * attribute (invalid or sensitive: *why is set to that CKR), -1 on error. */
int hsm_get_one(hsm_session *s, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_TYPE type, hsm_tmpl *out,
                CK_RV *why, hsm_err *err);
int hsm_set(hsm_session *s, CK_OBJECT_HANDLE o, const hsm_tmpl *t, hsm_err *err);
int hsm_create(hsm_session *s, const hsm_tmpl *t, CK_OBJECT_HANDLE *out, hsm_err *err);
int hsm_copy(hsm_session *s, CK_OBJECT_HANDLE o, const hsm_tmpl *t, CK_OBJECT_HANDLE *out,
             hsm_err *err);
int hsm_destroy(hsm_session *s, CK_OBJECT_HANDLE o, hsm_err *err);

/* ------------------------------------------------------------ keys and crypto (crypto.c) */
/* Output buffers are malloc'd; the caller frees them (after zeroizing if needed). */
int hsm_generate_key(hsm_session *s, CK_MECHANISM *mech, const hsm_tmpl *t,
                     CK_OBJECT_HANDLE *out, hsm_err *err);
int hsm_generate_key_pair(hsm_session *s, CK_MECHANISM *mech, const hsm_tmpl *pub,
                          const hsm_tmpl *priv, CK_OBJECT_HANDLE *pub_out,
                          CK_OBJECT_HANDLE *priv_out, hsm_err *err);
typedef enum hsm_op { HSM_OP_ENCRYPT, HSM_OP_DECRYPT, HSM_OP_SIGN, HSM_OP_DIGEST } hsm_op;
/* Single-part encrypt/decrypt/sign/digest (key ignored for digest). For keys with
 * CKA_ALWAYS_AUTHENTICATE, ctx_pin (or NULL) is given to C_Login(CKU_CONTEXT_SPECIFIC)
 * between the Init and the operation, as PKCS#11 requires. */
int hsm_crypt(hsm_session *s, hsm_op op, CK_MECHANISM *mech, CK_OBJECT_HANDLE key,
              const unsigned char *in, size_t inlen, const unsigned char *ctx_pin,
              size_t ctx_pin_len, unsigned char **out, size_t *outlen, hsm_err *err);
/* Returns 1 valid, 0 invalid (CKR_SIGNATURE_INVALID / _LEN_RANGE), -1 error. */
int hsm_verify(hsm_session *s, CK_MECHANISM *mech, CK_OBJECT_HANDLE key,
               const unsigned char *data, size_t dlen, const unsigned char *sig, size_t slen,
               hsm_err *err);
int hsm_random(hsm_session *s, unsigned char *out, size_t n, hsm_err *err);
/* Multi-part MACs and signatures over streamed data (one active operation per session).
 * hsm_sign_end: *outlen is out's size on entry (HSM_MAC_MAX is enough for MACs).
 * hsm_verify_end: 1 valid, 0 invalid, -1 error. */
#define HSM_MAC_MAX 64
int hsm_sign_begin(hsm_session *s, CK_MECHANISM *mech, CK_OBJECT_HANDLE key, hsm_err *err);
int hsm_sign_update(hsm_session *s, const unsigned char *data, size_t len, hsm_err *err);
int hsm_sign_end(hsm_session *s, unsigned char *out, size_t *outlen, hsm_err *err);
int hsm_verify_begin(hsm_session *s, CK_MECHANISM *mech, CK_OBJECT_HANDLE key, hsm_err *err);
int hsm_verify_update(hsm_session *s, const unsigned char *data, size_t len, hsm_err *err);
int hsm_verify_end(hsm_session *s, const unsigned char *sig, size_t len, hsm_err *err);
int hsm_wrap(hsm_session *s, CK_MECHANISM *mech, CK_OBJECT_HANDLE wrapping, CK_OBJECT_HANDLE key,
             unsigned char **out, size_t *outlen, hsm_err *err);
int hsm_unwrap(hsm_session *s, CK_MECHANISM *mech, CK_OBJECT_HANDLE unwrapping,
               const unsigned char *blob, size_t bloblen, const hsm_tmpl *t,
               CK_OBJECT_HANDLE *out, hsm_err *err);
int hsm_derive(hsm_session *s, CK_MECHANISM *mech, CK_OBJECT_HANDLE base, const hsm_tmpl *t,
               CK_OBJECT_HANDLE *out, hsm_err *err);

#endif
