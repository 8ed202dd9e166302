/* object.c - finding objects (enumerate once) and their attributes: read all, read one,
 * set, create, copy, destroy. Key material (hsm_attr_is_key_material) is never read. */
#include <stdlib.h>
#include <string.h>

#include "hsm_p11.h"

#define FIND_BATCH 256

static CK_FUNCTION_LIST *F(hsm_session *s) { return hsm_module_functions(s->module); }

int hsm_find(hsm_session *s, const hsm_tmpl *filter, CK_OBJECT_HANDLE **out, CK_ULONG *n,
             hsm_err *err)
{
    *out = NULL;
    *n = 0;
    CK_RV rv = F(s)->C_FindObjectsInit(s->h, filter ? filter->a : NULL, filter ? filter->n : 0);
    if (rv != CKR_OK)
        return hsm_err_rv(err, "C_FindObjectsInit", rv);
    CK_OBJECT_HANDLE *all = NULL;
    CK_ULONG count = 0, cap = 0;
    for (;;) {
        if (cap - count < FIND_BATCH) {
            cap = cap ? cap * 2 : FIND_BATCH * 2;
            CK_OBJECT_HANDLE *grown = realloc(all, cap * sizeof *all);
            if (!grown) {
                free(all);
                F(s)->C_FindObjectsFinal(s->h);
                return hsm_err_set(err, "out of memory while listing objects");
            }
            all = grown;
        }
        CK_ULONG got = 0;
        rv = F(s)->C_FindObjects(s->h, all + count, FIND_BATCH, &got);
        if (rv != CKR_OK) {
            free(all);
            F(s)->C_FindObjectsFinal(s->h);
            return hsm_err_rv(err, "C_FindObjects", rv);
        }
        if (got == 0)
            break;
        count += got;
    }
    rv = F(s)->C_FindObjectsFinal(s->h);
    if (rv != CKR_OK) {
        free(all);
        return hsm_err_rv(err, "C_FindObjectsFinal", rv);
    }
    *out = all;
    *n = count;
    return 0;
}

static int acceptable(CK_RV rv)
{
    return rv == CKR_OK || rv == CKR_ATTRIBUTE_SENSITIVE || rv == CKR_ATTRIBUTE_TYPE_INVALID;
}

/* Reads one attribute whose length is known to be available; appends it to out. */
static int fetch_one(hsm_session *s, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_TYPE type, CK_ULONG len,
                     hsm_tmpl *out, CK_RV *why, hsm_err *err)
{
    CK_ATTRIBUTE a = {type, NULL, len};
    if (hsm_attr_type(type) != HSM_AT_ATTRS) {
        a.pValue = malloc(len ? len : 1);
        if (!a.pValue)
            return hsm_err_set(err, "out of memory");
        CK_RV rv = F(s)->C_GetAttributeValue(s->h, o, &a, 1);
        if (rv != CKR_OK || a.ulValueLen == CK_UNAVAILABLE_INFORMATION) {
            free(a.pValue);
            if (acceptable(rv)) {
                *why = rv;
                return 0;
            }
            return hsm_err_rv(err, "C_GetAttributeValue", rv);
        }
        int r = hsm_tmpl_add(out, type, a.pValue, a.ulValueLen);
        explicit_bzero(a.pValue, len);
        free(a.pValue);
        return r == 0 ? 1 : hsm_err_set(err, "out of memory");
    }
    /* Attribute arrays: lengths of the members first, then their values. */
    CK_ULONG count = len / sizeof(CK_ATTRIBUTE);
    hsm_tmpl inner;
    hsm_tmpl_init(&inner);
    CK_ATTRIBUTE *members = calloc(count ? count : 1, sizeof *members);
    if (!members)
        return hsm_err_set(err, "out of memory");
    a.pValue = members;
    CK_RV rv = F(s)->C_GetAttributeValue(s->h, o, &a, 1);
    for (CK_ULONG i = 0; rv == CKR_OK && i < count; i++) {
        members[i].pValue = malloc(members[i].ulValueLen ? members[i].ulValueLen : 1);
        if (!members[i].pValue)
            rv = CKR_HOST_MEMORY;
    }
    if (rv == CKR_OK)
        rv = F(s)->C_GetAttributeValue(s->h, o, &a, 1);
    for (CK_ULONG i = 0; rv == CKR_OK && i < count; i++)
        if (hsm_tmpl_add(&inner, members[i].type, members[i].pValue, members[i].ulValueLen) != 0)
            rv = CKR_HOST_MEMORY;
    for (CK_ULONG i = 0; i < count; i++)
        free(members[i].pValue);
    free(members);
    if (rv != CKR_OK) {
        hsm_tmpl_free(&inner);
        if (acceptable(rv)) {
            *why = rv;
            return 0;
        }
        return hsm_err_rv(err, "C_GetAttributeValue", rv);
    }
    if (hsm_tmpl_add_tmpl(out, type, &inner) != 0) {
        hsm_tmpl_free(&inner);
        return hsm_err_set(err, "out of memory");
    }
    return 1;
}

