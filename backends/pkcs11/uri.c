/* uri.c - RFC 7512 PKCS#11 URIs: parse and format.
 *
 * pkcs11:token=blue;object=k1;type=secret-key?module-path=/usr/lib/softhsm/libsofthsm2.so
 *
 * Path attributes are separated by ';', query attributes by '&'. Values are percent-decoded.
 * Attribute names are matched without regard to case (ABNF literals are case-insensitive).
 * Rejected, with a message naming the bad part: a missing "pkcs11:" scheme, an empty or
 * unknown attribute name (names starting with "x-" are vendor attributes and are ignored,
 * except our x-init-reserved: the string C_Initialize passes as pReserved, percent-encoded),
 * an attribute in the wrong part, a duplicate, a malformed %-escape, a bad slot-id, type or
 * library-version, a NUL byte in a text attribute, a raw control character, and pin-value
 * together with pin-source. Stricter than the RFC on purpose, so that a typo can neither
 * silently change what a URI selects nor push a PIN into another attribute's value: a raw
 * '&' in a path value (a '?' was probably forgotten) and a raw '?' in a query value are
 * errors; write %26 and %3F.
 *
 * Messages never contain the pin-value, nor text that may be part of it.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* explicit_bzero */
#endif
#include "hsm_p11.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define URI_ERR "malformed PKCS#11 URI: "

enum attr_kind { K_STR, K_LIBVER, K_SLOT, K_ID, K_TYPE, K_PIN };

typedef struct attr_def {
    const char *name;
    int query;          /* 1: query attribute, 0: path attribute */
    enum attr_kind kind;
    size_t off;         /* offsetof the char * member, for K_STR K_LIBVER K_TYPE */
} attr_def;

/* Also the order in which hsm_uri_format writes them. */
static const attr_def attrs[] = {
    { "token",               0, K_STR,    offsetof(hsm_uri, token) },
    { "manufacturer",        0, K_STR,    offsetof(hsm_uri, manufacturer) },
    { "serial",              0, K_STR,    offsetof(hsm_uri, serial) },
    { "model",               0, K_STR,    offsetof(hsm_uri, model) },
    { "library-manufacturer", 0, K_STR,   offsetof(hsm_uri, library_manufacturer) },
    { "library-description", 0, K_STR,    offsetof(hsm_uri, library_description) },
    { "library-version",     0, K_LIBVER, offsetof(hsm_uri, library_version) },
    { "slot-description",    0, K_STR,    offsetof(hsm_uri, slot_description) },
    { "slot-manufacturer",   0, K_STR,    offsetof(hsm_uri, slot_manufacturer) },
    { "slot-id",             0, K_SLOT,   0 },
    { "object",              0, K_STR,    offsetof(hsm_uri, object) },
    { "id",                  0, K_ID,     0 },
    { "type",                0, K_TYPE,   offsetof(hsm_uri, type) },
    { "module-path",         1, K_STR,    offsetof(hsm_uri, module_path) },
    { "module-name",         1, K_STR,    offsetof(hsm_uri, module_name) },
    { "pin-source",          1, K_STR,    offsetof(hsm_uri, pin_source) },
    /* Ours: C_Initialize's pReserved for a bare module-path (p11-kit's x-init-reserved). */
    { "x-init-reserved",     1, K_STR,    offsetof(hsm_uri, init_reserved) },
    { "pin-value",           1, K_PIN,    0 },
};
#define NATTRS (sizeof attrs / sizeof attrs[0])

#define PATH_EXPECTED "token, manufacturer, serial, model, library-manufacturer, " \
    "library-description, library-version, slot-description, slot-manufacturer, slot-id, " \
    "object, id, type, or x-<vendor>"
#define QUERY_EXPECTED "module-path, module-name, pin-source, pin-value, x-init-reserved, " \
    "or x-<vendor>"

static const char *const types[] = { "public", "private", "secret-key", "cert", "data" };

typedef struct parse_state {
    hsm_uri *u;
    hsm_err *err;
    unsigned long seen;   /* bit i: attrs[i] given */
    int after_pin;        /* the previous query attribute was pin-value */
} parse_state;

static int fold(int c)
{
    return (c >= 'A' && c <= 'Z') ? c - 'A' + 'a' : c;
}

static int eq_fold_n(const char *a, size_t n, const char *lit)
{
    size_t i;
    for (i = 0; i < n; i++)
        if (!lit[i] || fold((unsigned char)a[i]) != lit[i])
            return 0;
    return lit[i] == '\0';
}

/* A printable excerpt of s[0..n) for a message: at most 48 bytes, bytes outside printable
 * ASCII and '"' shown as '?'. */
