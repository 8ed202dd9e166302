/* log.c - the module's log (HSMSH_ROUTE_LOG, default STATE.log): one line per event, with
 * time and process id. Never a PIN, never key material. The module writes nowhere else. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "route.h"

const char *route_rv_name(CK_RV rv, char *buf, size_t len)
{
    return hsm_name_or_hex(HSM_NS_CKR, rv, buf, len);
}

void route_log(const char *fmt, ...)
{
    char line[1024];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    int n = (int)strftime(line, sizeof line, "%Y-%m-%dT%H:%M:%SZ", &tm);
    n += snprintf(line + n, sizeof line - (size_t)n, " route[%ld] ", (long)getpid());
    va_list ap;
    va_start(ap, fmt);
    if (n < (int)sizeof line)
        vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);
    size_t len = strnlen(line, sizeof line - 2);
    line[len++] = '\n';
    const char *path = route_g.log_path[0] ? route_g.log_path : NULL;
    if (!path)
        return;
    int fd = route_open_shared(path);
    if (fd < 0)
        return;
    ssize_t w = write(fd, line, len);
    (void)w;
    close(fd);
}

/* A file for appending that applications of other users in its group also write (the birth
 * journal, the log): made 0660 when this call creates it, whatever the umask; an existing
 * file keeps its mode (`hsmsh route init ... group=GROUP` makes them so for a group). */
int route_open_shared(const char *path)
{
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_EXCL | O_CLOEXEC, 0660);
    if (fd >= 0) {
        fchmod(fd, 0660);
        return fd;
    }
    if (errno != EEXIST)
        return -1;
    return open(path, O_WRONLY | O_APPEND | O_CLOEXEC);
}