int hsm_get_one(hsm_session *s, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_TYPE type, hsm_tmpl *out,
                CK_RV *why, hsm_err *err)
{
    CK_ATTRIBUTE a = {type, NULL, 0};
    *why = CKR_OK;
    if (type == CKA_VALUE || hsm_attr_is_key_material(CKO_DATA, type)) {
        CK_OBJECT_CLASS cls;
        CK_ATTRIBUTE c = {CKA_CLASS, &cls, sizeof cls};
        CK_RV rv = F(s)->C_GetAttributeValue(s->h, o, &c, 1);
        if (rv != CKR_OK)
            return hsm_err_rv(err, "C_GetAttributeValue", rv);
        if (hsm_attr_is_key_material(cls, type)) {
            *why = CKR_ATTRIBUTE_SENSITIVE;
            return 0;
        }
    }
    CK_RV rv = F(s)->C_GetAttributeValue(s->h, o, &a, 1);
    if (rv != CKR_OK || a.ulValueLen == CK_UNAVAILABLE_INFORMATION) {
        if (acceptable(rv)) {
            *why = rv == CKR_OK ? CKR_ATTRIBUTE_TYPE_INVALID : rv;
            return 0;
        }
        return hsm_err_rv(err, "C_GetAttributeValue", rv);
    }
    return fetch_one(s, o, type, a.ulValueLen, out, why, err);
}

/* Reads the values of the plain (non-array) attributes whose lengths the probe found, in one
 * call, into out. Returns 1 when all were read, 0 when the module refused the batch (out
 * unchanged; the caller reads them one by one), -1 when out of memory. */
static int get_plain_batch(hsm_session *s, CK_OBJECT_HANDLE o, const CK_ATTRIBUTE *probe,
                           size_t m, hsm_tmpl *out)
{
    CK_ATTRIBUTE *b = calloc(m ? m : 1, sizeof *b);
    if (!b)
        return -1;
    size_t nb = 0, total = 0;
    for (size_t i = 0; i < m; i++)
        if (probe[i].ulValueLen != CK_UNAVAILABLE_INFORMATION &&
            hsm_attr_type(probe[i].type) != HSM_AT_ATTRS) {
            b[nb].type = probe[i].type;
            b[nb].ulValueLen = probe[i].ulValueLen;
            total += probe[i].ulValueLen;
            nb++;
        }
    unsigned char *buf = malloc(total ? total : 1);
    if (!buf) {
        free(b);
        return -1;
    }
    for (size_t i = 0, off = 0; i < nb; off += b[i].ulValueLen, i++)
        b[i].pValue = buf + off;
    CK_RV rv = F(s)->C_GetAttributeValue(s->h, o, b, nb);
    int ok = rv == CKR_OK;
    for (size_t i = 0; ok && i < nb; i++)
        ok = b[i].ulValueLen != CK_UNAVAILABLE_INFORMATION;
    int r = ok ? 1 : 0;
    for (size_t i = 0; ok && i < nb; i++)
        if (hsm_tmpl_add(out, b[i].type, b[i].pValue, b[i].ulValueLen) != 0) {
            r = -1;
            break;
        }
    explicit_bzero(buf, total ? total : 1);
    free(buf);
    free(b);
    return r;
}

