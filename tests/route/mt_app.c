/* mt_app.c - a multi-threaded application of libhsmsh-route.so, written against libp11 (the
 * library OpenSSL applications reach PKCS#11 through), as a TLS server's workers use it: the
 * key is found once and kept; 4 threads sign (RSA PKCS#1) and decrypt (RSA OAEP, encrypted
 * in software with the public key), and thread 0 generates a token key per phase, while the
 * main thread moves the route state through phases with `hsmsh route set`.
 *
 *   mt_app MODULE STATE HSMSH PIN [OPS_PER_PHASE] [fork]
 *   mt_app MODULE STATE HSMSH PIN drill STOP_FILE   (signs and decrypts until STOP_FILE exists)
 *
 * Prints per phase: the weights, the operations each side served (this process's statistics
 * file, STATE.stats.d/PID.json), blue's share, failures, and the label of the key made in
 * that phase with the write side it must be on: "phase N weights B/G write W ops O blue X
 * green Y share S failed F key LABEL". Exits 1 on any failed operation. With "fork" it
 * initialises, logs in and finds the key, then forks: the child runs the same phases (libp11
 * calls C_Initialize again in it), and the parent waits for it. */
#include <libp11.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define THREADS 4

static EVP_PKEY *priv, *pub;
static PKCS11_TOKEN *token;
static atomic_int running, idle, phase_no;
static atomic_long done_ops, failed_ops;
static atomic_int keygen_wanted;
static char keygen_label[64];
static int keygen_failed;

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int do_sign(void)
{
    unsigned char sig[512], msg[32];
    size_t siglen = sizeof sig;
    memset(msg, 0x5a, sizeof msg);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    int ok = md && EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, priv) == 1 &&
             EVP_DigestSign(md, sig, &siglen, msg, sizeof msg) == 1;
    EVP_MD_CTX_free(md);
    return ok;
}

static int do_decrypt(void)
{
    unsigned char msg[32], ct[512], pt[512];
    size_t ctlen = sizeof ct, ptlen = sizeof pt;
    memset(msg, 0xa5, sizeof msg);
    EVP_PKEY_CTX *e = EVP_PKEY_CTX_new(pub, NULL);
    int ok = e && EVP_PKEY_encrypt_init(e) == 1 &&
             EVP_PKEY_CTX_set_rsa_padding(e, RSA_PKCS1_OAEP_PADDING) == 1 &&
             EVP_PKEY_encrypt(e, ct, &ctlen, msg, sizeof msg) == 1;
    EVP_PKEY_CTX_free(e);
    if (!ok)
        return 0;
    EVP_PKEY_CTX *d = EVP_PKEY_CTX_new(priv, NULL);
    ok = d && EVP_PKEY_decrypt_init(d) == 1 &&
         EVP_PKEY_CTX_set_rsa_padding(d, RSA_PKCS1_OAEP_PADDING) == 1 &&
         EVP_PKEY_decrypt(d, pt, &ptlen, ct, ctlen) == 1 && ptlen == sizeof msg &&
         memcmp(pt, msg, sizeof msg) == 0;
    EVP_PKEY_CTX_free(d);
    return ok;
}

static void *worker(void *arg)
{
    long n = (long)(intptr_t)arg;
    for (;;) {
        if (!atomic_load(&running)) {
            atomic_fetch_add(&idle, 1);
            while (!atomic_load(&running)) {
                if (atomic_load(&phase_no) < 0)
                    return NULL;
                sleep_ms(1);
            }
            atomic_fetch_sub(&idle, 1);
        }
        if (n == 0 && atomic_exchange(&keygen_wanted, 0)) {
            unsigned char id[2] = {0x7e, (unsigned char)atomic_load(&phase_no)};
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
            if (PKCS11_generate_key(token, EVP_PKEY_RSA, 1024, keygen_label, id, sizeof id) != 0)
                keygen_failed = 1;
#pragma GCC diagnostic pop
        }
        int ok = (n + atomic_load(&done_ops)) % 2 ? do_sign() : do_decrypt();
        atomic_fetch_add(ok ? &done_ops : &failed_ops, 1);
    }
}

/* This process's served-operation counts per side from the module's statistics file. */
static int side_ops(const char *state, long *blue, long *green)
{
    char path[4200], buf[16384];
    snprintf(path, sizeof path, "%s.stats.d/%ld.json", state, (long)getpid());
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    const char *b = strstr(buf, "\"blue\":{"), *g = strstr(buf, "\"green\":{");
    const char *bo = b ? strstr(b, "\"ops\":") : NULL, *go = g ? strstr(g, "\"ops\":") : NULL;
    if (!bo || !go)
        return -1;
    *blue = atol(bo + 6);
    *green = atol(go + 6);
    return 0;
}

/* Waits until the statistics file shows at least `at_least` operations in all (the module
 * writes it at most once a second, at an operation). */
static int settle(const char *state, long at_least, long *blue, long *green)
{
    for (int i = 0; i < 50; i++) {
        sleep_ms(250);
        do_sign();   /* an operation, so the module may write its file */
        if (side_ops(state, blue, green) == 0 && *blue + *green >= at_least)
            return 0;
    }
    return -1;
}