static const char *show(char *buf, size_t bufsz, const char *s, size_t n)
{
    size_t i, o = 0, max = 48;
    for (i = 0; i < n && i < max && o + 4 < bufsz; i++) {
        unsigned char c = (unsigned char)s[i];
        buf[o++] = (c < 0x20 || c >= 0x7f || c == '"') ? '?' : (char)c;
    }
    if (i < n && o + 4 < bufsz) {
        memcpy(buf + o, "...", 3);
        o += 3;
    }
    buf[o] = '\0';
    return buf;
}

static int fail(parse_state *st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(parse_state *st, const char *fmt, ...)
{
    char msg[448];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return hsm_err_set(st->err, URI_ERR "%s", msg);
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = fold(c);
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

static void zfree(void *p, size_t n)
{
    if (p) {
        explicit_bzero(p, n);
        free(p);
    }
}

/* Decodes the raw value v[0..n) of attribute def into a new NUL-terminated buffer (*outlen
 * excludes the NUL). Returns NULL, with the error set, on a bad value. */
static unsigned char *decode(parse_state *st, const attr_def *def, const char *v, size_t n,
                             size_t *outlen)
{
    int secret = def->kind == K_PIN;
    char ex[64];
    unsigned char *out = malloc(n + 1);
    size_t o = 0;
    if (!out) {
        fail(st, "out of memory");
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)v[i];
        if (c < 0x20 || c == 0x7f) {
            fail(st, "control character in attribute \"%s\" (percent-encode it)", def->name);
            goto bad;
        }
        if (c == '&' && !def->query) {
            fail(st, "\"&\" in attribute \"%s\": query attributes go after \"?\" "
                 "(write %%26 for a literal \"&\")", def->name);
            goto bad;
        }
        if (c == '?' && def->query) {
            fail(st, "second \"?\" in attribute \"%s\" (write %%3F for a literal \"?\")",
                 def->name);
            goto bad;
        }
        if (c == '%') {
            int hi = i + 1 < n ? hexval((unsigned char)v[i + 1]) : -1;
            int lo = i + 2 < n ? hexval((unsigned char)v[i + 2]) : -1;
            if (hi < 0 || lo < 0) {
                if (secret)
                    fail(st, "bad percent-escape in attribute \"%s\"", def->name);
                else
                    fail(st, "bad percent-escape \"%s\" in attribute \"%s\"",
                         show(ex, sizeof ex, v + i, n - i < 3 ? n - i : 3), def->name);
                goto bad;
            }
            c = (unsigned char)(hi << 4 | lo);
            i += 2;
        }
        out[o++] = c;
    }
    out[o] = '\0';
    if (def->kind != K_ID && def->kind != K_PIN && memchr(out, '\0', o)) {
        fail(st, "NUL byte (%%00) in attribute \"%s\"", def->name);
        goto bad;
    }
    *outlen = o;
    return out;
bad:
    zfree(out, n + 1);
    return NULL;
}

/* 1*DIGIT [ "." 1*DIGIT ] */
static int valid_version(const char *s)
{
    size_t d = strspn(s, "0123456789");
    if (d == 0)
        return 0;
    s += d;
    if (*s == '\0')
        return 1;
    if (*s != '.')
        return 0;
    s++;
    d = strspn(s, "0123456789");
    return d > 0 && s[d] == '\0';
}

static int parse_slot_id(const char *s, CK_SLOT_ID *out)
{
    CK_SLOT_ID v = 0;
    if (!*s)
        return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return -1;
        if (v > ((CK_SLOT_ID)-1 - (CK_SLOT_ID)(*s - '0')) / 10)
            return -1;
        v = v * 10 + (CK_SLOT_ID)(*s - '0');
    }
    *out = v;
    return 0;
}

/* Checks the %-escapes of a vendor attribute we otherwise ignore. */
static int check_vendor(parse_state *st, const char *name, size_t nlen, const char *v, size_t n)
{
    char nm[64], ex[64];
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)v[i] < 0x20 || v[i] == 0x7f)
            return fail(st, "control character in attribute \"%s\" (percent-encode it)",
                        show(nm, sizeof nm, name, nlen));
        if (v[i] == '%' && (i + 2 >= n || hexval((unsigned char)v[i + 1]) < 0 ||
                            hexval((unsigned char)v[i + 2]) < 0))
            return fail(st, "bad percent-escape \"%s\" in attribute \"%s\"",
                        show(ex, sizeof ex, v + i, n - i < 3 ? n - i : 3),
                        show(nm, sizeof nm, name, nlen));
    }
    return 0;
}

