/* template.c - attribute templates that own their values (nested ones included). */
#include <stdlib.h>
#include <string.h>

#include "hsm_p11.h"

void hsm_tmpl_init(hsm_tmpl *t) { memset(t, 0, sizeof *t); }

static void free_values(CK_ATTRIBUTE *a, CK_ULONG n)
{
    for (CK_ULONG i = 0; i < n; i++) {
        if (!a[i].pValue)
            continue;
        if (hsm_attr_type(a[i].type) == HSM_AT_ATTRS)
            free_values(a[i].pValue, a[i].ulValueLen / sizeof(CK_ATTRIBUTE));
        explicit_bzero(a[i].pValue, a[i].ulValueLen);
        free(a[i].pValue);
    }
}

void hsm_tmpl_free(hsm_tmpl *t)
{
    free_values(t->a, t->n);
    free(t->a);
    hsm_tmpl_init(t);
}

static CK_ATTRIBUTE *slot_for(hsm_tmpl *t, CK_ATTRIBUTE_TYPE type)
{
    if (t->n == t->cap) {
        CK_ULONG cap = t->cap ? t->cap * 2 : 16;
        CK_ATTRIBUTE *a = realloc(t->a, cap * sizeof *a);
        if (!a)
            return NULL;
        t->a = a;
        t->cap = cap;
    }
    CK_ATTRIBUTE *at = &t->a[t->n++];
    at->type = type;
    at->pValue = NULL;
    at->ulValueLen = 0;
    return at;
}

int hsm_tmpl_add(hsm_tmpl *t, CK_ATTRIBUTE_TYPE type, const void *value, CK_ULONG len)
{
    void *copy = malloc(len ? len : 1);
    if (!copy)
        return -1;
    if (len)
        memcpy(copy, value, len);
    CK_ATTRIBUTE *at = slot_for(t, type);
    if (!at) {
        free(copy);
        return -1;
    }
    at->pValue = copy;
    at->ulValueLen = len;
    return 0;
}

int hsm_tmpl_add_bool(hsm_tmpl *t, CK_ATTRIBUTE_TYPE type, int v)
{
    CK_BBOOL b = v ? CK_TRUE : CK_FALSE;
    return hsm_tmpl_add(t, type, &b, sizeof b);
}

int hsm_tmpl_add_ulong(hsm_tmpl *t, CK_ATTRIBUTE_TYPE type, CK_ULONG v)
{
    return hsm_tmpl_add(t, type, &v, sizeof v);
}

int hsm_tmpl_add_tmpl(hsm_tmpl *t, CK_ATTRIBUTE_TYPE type, hsm_tmpl *inner)
{
    CK_ATTRIBUTE *at = slot_for(t, type);
    if (!at)
        return -1;
    if (inner->n == 0) {          /* an empty array still needs a buffer we own */
        at->pValue = malloc(1);
        if (!at->pValue) {
            t->n--;
            return -1;
        }
        free(inner->a);
    } else
        at->pValue = inner->a;
    at->ulValueLen = inner->n * sizeof(CK_ATTRIBUTE);
    hsm_tmpl_init(inner);
    return 0;
}

const CK_ATTRIBUTE *hsm_tmpl_get(const hsm_tmpl *t, CK_ATTRIBUTE_TYPE type)
{
    for (CK_ULONG i = 0; i < t->n; i++)
        if (t->a[i].type == type)
            return &t->a[i];
    return NULL;
}
