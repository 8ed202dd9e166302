/* guard.c - SoftHSM2 shared by several processes: every hsmsh process's calls into SoftHSM2
 * are ordered against the others' file writes.
 *
 * SoftHSM2 (2.6) writes an object file (token.object on every C_Login, a key's file when it is
 * made or changed) under an fcntl lock, but its File destructor releases that lock before
 * fclose flushes the stdio buffer. A process reading the file in that window (any call
 * re-reads a changed file) reads it short, and the token then reads as uninitialised, with
 * an empty label, or C_GetTokenInfo fails; it stays so in that process until the library is
 * initialised again. hsmsh closes the window for its own processes with one file,
 * <tokendir>/.hsmsh-io.lock:
 *  - a call that may write a file (LOCK_EX) holds an exclusive flock on it, and while it
 *    runs a count of writers in the file's first page (shared memory) is raised;
 *  - a call that may read one (LOCK_SH) announces itself in its process's slot of that page
 *    and, when no writer is counted, runs with no system call at all; otherwise it falls
 *    back to a shared flock. A writer, once counted, waits for every live slot to drain.
 *    The two sides are Dekker's: each writes its own word and then reads the other's, in
 *    one total order (seq_cst), so one of them always sees the other;
 *  - the others (NO_LOCK) take nothing.
 * A process killed anywhere leaves nothing held: the kernel drops its flock; its slot is
 * owned through an OFD byte lock, so a writer tells a dead slot by the lock being free and
 * skips it; a writer killed while counted is noticed by the first reader that takes the
 * shared flock (no writer can be running then) and uncounted. Each thread has its own
 * flock descriptor, so threads order like processes; a forked child opens its own and takes
 * a slot of its own. A process that cannot map the page read-write takes the flock for
 * every read. Programs that are not hsmsh take no part (docs/modules.md). */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdatomic.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <p11-kit/pkcs11.h>

#include "hsm_softhsm2.h"

/* name, lock, parameters, arguments: every function of the 2.40 list but C_GetFunctionList.
 * NO_LOCK: the calls that carry on an operation already begun, or touch no object (random),
 * and so never open a file: the Init call looked the key up, under the lock. */
