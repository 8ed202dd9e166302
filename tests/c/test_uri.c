/* test_uri.c - RFC 7512 PKCS#11 URIs: the RFC's examples, malformed input, PIN secrecy,
 * round trips. */
#include "check.h"
#include "pkcs11/hsm_p11.h"

#include <stdlib.h>

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))
#define PREFIX "malformed PKCS#11 URI: "

static int is_empty(const hsm_uri *u)
{
    hsm_uri zero;
    memset(&zero, 0, sizeof zero);
    return memcmp(u, &zero, sizeof zero) == 0;
}

static int str_eq(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static int bytes_eq(const unsigned char *a, size_t alen, const unsigned char *b, size_t blen)
{
    if (!a || !b)
        return !a && !b;
    return alen == blen && memcmp(a, b, alen) == 0;
}

static int uri_eq(const hsm_uri *a, const hsm_uri *b)
{
    return str_eq(a->token, b->token) && str_eq(a->manufacturer, b->manufacturer) &&
           str_eq(a->serial, b->serial) && str_eq(a->model, b->model) &&
           str_eq(a->library_manufacturer, b->library_manufacturer) &&
           str_eq(a->library_description, b->library_description) &&
           str_eq(a->library_version, b->library_version) &&
           str_eq(a->slot_description, b->slot_description) &&
           str_eq(a->slot_manufacturer, b->slot_manufacturer) &&
           str_eq(a->object, b->object) && str_eq(a->type, b->type) &&
           a->has_id == b->has_id &&
           (!a->has_id || (a->id_len == b->id_len && memcmp(a->id, b->id, a->id_len) == 0)) &&
           a->has_slot_id == b->has_slot_id && (!a->has_slot_id || a->slot_id == b->slot_id) &&
           str_eq(a->module_path, b->module_path) && str_eq(a->module_name, b->module_name) &&
           str_eq(a->pin_source, b->pin_source) &&
           bytes_eq(a->pin_value, a->pin_value_len, b->pin_value, b->pin_value_len);
}

/* Parses s, which must be valid; then checks that format -> parse gives the same URI. */
static int parse_ok(const char *s, hsm_uri *u)
{
    hsm_err e;
    hsm_err_clear(&e);
    if (hsm_uri_parse(s, u, &e) != 0) {
        fprintf(stderr, "unexpected failure: %s\n  %s\n", s, e.msg);
        return 0;
    }
    char *f = hsm_uri_format(u, 1);
    hsm_uri again;
    int ok = f && hsm_uri_parse(f, &again, &e) == 0 && uri_eq(u, &again);
    if (!ok)
        fprintf(stderr, "round trip failed: %s -> %s\n", s, f ? f : "(null)");
    if (f)
        hsm_uri_free(&again);
    free(f);
    return ok;
}

/* s must be rejected with a message holding every needle and none of the secrets. */
static void expect_fail(const char *s, const char *needle, const char *needle2,
                        const char *secret)
{
    hsm_uri u;
    hsm_err e;
    memset(&u, 'x', sizeof u);
    hsm_err_clear(&e);
    int rc = hsm_uri_parse(s, &u, &e);
    int ok = rc == -1 && is_empty(&u) && e.rv == CKR_OK &&
             strncmp(e.msg, PREFIX, strlen(PREFIX)) == 0 && strstr(e.msg, needle) &&
             (!needle2 || strstr(e.msg, needle2)) && (!secret || !strstr(e.msg, secret));
    if (!ok)
        fprintf(stderr, "expected failure with '%s' for: %s\n  got %d: %s\n", needle,
                s ? s : "(null)", rc, e.msg);
    CHECK(ok);
    if (rc == 0)
        hsm_uri_free(&u);
}

static void test_rfc_examples(void)
{
    hsm_uri u;

    CHECK(parse_ok("pkcs11:", &u));
    CHECK(is_empty(&u));
    hsm_uri_free(&u);

    CHECK(parse_ok("pkcs11:object=my-pubkey;type=public", &u));
    CHECK_STR(u.object, "my-pubkey");
    CHECK_STR(u.type, "public");
    CHECK(!u.token && !u.has_id && !u.has_slot_id && !u.pin_value && !u.module_path);
    hsm_uri_free(&u);

    CHECK(parse_ok("pkcs11:object=my-key;type=private?pin-source=file:/etc/token", &u));
    CHECK_STR(u.object, "my-key");
    CHECK_STR(u.type, "private");
    CHECK_STR(u.pin_source, "file:/etc/token");
    hsm_uri_free(&u);

    CHECK(parse_ok("pkcs11:token=The%20Software%20PKCS%2311%20Softtoken;"
                   "manufacturer=Snake%20Oil,%20Inc.;model=1.0;object=my-certificate;"
                   "type=cert;id=%69%95%3E%5C%F4%BD%EC%91;serial="
                   "?pin-source=file:/etc/token_pin", &u));
    CHECK_STR(u.token, "The Software PKCS#11 Softtoken");
    CHECK_STR(u.manufacturer, "Snake Oil, Inc.");
    CHECK_STR(u.model, "1.0");
    CHECK_STR(u.object, "my-certificate");
    CHECK_STR(u.type, "cert");
    CHECK_STR(u.serial, "");   /* present, empty */
    CHECK(u.has_id && u.id_len == 8 &&
          memcmp(u.id, "\x69\x95\x3e\x5c\xf4\xbd\xec\x91", 8) == 0);
    CHECK_STR(u.pin_source, "file:/etc/token_pin");
    char *f = hsm_uri_format(&u, 0);
    CHECK_STR(f, "pkcs11:token=The%20Software%20PKCS%2311%20Softtoken;"
                 "manufacturer=Snake%20Oil%2C%20Inc.;serial=;model=1.0;object=my-certificate;"
                 "id=%69%95%3E%5C%F4%BD%EC%91;type=cert?pin-source=file:/etc/token_pin");
    free(f);
    hsm_uri_free(&u);

    CHECK(parse_ok("pkcs11:object=my-sign-key;type=private?module-name=mypkcs11", &u));
    CHECK_STR(u.object, "my-sign-key");
    CHECK_STR(u.module_name, "mypkcs11");
    hsm_uri_free(&u);

    CHECK(parse_ok("pkcs11:object=my-sign-key;type=private?module-path=/mnt/libmypkcs11.so.1",
                   &u));
    CHECK_STR(u.module_path, "/mnt/libmypkcs11.so.1");
    CHECK(!u.module_name);
    hsm_uri_free(&u);

    CHECK(parse_ok("pkcs11:token=Software%20PKCS%2311%20softtoken;"
                   "manufacturer=Snake%20Oil,%20Inc.?pin-value=the-pin", &u));
    CHECK_STR(u.token, "Software PKCS#11 softtoken");
    CHECK_STR(u.manufacturer, "Snake Oil, Inc.");
    CHECK(u.pin_value_len == 7 && memcmp(u.pin_value, "the-pin", 7) == 0);
    CHECK(u.pin_value[u.pin_value_len] == '\0');
    CHECK(!u.pin_source);
    hsm_uri_free(&u);
    CHECK(is_empty(&u));

    CHECK(parse_ok("pkcs11:slot-description=Sun%20Metaslot", &u));
    CHECK_STR(u.slot_description, "Sun Metaslot");
    hsm_uri_free(&u);

    CHECK(parse_ok("pkcs11:library-manufacturer=Snake%20Oil,%20Inc.;"
                   "library-description=Soft%20Token%20Library;library-version=1.23", &u));
    CHECK_STR(u.library_manufacturer, "Snake Oil, Inc.");
    CHECK_STR(u.library_description, "Soft Token Library");
    CHECK_STR(u.library_version, "1.23");
    hsm_uri_free(&u);

    CHECK(parse_ok("pkcs11:token=A%20name%20with%20a%20substring%20%25%3B;"
                   "object=my-certificate;type=cert", &u));
    CHECK_STR(u.token, "A name with a substring %;");
    hsm_uri_free(&u);

    CHECK(parse_ok("pkcs11:token=Name%20with%20a%20small%20A%20with%20acute:%20%C3%A1;"
                   "object=my-certificate;type=cert", &u));
    CHECK_STR(u.token, "Name with a small A with acute: \xc3\xa1");
    hsm_uri_free(&u);

    /* RFC 7512's vendor-attribute example: hsmsh only ignores "x-" names, so that a typo can
     * never be ignored and broaden a match. */
    expect_fail("pkcs11:token=my-token;object=my-certificate;type=cert;vendor-aaa=value-a"
                "?pin-source=file:/etc/token_pin&vendor-bbb=value-b",
                "unknown attribute \"vendor-aaa\"", "x-", NULL);
}

static void test_valid(void)
{
    hsm_uri u;

    CHECK(parse_ok("PKCS11:token=a", &u));   /* the scheme is case-insensitive */
    CHECK_STR(u.token, "a");
    hsm_uri_free(&u);
    CHECK(parse_ok("Pkcs11:TOKEN=a;Object=b;TYPE=Secret-Key", &u));
    CHECK_STR(u.token, "a");
    CHECK_STR(u.object, "b");
    CHECK_STR(u.type, "secret-key");   /* canonical */
    hsm_uri_free(&u);

    CHECK(parse_ok("pkcs11:token=blue?module-path=/usr/lib/softhsm/libsofthsm2.so"
                   "&pin-value=1234", &u));
    CHECK_STR(u.token, "blue");
    CHECK_STR(u.module_path, "/usr/lib/softhsm/libsofthsm2.so");
    CHECK(u.pin_value_len == 4 && memcmp(u.pin_value, "1234", 4) == 0);
    hsm_uri_free(&u);

    CHECK(parse_ok("pkcs11:?", &u));
    CHECK(is_empty(&u));
    hsm_uri_free(&u);

    CHECK(parse_ok("pkcs11:slot-id=0", &u));
    CHECK(u.has_slot_id && u.slot_id == 0);
    hsm_uri_free(&u);
    CHECK(parse_ok("pkcs11:slot-id=4294967295;token=t", &u));
    CHECK(u.has_slot_id && u.slot_id == 4294967295UL);
    hsm_uri_free(&u);
    CHECK(parse_ok("pkcs11:slot-id=%31%32", &u));
    CHECK(u.has_slot_id && u.slot_id == 12);
    hsm_uri_free(&u);

    static const char *const types[] = { "public", "private", "secret-key", "cert", "data" };
    for (size_t i = 0; i < COUNT(types); i++) {
        char s[64];
        snprintf(s, sizeof s, "pkcs11:type=%s", types[i]);
        CHECK(parse_ok(s, &u));
        CHECK_STR(u.type, types[i]);
        hsm_uri_free(&u);
    }

    CHECK(parse_ok("pkcs11:id=", &u));
    CHECK(u.has_id && u.id_len == 0 && u.id != NULL);
    hsm_uri_free(&u);
    CHECK(parse_ok("pkcs11:id=%00%01%ff%FFab", &u));
    CHECK(u.has_id && u.id_len == 6 && memcmp(u.id, "\x00\x01\xff\xff" "ab", 6) == 0);
    hsm_uri_free(&u);

    CHECK(parse_ok("pkcs11:library-version=7", &u));
    CHECK_STR(u.library_version, "7");
    hsm_uri_free(&u);

    /* escapes in both cases; lower-case hex */
    CHECK(parse_ok("pkcs11:object=%c3%A1%2f", &u));
    CHECK_STR(u.object, "\xc3\xa1/");
    hsm_uri_free(&u);

    /* lenient about characters the RFC wants escaped but that are not ambiguous */
    CHECK(parse_ok("pkcs11:token=My Token/2#1", &u));
    CHECK_STR(u.token, "My Token/2#1");
    hsm_uri_free(&u);

    /* '=' inside a value */
    CHECK(parse_ok("pkcs11:object=a=b?pin-source=file:/x=y", &u));
    CHECK_STR(u.object, "a=b");
    CHECK_STR(u.pin_source, "file:/x=y");
    hsm_uri_free(&u);

    /* vendor attributes "x-..." are ignored, in path and query, even repeated */
    CHECK(parse_ok("pkcs11:x-foo=bar;token=a;X-Foo=baz?x-q=1&module-name=m&x-q=2", &u));
    CHECK_STR(u.token, "a");
    CHECK_STR(u.module_name, "m");
    hsm_uri_free(&u);

    /* a PIN is bytes: escapes for '&', '?', NUL */
    CHECK(parse_ok("pkcs11:?pin-value=a%26b%3Fc%00d", &u));
    CHECK(u.pin_value_len == 7 && memcmp(u.pin_value, "a&b?c\0d", 7) == 0);
    hsm_uri_free(&u);
    CHECK(parse_ok("pkcs11:?pin-value=", &u));
    CHECK(u.pin_value && u.pin_value_len == 0);
    hsm_uri_free(&u);

    /* NULL err is allowed */
    CHECK(hsm_uri_parse("pkcs11:token=a", &u, NULL) == 0);
    hsm_uri_free(&u);
    CHECK(hsm_uri_parse("pkcs11:tokn=a", &u, NULL) == -1);
    CHECK(is_empty(&u));
    hsm_uri_free(&u);    /* free of an empty URI is harmless, and so is a second one */
    hsm_uri_free(&u);
    hsm_uri_free(NULL);
}

static void test_malformed(void)
{
    /* scheme */
    expect_fail("pkcs12:token=a", "\"pkcs11:\" scheme missing", NULL, NULL);
    expect_fail("token=a", "\"pkcs11:\" scheme missing", NULL, NULL);
    expect_fail("", "\"pkcs11:\" scheme missing", NULL, NULL);
    expect_fail("pkcs11", "\"pkcs11:\" scheme missing", NULL, NULL);
    expect_fail(" pkcs11:token=a", "\"pkcs11:\" scheme missing", NULL, NULL);
    expect_fail("pkcs11;token=a", "\"pkcs11:\" scheme missing", NULL, NULL);
    expect_fail(NULL, "no URI given", NULL, NULL);

    /* unknown, misplaced, duplicate, empty attributes */
    expect_fail("pkcs11:tokn=a", "unknown attribute \"tokn\"",
                "(expected token, manufacturer, serial", NULL);
    expect_fail("pkcs11:token=a;objet=b", "unknown attribute \"objet\"", NULL, NULL);
    expect_fail("pkcs11:token=a?module=x", "unknown query attribute \"module\"",
                "(expected module-path, module-name, pin-source, pin-value", NULL);
    expect_fail("pkcs11:module-path=/x.so", "attribute \"module-path\" belongs in the query",
                NULL, NULL);
    expect_fail("pkcs11:?token=a", "attribute \"token\" belongs in the path", NULL, NULL);
    expect_fail("pkcs11:token=a;token=b", "duplicate attribute \"token\"", NULL, NULL);
    expect_fail("pkcs11:token=a;TOKEN=b", "duplicate attribute \"token\"", NULL, NULL);
    expect_fail("pkcs11:id=01;id=02", "duplicate attribute \"id\"", NULL, NULL);
    expect_fail("pkcs11:slot-id=1;slot-id=1", "duplicate attribute \"slot-id\"", NULL, NULL);
    expect_fail("pkcs11:?module-name=a&module-name=b", "duplicate attribute \"module-name\"",
                NULL, NULL);
    expect_fail("pkcs11:=abc", "empty attribute name", NULL, NULL);
    expect_fail("pkcs11:?=abc", "empty attribute name", "query", NULL);
    expect_fail("pkcs11:token=a;", "empty attribute in the path", "\";\"", NULL);
    expect_fail("pkcs11:;token=a", "empty attribute in the path", NULL, NULL);
    expect_fail("pkcs11:token=a;;object=b", "empty attribute in the path", NULL, NULL);
    expect_fail("pkcs11:token=a?module-name=m&", "empty attribute in the query", "\"&\"", NULL);
    expect_fail("pkcs11:token", "attribute \"token\" has no value", NULL, NULL);
    expect_fail("pkcs11:token=a;object", "attribute \"object\" has no value", NULL, NULL);
    expect_fail("pkcs11:?module-name", "attribute \"module-name\" has no value", NULL, NULL);
    expect_fail("pkcs11:?1234", "query attribute without \"=\"", NULL, "1234");

    /* percent-escapes */
    expect_fail("pkcs11:token=%G1", "bad percent-escape \"%G1\" in attribute \"token\"", NULL,
                NULL);
    expect_fail("pkcs11:token=abc%4", "bad percent-escape \"%4\" in attribute \"token\"", NULL,
                NULL);
    expect_fail("pkcs11:object=abc%", "bad percent-escape \"%\" in attribute \"object\"", NULL,
                NULL);
    expect_fail("pkcs11:id=%0", "bad percent-escape \"%0\" in attribute \"id\"", NULL, NULL);
    expect_fail("pkcs11:id=%%41", "bad percent-escape \"%%4\" in attribute \"id\"", NULL, NULL);
    expect_fail("pkcs11:token=a;model=%zz", "bad percent-escape \"%zz\" in attribute \"model\"",
                NULL, NULL);
    expect_fail("pkcs11:?module-path=/a%2", "bad percent-escape \"%2\" in attribute "
                "\"module-path\"", NULL, NULL);
    expect_fail("pkcs11:x-vendor=%q1", "bad percent-escape \"%q1\" in attribute \"x-vendor\"",
                NULL, NULL);
    expect_fail("pkcs11:token=a%00b", "NUL byte (%00) in attribute \"token\"", NULL, NULL);
    expect_fail("pkcs11:token=a\nb", "control character in attribute \"token\"", NULL, NULL);

    /* values */
    expect_fail("pkcs11:slot-id=abc", "bad slot-id \"abc\"", "decimal", NULL);
    expect_fail("pkcs11:slot-id=", "bad slot-id \"\"", NULL, NULL);
    expect_fail("pkcs11:slot-id=-1", "bad slot-id \"-1\"", NULL, NULL);
    expect_fail("pkcs11:slot-id=0x10", "bad slot-id \"0x10\"", NULL, NULL);
    expect_fail("pkcs11:slot-id=1%20", "bad slot-id \"1 \"", NULL, NULL);
    expect_fail("pkcs11:slot-id=99999999999999999999999", "bad slot-id \"9999", NULL, NULL);
    expect_fail("pkcs11:type=pubkey", "bad type \"pubkey\"",
                "(expected public, private, secret-key, cert or data)", NULL);
    expect_fail("pkcs11:type=", "bad type \"\"", NULL, NULL);
    expect_fail("pkcs11:type=certificate", "bad type \"certificate\"", NULL, NULL);
    expect_fail("pkcs11:library-version=1.2.3", "bad library-version \"1.2.3\"", NULL, NULL);
    expect_fail("pkcs11:library-version=v1", "bad library-version \"v1\"", NULL, NULL);
    expect_fail("pkcs11:library-version=1.", "bad library-version \"1.\"", NULL, NULL);

    /* a bad value is shown printable and short */
    expect_fail("pkcs11:type=%1B%5B31m", "bad type \"?[31m\"", NULL, "\x1b");
    expect_fail("pkcs11:type=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                "bad type \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...\"", NULL, NULL);

    /* typos that would hide a PIN in another attribute are errors */
    expect_fail("pkcs11:token=blue&pin-value=1234", "\"&\" in attribute \"token\"", "%26",
                "1234");
    expect_fail("pkcs11:token=blue?module-path=/x.so?pin-value=1234",
                "second \"?\" in attribute \"module-path\"", NULL, "1234");

    /* pin-value with pin-source */
    expect_fail("pkcs11:token=a?pin-value=s3cr3t&pin-source=file:/x",
                "pin-value and pin-source are both given", NULL, "s3cr3t");
    expect_fail("pkcs11:token=a?pin-source=file:/x&pin-value=s3cr3t",
                "pin-value and pin-source are both given", NULL, "s3cr3t");
}

/* No message ever contains the PIN, or a part of it. */
static void test_pin_secrecy(void)
{
    expect_fail("pkcs11:?pin-value=se%ZZcret", "bad percent-escape in attribute \"pin-value\"",
                NULL, "%ZZ");
    expect_fail("pkcs11:?pin-value=se%ZZcret", "bad percent-escape", NULL, "cret");
    expect_fail("pkcs11:?pin-value=s3cr3t%4", "bad percent-escape in attribute \"pin-value\"",
                NULL, "s3cr3t");
    expect_fail("pkcs11:?pin-value=s3cr3t%", "bad percent-escape in attribute \"pin-value\"",
                NULL, "%\"");
    expect_fail("pkcs11:?pin-value=s3\tcr3t", "control character in attribute \"pin-value\"",
                NULL, "cr3t");
    expect_fail("pkcs11:?pin-value=s3cr3t?x", "second \"?\" in attribute \"pin-value\"", NULL,
                "s3cr3t");
    expect_fail("pkcs11:?pin-value=s3cr3t&pin-value=s3cr3t", "duplicate attribute \"pin-value\"",
                NULL, "s3cr3t");
    expect_fail("pkcs11:token=x;pin-value=s3cr3t", "attribute \"pin-value\" belongs in the query",
                NULL, "s3cr3t");
    /* a raw '&' inside a PIN splits it: the tail is never echoed */
    expect_fail("pkcs11:?pin-value=ab&cdef", "query attribute without \"=\"", NULL, "cdef");
    expect_fail("pkcs11:?pin-value=ab&cdef=gh", "unknown query attribute after pin-value", NULL,
                "cdef");
    expect_fail("pkcs11:?pin-value=ab&cdef=gh", "%26", NULL, "gh");
    expect_fail("pkcs11:?pin-value=ab&=gh", "empty attribute name", NULL, "gh");
    expect_fail("pkcs11:?pin-value=ab&&", "empty attribute in the query", NULL, "ab");
}

static void test_format(void)
{
    hsm_uri u, v;
    hsm_err e;
    char *f;

    memset(&u, 0, sizeof u);
    f = hsm_uri_format(&u, 1);
    CHECK_STR(f, "pkcs11:");
    free(f);
    CHECK(hsm_uri_format(NULL, 0) == NULL);

    u.token = "blue";
    u.object = "k1";
    u.type = "secret-key";
    u.module_path = "/usr/lib/softhsm/libsofthsm2.so";
    u.pin_value = (unsigned char *)"1234";
    u.pin_value_len = 4;
    f = hsm_uri_format(&u, 1);
    CHECK_STR(f, "pkcs11:token=blue;object=k1;type=secret-key"
                 "?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-value=1234");
    free(f);
    f = hsm_uri_format(&u, 0);
    CHECK_STR(f, "pkcs11:token=blue;object=k1;type=secret-key"
                 "?module-path=/usr/lib/softhsm/libsofthsm2.so");
    free(f);

    /* conservative escaping: only ALPHA DIGIT - . _ ~ stay (and / : in the query) */
    memset(&u, 0, sizeof u);
    u.token = "a b;c&d?e=f%g/h:i~j.k_l-m";
    u.module_name = "n&o?p q:r/s";
    u.has_id = 1;
    u.id = (unsigned char *)"AZaz09";
    u.id_len = 6;
    f = hsm_uri_format(&u, 0);
    CHECK_STR(f, "pkcs11:token=a%20b%3Bc%26d%3Fe%3Df%25g%2Fh%3Ai~j.k_l-m;id=%41%5A%61%7A%30%39"
                 "?module-name=n%26o%3Fp%20q:r/s");
    free(f);

    /* every field, with awkward bytes: format -> parse gives the same URI */
    static unsigned char id[] = { 0x00, 0x01, 0xff, '%', ';', 'a' };
    static unsigned char pin[] = { 'p', '&', '?', ';', '=', '%', ' ', 0x00, 0xc3, 0xa1 };
    memset(&u, 0, sizeof u);
    u.token = "tok;en&?=%/ \xc3\xa1";
    u.manufacturer = "Snake Oil, Inc.";
    u.serial = "";
    u.model = "m#1";
    u.library_manufacturer = "lm";
    u.library_description = "ld ld";
    u.library_version = "2.40";
    u.slot_description = "sd";
    u.slot_manufacturer = "sm";
    u.has_slot_id = 1;
    u.slot_id = 42;
    u.object = "obj/1";
    u.has_id = 1;
    u.id = id;
    u.id_len = sizeof id;
    u.type = "data";
    u.module_path = "/usr/lib/x y.so";
    u.module_name = "softhsm2";
    u.pin_value = pin;
    u.pin_value_len = sizeof pin;
    f = hsm_uri_format(&u, 1);
    CHECK(f != NULL);
    CHECK(f && hsm_uri_parse(f, &v, &e) == 0);
    CHECK(uri_eq(&u, &v));
    hsm_uri_free(&v);
    free(f);

    /* without the PIN, everything else still round-trips */
    f = hsm_uri_format(&u, 0);
    CHECK(f && !strstr(f, "pin-value"));
    CHECK(f && hsm_uri_parse(f, &v, &e) == 0);
    CHECK(v.pin_value == NULL && v.pin_value_len == 0);
    u.pin_value = NULL;
    u.pin_value_len = 0;
    CHECK(uri_eq(&u, &v));
    hsm_uri_free(&v);
    free(f);

    /* pin-source instead */
    u.pin_source = "file:/etc/pin";
    f = hsm_uri_format(&u, 1);
    CHECK(f && strstr(f, "pin-source=file:/etc/pin"));
    CHECK(f && hsm_uri_parse(f, &v, &e) == 0);
    CHECK(uri_eq(&u, &v));
    hsm_uri_free(&v);
    free(f);

    /* an empty id and slot 0 are written */
    memset(&u, 0, sizeof u);
    u.has_id = 1;
    u.has_slot_id = 1;
    f = hsm_uri_format(&u, 0);
    CHECK_STR(f, "pkcs11:slot-id=0;id=");
    free(f);
}

/* The canonical form is a fixed point: format(parse(format(parse(s)))) == format(parse(s)). */
static void test_canonical(void)
{
    static const char *const uris[] = {
        "pkcs11:",
        "pkcs11:serial=;token=T;type=CERT;x-a=b",
        "pkcs11:object=%c3%a1;id=%01?module-name=m&pin-value=%26",
        "pkcs11:slot-id=007;library-version=01.2",
        "pkcs11:token=A%20name%20with%20a%20substring%20%25%3B;object=my-certificate;type=cert",
    };
    for (size_t i = 0; i < COUNT(uris); i++) {
        hsm_uri a, b;
        hsm_err e;
        CHECK(hsm_uri_parse(uris[i], &a, &e) == 0);
        char *f1 = hsm_uri_format(&a, 1);
        CHECK(f1 && hsm_uri_parse(f1, &b, &e) == 0);
        char *f2 = hsm_uri_format(&b, 1);
        CHECK_STR(f1, f2);
        CHECK(uri_eq(&a, &b));
        hsm_uri_free(&a);
        hsm_uri_free(&b);
        free(f1);
        free(f2);
    }
}

int main(void)
{
    test_rfc_examples();
    test_valid();
    test_malformed();
    test_pin_secrecy();
    test_format();
    test_canonical();
    return CHECK_DONE();
}