static int run_phases(const char *state, const char *hsmsh, long per_phase)
{
    static const struct { const char *weights, *write; } phases[] = {
        {"100/0", "blue"}, {"90/10", "blue"}, {"50/50", "green"}, {"0/100", "green"},
        {"100/0", "blue"}};
    pthread_t th[THREADS];
    for (long i = 0; i < THREADS; i++)
        pthread_create(&th[i], NULL, worker, (void *)(intptr_t)i);
    long prev_b = 0, prev_g = 0, total = 0;
    int bad = 0;
    settle(state, 0, &prev_b, &prev_g);
    for (int p = 0; p < (int)(sizeof phases / sizeof phases[0]); p++) {
        char cmd[9000];
        snprintf(cmd, sizeof cmd, "'%s' route set '%s' weights=%s write=%s > /dev/null", hsmsh,
                 state, phases[p].weights, phases[p].write);
        if (system(cmd) != 0) {
            fprintf(stderr, "mt_app: %s failed\n", cmd);
            bad = 1;
            break;
        }
        sleep_ms(150);   /* the module looks at the state at most every 100 ms */
        snprintf(keygen_label, sizeof keygen_label, "mt-%ld-%d", (long)getpid(), p + 1);
        atomic_store(&phase_no, p + 1);
        long start = atomic_load(&done_ops) + atomic_load(&failed_ops);
        atomic_store(&keygen_wanted, 1);
        atomic_store(&running, 1);
        while (atomic_load(&done_ops) + atomic_load(&failed_ops) - start < per_phase ||
               atomic_load(&keygen_wanted))
            sleep_ms(5);
        atomic_store(&running, 0);
        while (atomic_load(&idle) < THREADS)
            sleep_ms(1);
        long ops = atomic_load(&done_ops) + atomic_load(&failed_ops) - start, b, g;
        /* settle's own signs are counted too: they ran under this phase's weights */
        if (settle(state, prev_b + prev_g + ops, &b, &g) != 0) {
            fprintf(stderr, "mt_app: the statistics file never caught up\n");
            bad = 1;
            break;
        }
        long db = b - prev_b, dg = g - prev_g;
        total += ops;
        printf("phase %d weights %s write %s ops %ld blue %ld green %ld share %.1f failed %ld "
               "key %s%s\n", p + 1, phases[p].weights, phases[p].write, ops, db, dg,
               db + dg ? 100.0 * (double)db / (double)(db + dg) : 0.0, atomic_load(&failed_ops),
               keygen_label, keygen_failed ? " keygen-failed" : "");
        fflush(stdout);
        prev_b = b;
        prev_g = g;
    }
    atomic_store(&phase_no, -1);
    atomic_store(&running, 0);
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    printf("total ops %ld failed %ld\n", total, atomic_load(&failed_ops));
    return bad || atomic_load(&failed_ops) || keygen_failed;
}

/* The drill of a blue/green cutover (integration/bluegreen): the threads sign and decrypt
 * without pause while the operator runs the steps, until the stop file appears. */
static int run_drill(const char *stop_file)
{
    pthread_t th[THREADS];
    atomic_store(&running, 1);
    for (long i = 0; i < THREADS; i++)
        pthread_create(&th[i], NULL, worker, (void *)(intptr_t)i);
    while (access(stop_file, F_OK) != 0)
        sleep_ms(50);
    atomic_store(&phase_no, -1);
    atomic_store(&running, 0);
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    printf("drill ops %ld failed %ld\n", atomic_load(&done_ops), atomic_load(&failed_ops));
    return atomic_load(&failed_ops) != 0;
}

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: mt_app MODULE STATE HSMSH PIN [OPS_PER_PHASE] [fork]\n"
                        "       mt_app MODULE STATE HSMSH PIN drill STOP_FILE\n");
        return 2;
    }
    const char *drill = argc > 6 && strcmp(argv[5], "drill") == 0 ? argv[6] : NULL;
    long per_phase = argc > 5 && !drill ? atol(argv[5]) : 2000;
    int forked = argc > 6 && strcmp(argv[6], "fork") == 0;
    PKCS11_CTX *ctx = PKCS11_CTX_new();
    PKCS11_SLOT *slots = NULL, *slot;
    unsigned int nslots = 0, nkeys = 0;
    PKCS11_KEY *keys = NULL;
    if (!ctx || PKCS11_CTX_load(ctx, argv[1]) != 0 ||
        PKCS11_enumerate_slots(ctx, &slots, &nslots) != 0 ||
        !(slot = PKCS11_find_token(ctx, slots, nslots)) || PKCS11_open_session(slot, 1) != 0 ||
        PKCS11_login(slot, 0, argv[4]) != 0) {
        fprintf(stderr, "mt_app: cannot load, open or log in to %s\n", argv[1]);
        return 1;
    }
    token = slot->token;
    if (PKCS11_enumerate_keys(token, &keys, &nkeys) != 0) {
        fprintf(stderr, "mt_app: cannot list the keys\n");
        return 1;
    }
    for (unsigned int i = 0; i < nkeys; i++)
        if (keys[i].label && strcmp(keys[i].label, "mt-rsa") == 0) {
            priv = PKCS11_get_private_key(&keys[i]);
            pub = PKCS11_get_public_key(&keys[i]);
        }
    if (!priv || !pub) {
        fprintf(stderr, "mt_app: no key 'mt-rsa' (of %u keys)\n", nkeys);
        return 1;
    }
    if (forked) {
        fflush(stdout);
        pid_t pid = fork();
        if (pid < 0)
            return 1;
        if (pid == 0)
            _exit(run_phases(argv[2], argv[3], per_phase));
        int status = 0;
        waitpid(pid, &status, 0);
        printf("child exit %d\n", WIFEXITED(status) ? WEXITSTATUS(status) : 128);
        return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
    }
    int rc = drill ? run_drill(drill) : run_phases(argv[2], argv[3], per_phase);
    EVP_PKEY_free(priv);
    EVP_PKEY_free(pub);
    PKCS11_release_all_slots(ctx, slots, nslots);
    PKCS11_CTX_unload(ctx);
    PKCS11_CTX_free(ctx);
    return rc;
}