int hsm_get_all(hsm_session *s, CK_OBJECT_HANDLE o, hsm_tmpl *out, hsm_err *err)
{
    /* One call reads CKA_CLASS and asks for the length of every attribute the table knows
     * except CKA_VALUE, which is key material or not depending on the class (a call saved per
     * object: a token object read costs file I/O per call on SoftHSM2). CKA_VALUE's length is
     * asked afterwards, only for the classes where it is not key material. Nothing that is key
     * material for any class is asked, not even its length. */
    size_t n = 0, i = 0;
    const char *name;
    CK_ULONG value;
    while (hsm_name_at(HSM_NS_CKA, n, &name, &value))
        n++;
    CK_ATTRIBUTE *probe = calloc(n + 1, sizeof *probe);
    if (!probe)
        return hsm_err_set(err, "out of memory");
    CK_OBJECT_CLASS cls = (CK_OBJECT_CLASS)-1;
    probe[0] = (CK_ATTRIBUTE){CKA_CLASS, &cls, sizeof cls};
    size_t m = 1;
    for (i = 0; i < n && hsm_name_at(HSM_NS_CKA, i, &name, &value); i++)
        if (value != CKA_CLASS && value != CKA_VALUE && !hsm_attr_is_key_material(CKO_DATA, value))
            probe[m++].type = value;
    CK_RV rv = F(s)->C_GetAttributeValue(s->h, o, probe, m);
    if (!acceptable(rv)) {
        free(probe);
        return hsm_err_rv(err, "C_GetAttributeValue", rv);
    }
    if (probe[0].ulValueLen != sizeof cls) {
        /* Not read alongside (a module that stops at the first refused attribute, though the
         * class comes first): read on its own, as before. */
        CK_ATTRIBUTE c = {CKA_CLASS, &cls, sizeof cls};
        rv = F(s)->C_GetAttributeValue(s->h, o, &c, 1);
        if (rv != CKR_OK) {
            free(probe);
            return hsm_err_rv(err, "C_GetAttributeValue", rv);
        }
        probe[0].ulValueLen = sizeof cls;
    }
    probe[0].pValue = NULL;   /* read again with the batch, as every other plain value */
    if (!hsm_attr_is_key_material(cls, CKA_VALUE)) {
        probe[m] = (CK_ATTRIBUTE){CKA_VALUE, NULL, 0};
        rv = F(s)->C_GetAttributeValue(s->h, o, &probe[m], 1);
        if (!acceptable(rv)) {
            free(probe);
            return hsm_err_rv(err, "C_GetAttributeValue", rv);
        }
        m++;
    }
    /* Every plain value in one more call (a token object read costs file I/O per call on
     * some modules: SoftHSM2 reopens the object's file each time). Attribute arrays need two
     * levels, so they come one by one; so does everything when the batch is refused. */
    int r = get_plain_batch(s, o, probe, m, out);
    if (r < 0)
        hsm_err_set(err, "out of memory");
    for (i = 0; i < m && r >= 0; i++) {
        if (probe[i].ulValueLen == CK_UNAVAILABLE_INFORMATION)
            continue;
        if (r == 1 && hsm_attr_type(probe[i].type) != HSM_AT_ATTRS)
            continue;   /* read by the batch */
        if (hsm_attr_type(probe[i].type) == HSM_AT_ATTRS && probe[i].ulValueLen == 0) {
            hsm_tmpl empty;   /* an empty attribute array: nothing to read */
            hsm_tmpl_init(&empty);
            if (hsm_tmpl_add_tmpl(out, probe[i].type, &empty) != 0)
                r = hsm_err_set(err, "out of memory");
            continue;
        }
        CK_RV why;
        int one = fetch_one(s, o, probe[i].type, probe[i].ulValueLen, out, &why, err);
        if (one < 0)
            r = -1;
    }
    free(probe);
    return r < 0 ? -1 : 0;
}

int hsm_set(hsm_session *s, CK_OBJECT_HANDLE o, const hsm_tmpl *t, hsm_err *err)
{
    CK_RV rv = F(s)->C_SetAttributeValue(s->h, o, t->a, t->n);
    return rv == CKR_OK ? 0 : hsm_err_rv(err, "C_SetAttributeValue", rv);
}

int hsm_create(hsm_session *s, const hsm_tmpl *t, CK_OBJECT_HANDLE *out, hsm_err *err)
{
    CK_RV rv = F(s)->C_CreateObject(s->h, t->a, t->n, out);
    return rv == CKR_OK ? 0 : hsm_err_rv(err, "C_CreateObject", rv);
}

int hsm_copy(hsm_session *s, CK_OBJECT_HANDLE o, const hsm_tmpl *t, CK_OBJECT_HANDLE *out,
             hsm_err *err)
{
    CK_RV rv = F(s)->C_CopyObject(s->h, o, t ? t->a : NULL, t ? t->n : 0, out);
    return rv == CKR_OK ? 0 : hsm_err_rv(err, "C_CopyObject", rv);
}

int hsm_destroy(hsm_session *s, CK_OBJECT_HANDLE o, hsm_err *err)
{
    CK_RV rv = F(s)->C_DestroyObject(s->h, o);
    return rv == CKR_OK ? 0 : hsm_err_rv(err, "C_DestroyObject", rv);
}
