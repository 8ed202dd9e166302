/* test_template.c - templates own (and zeroize) their values, nested arrays included;
 * the backend against a real SoftHSM2 module: module sharing, sessions, find, attributes,
 * key material never read. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "pkcs11/hsm_p11.h"
#include "softhsm2/hsm_softhsm2.h"

static void templates(void)
{
    hsm_tmpl t, inner;
    hsm_tmpl_init(&t);
    hsm_tmpl_init(&inner);
    CHECK(hsm_tmpl_add_bool(&t, CKA_TOKEN, 1) == 0);
    CHECK(hsm_tmpl_add_ulong(&t, CKA_VALUE_LEN, 32) == 0);
    CHECK(hsm_tmpl_add(&t, CKA_LABEL, "abc", 3) == 0);
    for (int i = 0; i < 40; i++)   /* grows past the first allocation */
        CHECK(hsm_tmpl_add_bool(&inner, CKA_ENCRYPT, i & 1) == 0);
    CHECK(hsm_tmpl_add_tmpl(&t, CKA_UNWRAP_TEMPLATE, &inner) == 0);
    CHECK(inner.n == 0 && inner.a == NULL);
    CHECK(t.n == 4);
    const CK_ATTRIBUTE *a = hsm_tmpl_get(&t, CKA_LABEL);
    CHECK(a && a->ulValueLen == 3 && memcmp(a->pValue, "abc", 3) == 0);
    a = hsm_tmpl_get(&t, CKA_UNWRAP_TEMPLATE);
    CHECK(a && a->ulValueLen == 40 * sizeof(CK_ATTRIBUTE));
    CHECK(*(CK_ULONG *)hsm_tmpl_get(&t, CKA_VALUE_LEN)->pValue == 32);
    CHECK(hsm_tmpl_get(&t, CKA_ID) == NULL);
    hsm_tmpl_free(&t);
    CHECK(t.n == 0 && t.a == NULL);
    hsm_tmpl_free(&t);   /* idempotent */
}

/* A fresh token directory for this test; SoftHSM2 reads SOFTHSM2_CONF at C_Initialize. */
static void real_module(void)
{
    char dir[] = "/tmp/hsmsh-ctest-XXXXXX", conf[256], tokens[256];
    if (!mkdtemp(dir) || !hsm_softhsm2_library()) {
        CHECK(!"SoftHSM2 and a temp dir are needed");
        return;
    }
    snprintf(tokens, sizeof tokens, "%s/tokens", dir);
    snprintf(conf, sizeof conf, "%s/softhsm2.conf", dir);
    CHECK(mkdir(tokens, 0700) == 0);
    FILE *f = fopen(conf, "w");
    fprintf(f, "directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n", tokens);
    fclose(f);
    setenv("SOFTHSM2_CONF", conf, 1);

    hsm_err err;
    hsm_module *m = hsm_module_load(NULL, &err);
    CHECK(m != NULL);
    if (!m)
        return;
    hsm_module *again = hsm_module_load(hsm_module_path(m), &err);
    CHECK(again == m);   /* one instance per library */
    hsm_module_unref(again);

    CK_SLOT_ID *slots;
    CK_ULONG n;
    CHECK(hsm_slots(m, 0, &slots, &n, &err) == 0 && n >= 1);
    CHECK(hsm_init_token(m, slots[0], (const unsigned char *)"12345678", 8, "ctest", &err) == 0);
    free(slots);
    CHECK(hsm_slots(m, 1, &slots, &n, &err) == 0 && n >= 1);
    CK_SLOT_ID slot = slots[0];
    free(slots);

    hsm_session s;
    int final_try;
    CHECK(hsm_session_open(m, slot, 1, &s, &err) == 0);
    CHECK(hsm_login(&s, CKU_SO, (const unsigned char *)"12345678", 8, &final_try, &err) == 0);
    CHECK(hsm_init_pin(&s, (const unsigned char *)"1234", 4, &err) == 0);
    CHECK(hsm_logout(&s, &err) == 0);
    CHECK(hsm_login(&s, CKU_USER, (const unsigned char *)"0000", 4, &final_try, &err) == -1);
    CHECK(err.rv == CKR_PIN_INCORRECT);
    CHECK_STR(err.msg, "C_Login: CKR_PIN_INCORRECT");
    CHECK(hsm_login(&s, CKU_USER, (const unsigned char *)"1234", 4, &final_try, &err) == 0);

    hsm_tmpl t;
    hsm_tmpl_init(&t);
    hsm_tmpl_add_ulong(&t, CKA_VALUE_LEN, 32);
    hsm_tmpl_add_bool(&t, CKA_TOKEN, 1);
    hsm_tmpl_add_bool(&t, CKA_SENSITIVE, 0);
    hsm_tmpl_add_bool(&t, CKA_EXTRACTABLE, 1);
    hsm_tmpl_add(&t, CKA_LABEL, "k", 1);
    CK_MECHANISM gen = {CKM_AES_KEY_GEN, NULL, 0};
    CK_OBJECT_HANDLE key;
    CHECK(hsm_generate_key(&s, &gen, &t, &key, &err) == 0);
    hsm_tmpl_free(&t);

    hsm_tmpl all;
    hsm_tmpl_init(&all);
    CHECK(hsm_get_all(&s, key, &all, &err) == 0);
    CHECK(hsm_tmpl_get(&all, CKA_LABEL) != NULL);
    CHECK(hsm_tmpl_get(&all, CKA_VALUE) == NULL);   /* key material is never read */
    hsm_tmpl_free(&all);
    CK_RV why;
    hsm_tmpl one;
    hsm_tmpl_init(&one);
    CHECK(hsm_get_one(&s, key, CKA_VALUE, &one, &why, &err) == 0 && why == CKR_ATTRIBUTE_SENSITIVE);
    CHECK(hsm_get_one(&s, key, CKA_MODULUS, &one, &why, &err) == 0 && why == CKR_ATTRIBUTE_TYPE_INVALID);
    CHECK(hsm_get_one(&s, key, CKA_VALUE_LEN, &one, &why, &err) == 1 && one.n == 1);
    hsm_tmpl_free(&one);

    CK_OBJECT_HANDLE *found;
    CHECK(hsm_find(&s, NULL, &found, &n, &err) == 0 && n == 1 && found[0] == key);
    free(found);
    CHECK(hsm_destroy(&s, key, &err) == 0);
    CHECK(hsm_find(&s, NULL, &found, &n, &err) == 0 && n == 0);
    free(found);

    CHECK(hsm_session_close(&s, &err) == 0);
    CHECK(hsm_session_close(&s, &err) == 0);   /* idempotent */
    hsm_module_unref(m);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
}

int main(void)
{
    templates();
    real_module();
    return CHECK_DONE();
}
