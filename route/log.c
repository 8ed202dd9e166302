/* log.c - the module's log (HSMSH_ROUTE_LOG, default STATE.log): one line per event, with
 * time and process id. Never a PIN, never key material. The module writes nowhere else. */
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
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0666);
    if (fd < 0)
        return;
    struct stat st;
    /* Created by us: writable by the other users an application may run as. */
    if (fstat(fd, &st) == 0 && st.st_uid == geteuid() && (st.st_mode & 0777) != 0666 &&
        st.st_size == 0)
        fchmod(fd, 0666);
    ssize_t w = write(fd, line, len);
    (void)w;
    close(fd);
}