static int parse_attr(parse_state *st, const char *a, size_t alen, int query)
{
    hsm_uri *u = st->u;
    const char *part = query ? "query" : "path";
    const char *eq = memchr(a, '=', alen);
    const attr_def *def = NULL;
    char nm[64], shown[64];
    int after_pin = st->after_pin;
    size_t nlen, i;

    st->after_pin = 0;
    if (alen == 0)
        return fail(st, "empty attribute in the %s (stray \"%c\")", part, query ? '&' : ';');
    nlen = eq ? (size_t)(eq - a) : alen;
    for (i = 0; i < NATTRS; i++)
        if (eq_fold_n(a, nlen, attrs[i].name)) {
            def = &attrs[i];
            break;
        }
    if (!eq) {
        /* In the query the text may be the tail of a PIN with a raw '&': never echo it. */
        if (query && (after_pin || !def))
            return fail(st, "query attribute without \"=\" (expected name=value; "
                        "write %%26 for a \"&\" inside a value)");
        return fail(st, "attribute \"%s\" has no value (expected %s=...)",
                    show(nm, sizeof nm, a, nlen), def ? def->name : "name");
    }
    if (nlen == 0)
        return fail(st, "empty attribute name before \"=\" in the %s", part);

    const char *v = eq + 1;
    size_t vlen = alen - nlen - 1;
    if (!def && nlen >= 2 && fold((unsigned char)a[0]) == 'x' && a[1] == '-')
        return check_vendor(st, a, nlen, v, vlen);
    if (!def) {
        if (query && after_pin)
            return fail(st, "unknown query attribute after pin-value (write %%26 for a \"&\" "
                        "inside the PIN)");
        if (query)
            return fail(st, "unknown query attribute \"%s\" (expected " QUERY_EXPECTED ")",
                        show(nm, sizeof nm, a, nlen));
        return fail(st, "unknown attribute \"%s\" (expected " PATH_EXPECTED ")",
                    show(nm, sizeof nm, a, nlen));
    }
    if (def->query != query)
        return fail(st, "attribute \"%s\" belongs in the %s", def->name,
                    def->query ? "query (after \"?\")" : "path (before \"?\")");
    if (st->seen & (1UL << i))
        return fail(st, "duplicate attribute \"%s\"", def->name);
    st->seen |= 1UL << i;

    size_t len;
    unsigned char *val = decode(st, def, v, vlen, &len);
    if (!val)
        return -1;
    switch (def->kind) {
    case K_STR:
        *(char **)((char *)u + def->off) = (char *)val;
        return 0;
    case K_LIBVER:
        if (!valid_version((char *)val)) {
            fail(st, "bad library-version \"%s\" (expected MAJOR or MAJOR.MINOR)",
                 show(shown, sizeof shown, (char *)val, len));
            free(val);
            return -1;
        }
        u->library_version = (char *)val;
        return 0;
    case K_SLOT:
        if (parse_slot_id((char *)val, &u->slot_id) != 0) {
            fail(st, "bad slot-id \"%s\" (expected a decimal number)",
                 show(shown, sizeof shown, (char *)val, len));
            free(val);
            return -1;
        }
        u->has_slot_id = 1;
        free(val);
        return 0;
    case K_TYPE:
        for (i = 0; i < sizeof types / sizeof types[0]; i++)
            if (eq_fold_n((char *)val, len, types[i])) {
                memcpy(val, types[i], len);   /* canonical lower case */
                u->type = (char *)val;
                return 0;
            }
        fail(st, "bad type \"%s\" (expected public, private, secret-key, cert or data)",
             show(shown, sizeof shown, (char *)val, len));
        free(val);
        return -1;
    case K_ID:
        u->id = val;
        u->id_len = len;
        u->has_id = 1;
        return 0;
    case K_PIN:
        u->pin_value = val;
        u->pin_value_len = len;
        st->after_pin = 1;
        return 0;
    }
    free(val);
    return -1;
}

static int parse_part(parse_state *st, const char *p, size_t len, int query)
{
    const char *end = p + len;
    char sep = query ? '&' : ';';
    if (len == 0)
        return 0;
    for (;;) {
        const char *c = memchr(p, sep, (size_t)(end - p));
        if (!c)
            c = end;
        if (parse_attr(st, p, (size_t)(c - p), query) != 0)
            return -1;
        if (c == end)
            return 0;
        p = c + 1;
    }
}