#define NO_LOCK 0
#define SOFTHSM2_CALLS(X)                                                                          \
    X(C_Initialize, LOCK_SH, (void *init_args), (init_args))                                       \
    X(C_Finalize, LOCK_SH, (void *reserved), (reserved))                                           \
    X(C_GetInfo, LOCK_SH, (CK_INFO *info), (info))                                                \
    X(C_GetSlotList, LOCK_SH, (CK_BYTE token_present, CK_SLOT_ID *slot_list, CK_ULONG *count),   \
      (token_present, slot_list, count))                                                           \
    X(C_GetSlotInfo, LOCK_SH, (CK_SLOT_ID slot_id, CK_SLOT_INFO *info), (slot_id, info))          \
    X(C_GetTokenInfo, LOCK_SH, (CK_SLOT_ID slot_id, CK_TOKEN_INFO *info), (slot_id, info))        \
    X(C_GetMechanismList, LOCK_SH,                                                                 \
      (CK_SLOT_ID slot_id, CK_MECHANISM_TYPE *mechanism_list, CK_ULONG *count),                  \
      (slot_id, mechanism_list, count))                                                            \
    X(C_GetMechanismInfo, LOCK_SH,                                                                 \
      (CK_SLOT_ID slot_id, CK_MECHANISM_TYPE type, CK_MECHANISM_INFO *info),                      \
      (slot_id, type, info))                                                                       \
    X(C_InitToken, LOCK_EX,                                                                        \
      (CK_SLOT_ID slot_id, CK_BYTE *pin, CK_ULONG pin_len, CK_BYTE *label),                      \
      (slot_id, pin, pin_len, label))                                                              \
    X(C_InitPIN, LOCK_EX, (CK_SESSION_HANDLE session, CK_BYTE *pin, CK_ULONG pin_len),            \
      (session, pin, pin_len))                                                                     \
    X(C_SetPIN, LOCK_EX,                                                                           \
      (CK_SESSION_HANDLE session, CK_BYTE *old_pin, CK_ULONG old_len, CK_BYTE *new_pin,          \
       CK_ULONG new_len),                                                                          \
      (session, old_pin, old_len, new_pin, new_len))                                               \
    X(C_OpenSession, LOCK_SH,                                                                      \
      (CK_SLOT_ID slot_id, CK_FLAGS flags, void *application, CK_NOTIFY notify,                    \
       CK_SESSION_HANDLE *session),                                                                \
      (slot_id, flags, application, notify, session))                                              \
    X(C_CloseSession, LOCK_SH, (CK_SESSION_HANDLE session), (session))                             \
    X(C_CloseAllSessions, LOCK_SH, (CK_SLOT_ID slot_id), (slot_id))                                \
    X(C_GetSessionInfo, LOCK_SH, (CK_SESSION_HANDLE session, CK_SESSION_INFO *info),              \
      (session, info))                                                                             \
    X(C_GetOperationState, LOCK_SH,                                                                \
      (CK_SESSION_HANDLE session, CK_BYTE *operation_state, CK_ULONG *operation_state_len),      \
      (session, operation_state, operation_state_len))                                             \
    X(C_SetOperationState, LOCK_SH,                                                                \
      (CK_SESSION_HANDLE session, CK_BYTE *operation_state, CK_ULONG operation_state_len,         \
       CK_OBJECT_HANDLE encryption_key, CK_OBJECT_HANDLE authentiation_key),                       \
      (session, operation_state, operation_state_len, encryption_key, authentiation_key))          \
    X(C_Login, LOCK_EX,                                                                            \
      (CK_SESSION_HANDLE session, CK_USER_TYPE user_type, CK_BYTE *pin, CK_ULONG pin_len),        \
      (session, user_type, pin, pin_len))                                                          \
    X(C_Logout, LOCK_SH, (CK_SESSION_HANDLE session), (session))                                   \
    X(C_CreateObject, LOCK_EX,                                                                     \
      (CK_SESSION_HANDLE session, CK_ATTRIBUTE *templ, CK_ULONG count,                            \
       CK_OBJECT_HANDLE *object),                                                                 \
      (session, templ, count, object))                                                             \
    X(C_CopyObject, LOCK_EX,                                                                       \
      (CK_SESSION_HANDLE session, CK_OBJECT_HANDLE object, CK_ATTRIBUTE *templ, CK_ULONG count,   \
       CK_OBJECT_HANDLE *new_object),                                                             \
      (session, object, templ, count, new_object))                                                 \
    X(C_DestroyObject, LOCK_EX, (CK_SESSION_HANDLE session, CK_OBJECT_HANDLE object),              \
      (session, object))                                                                           \
    X(C_GetObjectSize, LOCK_SH,                                                                    \
      (CK_SESSION_HANDLE session, CK_OBJECT_HANDLE object, CK_ULONG *size),                       \
      (session, object, size))                                                                     \
    X(C_GetAttributeValue, LOCK_SH,                                                                \
      (CK_SESSION_HANDLE session, CK_OBJECT_HANDLE object, CK_ATTRIBUTE *templ, CK_ULONG count),  \
      (session, object, templ, count))                                                             \
    X(C_SetAttributeValue, LOCK_EX,                                                                \
      (CK_SESSION_HANDLE session, CK_OBJECT_HANDLE object, CK_ATTRIBUTE *templ, CK_ULONG count),  \
      (session, object, templ, count))                                                             \
    X(C_FindObjectsInit, LOCK_SH,                                                                  \
      (CK_SESSION_HANDLE session, CK_ATTRIBUTE *templ, CK_ULONG count), (session, templ, count))  \
    X(C_FindObjects, LOCK_SH,                                                                      \
      (CK_SESSION_HANDLE session, CK_OBJECT_HANDLE *object, CK_ULONG max_object_count,            \
       CK_ULONG *object_count),                                                                   \
      (session, object, max_object_count, object_count))                                           \
    X(C_FindObjectsFinal, LOCK_SH, (CK_SESSION_HANDLE session), (session))                         \
    X(C_EncryptInit, LOCK_SH,                                                                      \
      (CK_SESSION_HANDLE session, CK_MECHANISM *mechanism, CK_OBJECT_HANDLE key),                 \
      (session, mechanism, key))                                                                   \
    X(C_Encrypt, NO_LOCK,                                                                          \
      (CK_SESSION_HANDLE session, CK_BYTE *data, CK_ULONG data_len, CK_BYTE *encrypted_data,     \
       CK_ULONG *encrypted_data_len),                                                             \
      (session, data, data_len, encrypted_data, encrypted_data_len))                               \
    X(C_EncryptUpdate, NO_LOCK,                                                                    \
      (CK_SESSION_HANDLE session, CK_BYTE *part, CK_ULONG part_len, CK_BYTE *encrypted_part,     \
       CK_ULONG *encrypted_part_len),                                                             \
      (session, part, part_len, encrypted_part, encrypted_part_len))                               \
    X(C_EncryptFinal, NO_LOCK,                                                                     \
      (CK_SESSION_HANDLE session, CK_BYTE *last_encrypted_part,                                   \
       CK_ULONG *last_encrypted_part_len),                                                        \
      (session, last_encrypted_part, last_encrypted_part_len))                                     \
    X(C_DecryptInit, LOCK_SH,                                                                      \
      (CK_SESSION_HANDLE session, CK_MECHANISM *mechanism, CK_OBJECT_HANDLE key),                 \
      (session, mechanism, key))                                                                   \
    X(C_Decrypt, NO_LOCK,                                                                          \
      (CK_SESSION_HANDLE session, CK_BYTE *encrypted_data, CK_ULONG encrypted_data_len,           \
       CK_BYTE *data, CK_ULONG *data_len),                                                       \
      (session, encrypted_data, encrypted_data_len, data, data_len))                               \
    X(C_DecryptUpdate, NO_LOCK,                                                                    \
      (CK_SESSION_HANDLE session, CK_BYTE *encrypted_part, CK_ULONG encrypted_part_len,           \
       CK_BYTE *part, CK_ULONG *part_len),                                                       \
      (session, encrypted_part, encrypted_part_len, part, part_len))                               \
    X(C_DecryptFinal, NO_LOCK,                                                                     \
      (CK_SESSION_HANDLE session, CK_BYTE *last_part, CK_ULONG *last_part_len),                  \
      (session, last_part, last_part_len))                                                         \
    X(C_DigestInit, LOCK_SH, (CK_SESSION_HANDLE session, CK_MECHANISM *mechanism),                \
      (session, mechanism))                                                                        \
    X(C_Digest, NO_LOCK,                                                                           \
      (CK_SESSION_HANDLE session, CK_BYTE *data, CK_ULONG data_len, CK_BYTE *digest,             \
       CK_ULONG *digest_len),                                                                     \
      (session, data, data_len, digest, digest_len))                                               \
    X(C_DigestUpdate, NO_LOCK, (CK_SESSION_HANDLE session, CK_BYTE *part, CK_ULONG part_len),     \
      (session, part, part_len))                                                                   \
    X(C_DigestKey, LOCK_SH, (CK_SESSION_HANDLE session, CK_OBJECT_HANDLE key), (session, key))     \
    X(C_DigestFinal, NO_LOCK,                                                                      \
      (CK_SESSION_HANDLE session, CK_BYTE *digest, CK_ULONG *digest_len),                        \
      (session, digest, digest_len))                                                               \
    X(C_SignInit, LOCK_SH,                                                                         \
      (CK_SESSION_HANDLE session, CK_MECHANISM *mechanism, CK_OBJECT_HANDLE key),                 \
      (session, mechanism, key))                                                                   \
    X(C_Sign, NO_LOCK,                                                                             \
      (CK_SESSION_HANDLE session, CK_BYTE *data, CK_ULONG data_len, CK_BYTE *signature,          \
       CK_ULONG *signature_len),                                                                  \
      (session, data, data_len, signature, signature_len))                                         \
    X(C_SignUpdate, NO_LOCK, (CK_SESSION_HANDLE session, CK_BYTE *part, CK_ULONG part_len),       \
      (session, part, part_len))                                                                   \
    X(C_SignFinal, NO_LOCK,                                                                        \
      (CK_SESSION_HANDLE session, CK_BYTE *signature, CK_ULONG *signature_len),                  \
      (session, signature, signature_len))                                                         \
    X(C_SignRecoverInit, LOCK_SH,                                                                  \
      (CK_SESSION_HANDLE session, CK_MECHANISM *mechanism, CK_OBJECT_HANDLE key),                 \
      (session, mechanism, key))                                                                   \
    X(C_SignRecover, NO_LOCK,                                                                      \
      (CK_SESSION_HANDLE session, CK_BYTE *data, CK_ULONG data_len, CK_BYTE *signature,          \
       CK_ULONG *signature_len),                                                                  \
      (session, data, data_len, signature, signature_len))                                         \
    X(C_VerifyInit, LOCK_SH,                                                                       \
      (CK_SESSION_HANDLE session, CK_MECHANISM *mechanism, CK_OBJECT_HANDLE key),                 \
      (session, mechanism, key))                                                                   \
    X(C_Verify, NO_LOCK,                                                                           \
      (CK_SESSION_HANDLE session, CK_BYTE *data, CK_ULONG data_len, CK_BYTE *signature,          \
       CK_ULONG signature_len),                                                                    \
      (session, data, data_len, signature, signature_len))                                         \
    X(C_VerifyUpdate, NO_LOCK, (CK_SESSION_HANDLE session, CK_BYTE *part, CK_ULONG part_len),     \
      (session, part, part_len))                                                                   \
    X(C_VerifyFinal, NO_LOCK,                                                                      \
      (CK_SESSION_HANDLE session, CK_BYTE *signature, CK_ULONG signature_len),                    \
      (session, signature, signature_len))                                                         \
    X(C_VerifyRecoverInit, LOCK_SH,                                                                \
      (CK_SESSION_HANDLE session, CK_MECHANISM *mechanism, CK_OBJECT_HANDLE key),                 \
      (session, mechanism, key))                                                                   \
    X(C_VerifyRecover, NO_LOCK,                                                                    \
      (CK_SESSION_HANDLE session, CK_BYTE *signature, CK_ULONG signature_len, CK_BYTE *data,     \
       CK_ULONG *data_len),                                                                       \
      (session, signature, signature_len, data, data_len))                                         \
    X(C_DigestEncryptUpdate, NO_LOCK,                                                              \
      (CK_SESSION_HANDLE session, CK_BYTE *part, CK_ULONG part_len, CK_BYTE *encrypted_part,     \
       CK_ULONG *encrypted_part_len),                                                             \
      (session, part, part_len, encrypted_part, encrypted_part_len))                               \
    X(C_DecryptDigestUpdate, NO_LOCK,                                                              \
      (CK_SESSION_HANDLE session, CK_BYTE *encrypted_part, CK_ULONG encrypted_part_len,           \
       CK_BYTE *part, CK_ULONG *part_len),                                                       \
      (session, encrypted_part, encrypted_part_len, part, part_len))                               \
    X(C_SignEncryptUpdate, NO_LOCK,                                                                \
      (CK_SESSION_HANDLE session, CK_BYTE *part, CK_ULONG part_len, CK_BYTE *encrypted_part,     \
       CK_ULONG *encrypted_part_len),                                                             \
      (session, part, part_len, encrypted_part, encrypted_part_len))                               \
    X(C_DecryptVerifyUpdate, NO_LOCK,                                                              \
      (CK_SESSION_HANDLE session, CK_BYTE *encrypted_part, CK_ULONG encrypted_part_len,           \
       CK_BYTE *part, CK_ULONG *part_len),                                                       \
      (session, encrypted_part, encrypted_part_len, part, part_len))                               \
    X(C_GenerateKey, LOCK_EX,                                                                      \
      (CK_SESSION_HANDLE session, CK_MECHANISM *mechanism, CK_ATTRIBUTE *templ, CK_ULONG count,  \
       CK_OBJECT_HANDLE *key),                                                                    \
      (session, mechanism, templ, count, key))                                                     \
    X(C_GenerateKeyPair, LOCK_EX,                                                                  \
      (CK_SESSION_HANDLE session, CK_MECHANISM *mechanism, CK_ATTRIBUTE *public_key_template,    \
       CK_ULONG public_key_attribute_count, CK_ATTRIBUTE *private_key_template,                   \
       CK_ULONG private_key_attribute_count, CK_OBJECT_HANDLE *public_key,                        \
       CK_OBJECT_HANDLE *private_key),                                                            \
      (session, mechanism, public_key_template, public_key_attribute_count, private_key_template,  \
       private_key_attribute_count, public_key, private_key))                                      \
    X(C_WrapKey, LOCK_SH,                                                                          \
      (CK_SESSION_HANDLE session, CK_MECHANISM *mechanism, CK_OBJECT_HANDLE wrapping_key,         \
       CK_OBJECT_HANDLE key, CK_BYTE *wrapped_key, CK_ULONG *wrapped_key_len),                   \
      (session, mechanism, wrapping_key, key, wrapped_key, wrapped_key_len))                       \
    X(C_UnwrapKey, LOCK_EX,                                                                        \
      (CK_SESSION_HANDLE session, CK_MECHANISM *mechanism, CK_OBJECT_HANDLE unwrapping_key,       \
       CK_BYTE *wrapped_key, CK_ULONG wrapped_key_len, CK_ATTRIBUTE *templ,                      \
       CK_ULONG attribute_count, CK_OBJECT_HANDLE *key),                                          \
      (session, mechanism, unwrapping_key, wrapped_key, wrapped_key_len, templ, attribute_count,   \
       key))                                                                                       \
    X(C_DeriveKey, LOCK_EX,                                                                        \
      (CK_SESSION_HANDLE session, CK_MECHANISM *mechanism, CK_OBJECT_HANDLE base_key,             \
       CK_ATTRIBUTE *templ, CK_ULONG attribute_count, CK_OBJECT_HANDLE *key),                    \
      (session, mechanism, base_key, templ, attribute_count, key))                                 \
    X(C_SeedRandom, NO_LOCK, (CK_SESSION_HANDLE session, CK_BYTE *seed, CK_ULONG seed_len),       \
      (session, seed, seed_len))                                                                   \
    X(C_GenerateRandom, NO_LOCK,                                                                   \
      (CK_SESSION_HANDLE session, CK_BYTE *random_data, CK_ULONG random_len),                     \
      (session, random_data, random_len))                                                          \
    X(C_GetFunctionStatus, NO_LOCK, (CK_SESSION_HANDLE session), (session))                        \
    X(C_CancelFunction, NO_LOCK, (CK_SESSION_HANDLE session), (session))                           \
    X(C_WaitForSlotEvent, LOCK_SH, (CK_FLAGS flags, CK_SLOT_ID *slot, void *reserved),            \
      (flags, slot, reserved))

