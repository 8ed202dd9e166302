/* main.c - hsmsh's command line: global flags, then a REPL, a Lua chunk or file, or one
 * of the subcommands (run, resume, recipes, lab) handed to the stdlib's hsm.cli. */
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lauxlib.h>

#include "host.h"

static const char usage[] =
    "usage: hsmsh [--debug] [-e CHUNK]... [FILE.lua [ARGS...] | -]\n"
    "       hsmsh [--debug] run RECIPE[@VERSION] [name=value ...] [--dry-run] [--yes] [--json] [--journal FILE]\n"
    "       hsmsh resume JOURNAL [--json] [--yes]\n"
    "       hsmsh recipes [RECIPE]\n"
    "       hsmsh help [RECIPE]\n"
    "       hsmsh lab init [--dir DIR]\n"
    "\n"
    "With no arguments hsmsh starts an interactive REPL. Tokens are named by RFC 7512\n"
    "PKCS#11 URIs, e.g. 'pkcs11:token=blue?pin-source=file:/path/to/pin'.\n"
    "Options: --help, --version, --debug (tracebacks on errors).\n"
    "Exit codes: 0 ok, 1 error, 2 usage, 3 failed and rolled back, 4 rollback incomplete.\n";

/* PINs and key components live in this process's memory: never in a core dump. */
static void harden(void)
{
    struct rlimit none = {0, 0};
    setrlimit(RLIMIT_CORE, &none);
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    umask(077);
}

static int is_subcommand(const char *s)
{
    return strcmp(s, "run") == 0 || strcmp(s, "resume") == 0 || strcmp(s, "recipes") == 0 ||
           strcmp(s, "lab") == 0 || strcmp(s, "route") == 0 || strcmp(s, "help") == 0 ||
           strcmp(s, "complete") == 0; /* complete: for the bash completion, not listed */
}

int main(int argc, char **argv)
{
    harden();
    int i = 1;
    for (; i < argc; i++) {
        if (strcmp(argv[i], "--debug") == 0)
            hsm_host_debug = 1;
        else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            /* the commands as hsm.help lists them; the short usage if that cannot run */
            lua_State *L = hsm_host_new();
            int status = L ? hsm_host_cli(L, "help", 0, NULL) : 1;
            if (L)
                lua_close(L);
            if (status != 0)
                fputs(usage, stdout);
            return 0;
        } else if (strcmp(argv[i], "--version") == 0) {
            printf("hsmsh %s (%s)\n", HSMSH_VERSION, LUA_RELEASE);
            return 0;
        } else
            break;
    }

    lua_State *L = hsm_host_new();
    if (L == NULL) {
        fprintf(stderr, "hsmsh: cannot create the Lua state (out of memory)\n");
        return 1;
    }
    int status = 0;
    if (i < argc && is_subcommand(argv[i])) {
        status = hsm_host_cli(L, argv[i], argc - i - 1, argv + i + 1);
    } else if (i == argc) {
        status = isatty(STDIN_FILENO) ? hsm_repl(L) : hsm_batch_file(L, NULL, argc, argv, argc);
    } else {
        for (; i < argc && strcmp(argv[i], "-e") == 0; i += 2) {
            if (i + 1 >= argc) {
                fprintf(stderr, "hsmsh: -e needs a Lua chunk\n%s", usage);
                lua_close(L);
                return 2;
            }
            if ((status = hsm_batch_chunk(L, argv[i + 1])) != 0)
                break;
        }
        if (status == 0 && i < argc) {
            if (argv[i][0] == '-' && argv[i][1] != '\0') {
                fprintf(stderr, "hsmsh: unknown option '%s'\n%s", argv[i], usage);
                status = 2;
            } else
                status = hsm_batch_file(L, strcmp(argv[i], "-") == 0 ? NULL : argv[i], argc, argv, i);
        }
    }
    lua_close(L);
    return status;
}
