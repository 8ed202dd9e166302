/* make_seeds.c - writes the seed corpora of the fuzz targets into DIR/fuzz_share and
 * DIR/fuzz_combine: real share files (XOR and Shamir, 1-, 32- and 64-byte secrets, with and
 * without the fuzz passphrase) under each mode byte, and real splits in fuzz_combine's
 * record format. Built with the same scrypt cost as the targets, so protected seeds open. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "custody/hsm_custody.h"

static const unsigned char PASS[] = "fuzz passphrase";

static int write_file(const char *dir, const char *name, const unsigned char *p, size_t n)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(p, 1, n, f) != n || fclose(f) != 0) {
        fprintf(stderr, "cannot write %s\n", path);
        return -1;
    }
    return 0;
}

/* Share files of one split, each under mode bytes 0..3. */
static int share_seeds(const char *dir, hsm_scheme scheme, unsigned n, unsigned m, size_t len)
{
    unsigned char secret[64], mode_file[1 + 68 + 64 + 32];
    hsm_share set[5];
    hsm_err err;
    for (size_t i = 0; i < len; i++)
        secret[i] = (unsigned char)(i * 7 + len);
    if (hsm_split(scheme, secret, len, n, m, NULL, NULL, set, &err) != 0)
        return fprintf(stderr, "%s\n", err.msg), -1;
    int r = 0;
    for (unsigned i = 0; i < m && r == 0; i++) {
        int protect = i % 2;
        unsigned char *file;
        size_t flen;
        if (hsm_share_encode(&set[i], protect ? PASS : NULL, protect ? sizeof PASS - 1 : 0, NULL,
                             NULL, &file, &flen, &err) != 0)
            return fprintf(stderr, "%s\n", err.msg), -1;
        for (unsigned mode = 0; mode < 4 && r == 0; mode++) {
            char name[64];
            snprintf(name, sizeof name, "%s-%u-of-%u-len%zu-share%u-mode%u",
                     hsm_scheme_name(scheme), n, m, len, i + 1, mode);
            mode_file[0] = (unsigned char)mode;
            memcpy(mode_file + 1, file, flen);
            r = write_file(dir, name, mode_file, flen + 1);
        }
        free(file);
    }
    for (unsigned i = 0; i < m; i++)
        hsm_share_clear(&set[i]);
    return r;
}

/* A whole split in fuzz_combine's format (see fuzz_combine.c). */
static int combine_seed(const char *dir, hsm_scheme scheme, unsigned n, unsigned m, size_t len)
{
    unsigned char secret[64], buf[1 + 16 * 14 + 16 * 64];
    hsm_share set[5];
    hsm_err err;
    memset(secret, 0x3c, len);
    if (hsm_split(scheme, secret, len, n, m, NULL, NULL, set, &err) != 0)
        return fprintf(stderr, "%s\n", err.msg), -1;
    /* The fuzz target's set id is one byte repeated: give this set such an id. */
    for (unsigned i = 0; i < m; i++) {
        memset(set[i].set_id, 0x11, sizeof set[i].set_id);
        hsm_set_check(secret, len, set[i].set_id, set[i].set_check, &err);
    }
    size_t off = 0;
    buf[off++] = (unsigned char)(m - 1);
    for (unsigned i = 0; i < m; i++) {
        buf[off++] = (unsigned char)scheme;
        buf[off++] = (unsigned char)set[i].index;
        buf[off++] = (unsigned char)n;
        buf[off++] = (unsigned char)m;
        buf[off++] = (unsigned char)(len - 1);
        buf[off++] = 0x11;
        memcpy(buf + off, set[i].set_check, HSM_SHARE_SET_CHECK_LEN);
        off += HSM_SHARE_SET_CHECK_LEN;
    }
    for (unsigned i = 0; i < m; i++) {
        memcpy(buf + off, set[i].bytes, len);
        off += len;
    }
    char name[64];
    snprintf(name, sizeof name, "%s-%u-of-%u-len%zu", hsm_scheme_name(scheme), n, m, len);
    for (unsigned i = 0; i < m; i++)
        hsm_share_clear(&set[i]);
    return write_file(dir, name, buf, off);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    char share_dir[4096], combine_dir[4096];
    snprintf(share_dir, sizeof share_dir, "%s/fuzz_share", argv[1]);
    snprintf(combine_dir, sizeof combine_dir, "%s/fuzz_combine", argv[1]);
    mkdir(argv[1], 0755);
    mkdir(share_dir, 0755);
    mkdir(combine_dir, 0755);
    static const size_t lens[] = {1, 32, 64};
    for (size_t i = 0; i < 3; i++)
        if (share_seeds(share_dir, HSM_SCHEME_SHAMIR, 2, 3, lens[i]) != 0
            || share_seeds(share_dir, HSM_SCHEME_XOR, 2, 2, lens[i]) != 0
            || combine_seed(combine_dir, HSM_SCHEME_SHAMIR, 3, 5, lens[i]) != 0
            || combine_seed(combine_dir, HSM_SCHEME_XOR, 3, 3, lens[i]) != 0)
            return 1;
    return 0;
}