static CK_FUNCTION_LIST *real;
static CK_FUNCTION_LIST guarded;
static char lock_path[4200];
static pthread_key_t fd_key;
static pthread_once_t fd_once = PTHREAD_ONCE_INIT;

/* The shared page: a writer count, then one cache line per process slot. */
#define SLOTS 127
#define LAYOUT 1u
#define SLOT_LOCK_BASE (1 << 20)   /* slot i's OFD lock: byte SLOT_LOCK_BASE + i */
typedef struct {
    atomic_uint layout;
    atomic_int writers;
    char pad[56];
    struct {
        atomic_int readers;
        char pad[60];
    } slot[SLOTS];
} shared_page;

static pthread_mutex_t slot_lock = PTHREAD_MUTEX_INITIALIZER;
static shared_page *page;          /* mapped once; a forked child keeps the mapping */
static int page_tried;
static int proc_fd = -1;           /* this process's descriptor, holding its slot lock; -1: page unused */
static int my_slot = -1;

static void close_fd(void *p)
{
    close((int)(intptr_t)p - 1);
}

/* A child shares its parent's open file descriptions, and so its flock and its slot: it
 * opens its own descriptors and claims a slot of its own when it first calls. */
static void after_fork(void)
{
    intptr_t v = (intptr_t)pthread_getspecific(fd_key);
    if (v) {
        close((int)v - 1);
        pthread_setspecific(fd_key, NULL);
    }
    if (proc_fd >= 0)
        close(proc_fd);
    proc_fd = -1;
    my_slot = -1;
    page_tried = 0;
    pthread_mutex_init(&slot_lock, NULL);
}

