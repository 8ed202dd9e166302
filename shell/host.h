/* host.h - the hsmsh host: one Lua state with the standard libraries, the embedded
 * stdlib in package.preload, and protected calls that report errors in one line. */
#ifndef HSMSH_HOST_H
#define HSMSH_HOST_H

#include <lua.h>

/* Process-wide options set from the command line. */
extern int hsm_host_debug;   /* --debug: tracebacks on errors */
extern const char *hsm_progname;

/* A new state: standard libraries, hsm.core, the embedded stdlib and recipes. */
lua_State *hsm_host_new(void);

/* lua_pcall with a traceback handler (traceback shown only with --debug) and Ctrl-C
 * turned into a Lua error between Lua instructions (a running C_ call is never cut). */
int hsm_host_pcall(lua_State *L, int nargs, int nresults);

/* Prints the error on top of the stack as "hsmsh: <message>" on stderr and pops it. */
void hsm_host_report(lua_State *L);

/* Calls require("hsm.cli")[fn](args...) with argv[0..argc) as strings. Returns the
 * exit status the function returned (default 0), or 1 when it raised. */
int hsm_host_cli(lua_State *L, const char *fn, int argc, char **argv);

/* repl.c: the interactive loop; returns the process exit status. */
int hsm_repl(lua_State *L);

/* batch.c: "-e chunk", "FILE.lua args", "-" (stdin). Returns the exit status. */
int hsm_batch_chunk(lua_State *L, const char *chunk);
int hsm_batch_file(lua_State *L, const char *path, int argc, char **argv, int script_index);

#endif
