/* stats.c - per-side statistics (C11 atomics), written at most once a second to this
 * process's file STATE.stats.d/PID.json (temp + rename), which `hsmsh route status` sums. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "route.h"

route_stats route_st[ROUTE_SIDES];
static atomic_llong last_flush_ms;
static pthread_mutex_t flush_lock = PTHREAD_MUTEX_INITIALIZER;

long long route_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void route_stats_reset(void)
{
    memset(route_st, 0, sizeof route_st);
    atomic_store(&last_flush_ms, 0);
}

void route_stat_error(int side, CK_RV rv)
{
    atomic_fetch_add(&route_st[side].errors, 1);
    /* a small open table of CKR values: slot = first free or the same code */
    for (int i = 0; i < 64; i++) {
        unsigned long code = atomic_load(&route_st[side].err_rv_code[i]);
        if (code == 0) {
            unsigned long zero = 0;
            if (!atomic_compare_exchange_strong(&route_st[side].err_rv_code[i], &zero, rv + 1) &&
                zero != rv + 1)
                continue;
            atomic_fetch_add(&route_st[side].err_by_rv[i], 1);
            return;
        }
        if (code == rv + 1) {
            atomic_fetch_add(&route_st[side].err_by_rv[i], 1);
            return;
        }
    }
}

void route_stat_op(int side, long long t0_us, CK_RV rv)
{
    atomic_fetch_add(&route_st[side].ops, 1);
    if (rv != CKR_OK)
        route_stat_error(side, rv);
    long long us = route_now_us() - t0_us;
    int b = 0;
    while (us > 1 && b < 31) {
        us >>= 1;
        b++;
    }
    atomic_fetch_add(&route_st[side].lat[b], 1);
    route_stats_flush(0);
}

/* The upper bound (µs) of the bucket holding the q-th quantile. */
static unsigned long long percentile(const unsigned long *h, double q)
{
    unsigned long total = 0;
    for (int i = 0; i < 32; i++)
        total += h[i];
    if (!total)
        return 0;
    unsigned long want = (unsigned long)(q * (double)total + 0.5), acc = 0;
    if (want < 1)
        want = 1;
    for (int i = 0; i < 32; i++) {
        acc += h[i];
        if (acc >= want)
            return 1ULL << (i + 1);
    }
    return 1ULL << 32;
}

void route_stats_flush(int force)
{
    long long now = route_now_ms();
    long long last = atomic_load(&last_flush_ms);
    if (!force && (now - last < 1000 || !atomic_compare_exchange_strong(&last_flush_ms, &last, now)))
        return;
    if (!route_g.stats_dir[0])
        return;
    pthread_mutex_lock(&flush_lock);
    if (mkdir(route_g.stats_dir, 02770) == 0)
        chmod(route_g.stats_dir, 02770);   /* the group's (see route_open_shared) */
    char path[4400], tmp[4500], buf[8192];
    snprintf(path, sizeof path, "%s/%ld.json", route_g.stats_dir, (long)getpid());
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    pthread_mutex_lock(&route_lock);
    unsigned long long gen = route_g.state ? route_g.state->generation : 0;
    pthread_mutex_unlock(&route_lock);
    int n = snprintf(buf, sizeof buf, "{\"pid\":%ld,\"time\":%lld,\"generation\":%llu,\"sides\":{",
                     (long)getpid(), (long long)ts.tv_sec, gen);
    for (int s = 0; s < ROUTE_SIDES && n < (int)sizeof buf - 1024; s++) {
        route_stats *st = &route_st[s];
        unsigned long h[32];
        for (int i = 0; i < 32; i++)
            h[i] = atomic_load(&st->lat[i]);
        n += snprintf(buf + n, sizeof buf - (size_t)n,
                      "%s\"%s\":{\"up\":%s,\"sessions\":%lu,\"ops\":%lu,\"errors\":%lu,"
                      "\"misses\":%lu,\"split_brain\":%lu,\"refusals\":%lu,\"writes\":%lu,"
                      "\"downs\":%lu,\"latency_us\":{\"p50\":%llu,\"p90\":%llu,\"p99\":%llu},"
                      "\"errors_by_rv\":{",
                      s ? "," : "", route_side_name[s],
                      atomic_load(&route_g.side[s].up) ? "true" : "false",
                      atomic_load(&st->sessions), atomic_load(&st->ops), atomic_load(&st->errors),
                      atomic_load(&st->misses), atomic_load(&st->split_brain),
                      atomic_load(&st->refusals), atomic_load(&st->writes),
                      atomic_load(&st->downs), percentile(h, 0.5), percentile(h, 0.9),
                      percentile(h, 0.99));
        int first = 1;
        for (int i = 0; i < 64 && n < (int)sizeof buf - 128; i++) {
            unsigned long code = atomic_load(&st->err_rv_code[i]);
            if (!code)
                break;
            char name[48];
            n += snprintf(buf + n, sizeof buf - (size_t)n, "%s\"%s\":%lu", first ? "" : ",",
                          route_rv_name(code - 1, name, sizeof name),
                          atomic_load(&st->err_by_rv[i]));
            first = 0;
        }
        n += snprintf(buf + n, sizeof buf - (size_t)n, "}}");
    }
    n += snprintf(buf + n, sizeof buf - (size_t)n, "}}\n");
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd >= 0) {
        fchmod(fd, 0644);
        ssize_t w = write(fd, buf, strlen(buf));
        close(fd);
        if (w == (ssize_t)strlen(buf))
            rename(tmp, path);
        else
            unlink(tmp);
    }
    pthread_mutex_unlock(&flush_lock);
}