static void make_key(void)
{
    pthread_key_create(&fd_key, close_fd);
    pthread_atfork(NULL, NULL, after_fork);
}

static int open_lock_file(void)
{
    int fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
    return fd >= 0 ? fd : open(lock_path, O_RDONLY | O_CLOEXEC);
}

/* This thread's descriptor on the lock file (stored +1 so that 0 means none), or -1. */
static int thread_fd(void)
{
    pthread_once(&fd_once, make_key);
    intptr_t v = (intptr_t)pthread_getspecific(fd_key);
    if (v)
        return (int)v - 1;
    int fd = open_lock_file();
    if (fd >= 0)
        pthread_setspecific(fd_key, (void *)(intptr_t)(fd + 1));
    return fd;
}

static int ofd_lock(int fd, int cmd, int slot, short *type)
{
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET,
                       .l_start = SLOT_LOCK_BASE + slot, .l_len = 1};
    int r = fcntl(fd, cmd, &fl);
    *type = fl.l_type;
    return r;
}

/* True when a live process owns slot i (its OFD lock is held). */
static int slot_alive(int i)
{
    short type;
    if (i == my_slot)
        return 1;
    return ofd_lock(proc_fd, F_OFD_GETLK, i, &type) != 0 || type != F_UNLCK;
}