int hsm_uri_parse(const char *s, hsm_uri *out, hsm_err *err)
{
    hsm_uri u;
    parse_state st = { &u, err, 0, 0 };
    const char *p, *q;

    memset(&u, 0, sizeof u);
    if (out)
        memset(out, 0, sizeof *out);
    if (!out)
        return fail(&st, "nowhere to store the result");
    if (!s)
        return fail(&st, "no URI given");
    if (!eq_fold_n(s, strnlen(s, 7), "pkcs11:"))
        return fail(&st, "\"pkcs11:\" scheme missing");
    p = s + 7;
    q = strchr(p, '?');
    if (parse_part(&st, p, q ? (size_t)(q - p) : strlen(p), 0) != 0 ||
        (q && parse_part(&st, q + 1, strlen(q + 1), 1) != 0))
        goto bad;
    if (u.pin_value && u.pin_source) {
        fail(&st, "pin-value and pin-source are both given (use one)");
        goto bad;
    }
    *out = u;
    return 0;
bad:
    hsm_uri_free(&u);
    return -1;
}

void hsm_uri_free(hsm_uri *u)
{
    if (!u)
        return;
    for (size_t i = 0; i < NATTRS; i++)
        if (attrs[i].kind == K_STR || attrs[i].kind == K_LIBVER || attrs[i].kind == K_TYPE)
            free(*(char **)((char *)u + attrs[i].off));
    free(u->id);
    if (u->pin_value)
        zfree(u->pin_value, u->pin_value_len);
    memset(u, 0, sizeof *u);
}

/* ------------------------------------------------------------------ formatting */

/* Counts when buf is NULL, writes otherwise. */
typedef struct writer {
    char *buf;
    size_t len;
} writer;

static void put(writer *w, const char *s, size_t n)
{
    if (w->buf)
        memcpy(w->buf + w->len, s, n);
    w->len += n;
}

enum enc { ENC_PATH, ENC_QUERY, ENC_HEX };

static void put_enc(writer *w, const unsigned char *s, size_t n, enum enc how)
{
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = s[i];
        int plain = how != ENC_HEX &&
                    ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                     c == '-' || c == '.' || c == '_' || c == '~' ||
                     (how == ENC_QUERY && (c == '/' || c == ':')));
        if (plain) {
            put(w, (const char *)&c, 1);
        } else {
            char e[3] = { '%', hex[c >> 4], hex[c & 15] };
            put(w, e, 3);
        }
    }
}

static void format_into(writer *w, const hsm_uri *u, int with_pin)
{
    int npath = 0, nquery = 0;
    put(w, "pkcs11:", 7);
    for (size_t i = 0; i < NATTRS; i++) {
        const attr_def *d = &attrs[i];
        const unsigned char *val = NULL;
        size_t len = 0;
        char num[32];
        enum enc how = d->query ? ENC_QUERY : ENC_PATH;
        switch (d->kind) {
        case K_STR: case K_LIBVER: case K_TYPE: {
            const char *str = *(char *const *)((const char *)u + d->off);
            /* A pin-source that is not a reference (file:PATH, /PATH, prompt) may be a PIN
             * typed in the wrong place: never shown. */
            if (!with_pin && str && d->off == offsetof(hsm_uri, pin_source) &&
                strncmp(str, "file:", 5) != 0 && str[0] != '/' && strcmp(str, "prompt") != 0)
                str = "(not shown: not file:PATH or prompt)";
            val = (const unsigned char *)str;
            len = str ? strlen(str) : 0;
            break;
        }
        case K_SLOT:
            if (u->has_slot_id) {
                len = (size_t)snprintf(num, sizeof num, "%lu", (unsigned long)u->slot_id);
                val = (const unsigned char *)num;
            }
            break;
        case K_ID:
            if (u->has_id) {
                val = u->id ? u->id : (const unsigned char *)"";
                len = u->id ? u->id_len : 0;
                how = ENC_HEX;
            }
            break;
        case K_PIN:
            if (with_pin && u->pin_value) {
                val = u->pin_value;
                len = u->pin_value_len;
            }
            break;
        }
        if (!val)
            continue;
        if (d->query)
            put(w, nquery++ ? "&" : "?", 1);
        else if (npath++)
            put(w, ";", 1);
        put(w, d->name, strlen(d->name));
        put(w, "=", 1);
        put_enc(w, val, len, how);
    }
}

/* The result holds the PIN when with_pin: zeroize it before freeing. */
char *hsm_uri_format(const hsm_uri *u, int with_pin)
{
    writer w = { NULL, 0 };
    if (!u)
        return NULL;
    format_into(&w, u, with_pin);
    w.buf = malloc(w.len + 1);
    if (!w.buf)
        return NULL;
    w.len = 0;
    format_into(&w, u, with_pin);
    w.buf[w.len] = '\0';
    return w.buf;
}