/* Maps the page and claims a free slot (its OFD byte lock), once per process and again in
 * a forked child. Returns 1 when the page is in use (writers are counted), and the slot,
 * or -1 when every slot is taken (this process's reads then take the flock). */
static int use_page(int *slot)
{
    pthread_once(&fd_once, make_key);
    pthread_mutex_lock(&slot_lock);
    if (!page_tried) {
        page_tried = 1;
        int fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
        struct stat st;
        if (fd >= 0 && !page && fstat(fd, &st) == 0 &&
            (st.st_size >= (off_t)sizeof(shared_page) || ftruncate(fd, sizeof(shared_page)) == 0)) {
            void *p = mmap(NULL, sizeof(shared_page), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
            page = p == MAP_FAILED ? NULL : p;
        }
        unsigned layout = 0;
        if (page && (atomic_compare_exchange_strong(&page->layout, &layout, LAYOUT) ||
                     layout == LAYOUT)) {
            proc_fd = fd;
            for (int i = 0; i < SLOTS && my_slot < 0; i++) {
                short type;
                if (ofd_lock(fd, F_OFD_SETLK, i, &type) == 0) {
                    atomic_store(&page->slot[i].readers, 0);   /* a dead owner's count */
                    my_slot = i;
                }
            }
        } else if (fd >= 0)
            close(fd);
    }
    int in_use = proc_fd >= 0;
    *slot = my_slot;
    pthread_mutex_unlock(&slot_lock);
    return in_use;
}

static void flock_wait(int fd, int how)
{
    while (flock(fd, how) != 0 && errno == EINTR)
        ;
}

/* How a call was let in, for leave(). */
typedef struct {
    int fd;        /* flock held on it, or -1 */
    int slot;      /* reader counted in this slot, or -1 */
    int writer;    /* counted as a writer */
} entry;

static entry enter(int how)
{
    entry e = {-1, -1, 0};
    if (how == NO_LOCK)
        return e;
    int slot, shared = use_page(&slot);
    if (how == LOCK_SH && slot >= 0) {
        atomic_fetch_add(&page->slot[slot].readers, 1);
        if (atomic_load(&page->writers) == 0) {
            e.slot = slot;
            return e;
        }
        atomic_fetch_sub(&page->slot[slot].readers, 1);
    }
    e.fd = thread_fd();
    if (e.fd < 0)
        return e;
    flock_wait(e.fd, how);
    if (how == LOCK_SH && shared) {
        /* No writer holds the flock now; a count left means one was killed while counted. */
        int n = atomic_load(&page->writers);
        while (n > 0 && !atomic_compare_exchange_weak(&page->writers, &n, 0))
            ;
    }
    if (how == LOCK_EX && shared) {
        e.writer = 1;
        atomic_fetch_add(&page->writers, 1);
        for (int i = 0; i < SLOTS; i++)
            while (atomic_load(&page->slot[i].readers) > 0 && slot_alive(i)) {
                struct timespec ts = {0, 20000};
                nanosleep(&ts, NULL);
            }
    }
    return e;
}

static void leave(entry e)
{
    if (e.slot >= 0)
        atomic_fetch_sub(&page->slot[e.slot].readers, 1);
    if (e.writer)
        atomic_fetch_sub(&page->writers, 1);
    if (e.fd >= 0)
        flock(e.fd, LOCK_UN);
}

#define X(name, how, params, args)                                                                 \
    static CK_RV g_##name params                                                                   \
    {                                                                                              \
        entry e = enter(how);                                                                      \
        CK_RV rv = real->name args;                                                                \
        leave(e);                                                                                  \
        return rv;                                                                                 \
    }
SOFTHSM2_CALLS(X)
#undef X

/* directories.tokendir from the configuration SoftHSM2 will read, or 0 when none is found. */
static int token_dir(char *buf, size_t len)
{
    const char *conf = getenv("SOFTHSM2_CONF");
    FILE *f = fopen(conf && *conf ? conf : "/etc/softhsm/softhsm2.conf", "r");
    if (!f)
        return 0;
    char line[4096];
    int found = 0;
    while (!found && fgets(line, sizeof line, f)) {
        char *p = line + strspn(line, " \t");
        if (strncmp(p, "directories.tokendir", 20) != 0)
            continue;
        p += 20;
        p += strspn(p, " \t");
        if (*p++ != '=')
            continue;
        p += strspn(p, " \t");
        p[strcspn(p, " \t\r\n")] = 0;
        found = *p != 0;
        if (found)
            snprintf(buf, len, "%s", p);
    }
    fclose(f);
    return found;
}

CK_FUNCTION_LIST *hsm_softhsm2_guard(CK_FUNCTION_LIST *fl)
{
    char dir[4096];
    const char *off = getenv("HSMSH_SOFTHSM2_GUARD");   /* "0": off, to measure it */
    if (real)   /* loaded again after a C_Finalize; one SoftHSM2 library per process */
        return fl == real ? &guarded : fl;
    if ((off && strcmp(off, "0") == 0) || !token_dir(dir, sizeof dir))
        return fl;
    snprintf(lock_path, sizeof lock_path, "%s/.hsmsh-io.lock", dir);
    real = fl;
    guarded = *fl;
#define X(name, how, params, args) guarded.name = g_##name;
    SOFTHSM2_CALLS(X)
#undef X
    return &guarded;
}
