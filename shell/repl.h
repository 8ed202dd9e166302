/* repl.h - what the files of the REPL share (not an API: hsm_repl in host.h is):
 *   repl.c          the loop: read an entry, compile it as lua.c does, run it, show it
 *   repl_line.c     reading a line: readline in callback mode, signals
 *   repl_history.c  the history file and the secret predicate
 *   repl_complete.c Tab completion without running Lua code
 *   repl_print.c    the prompt, results and errors */
#ifndef HSMSH_REPL_H
#define HSMSH_REPL_H

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <readline/history.h>
#include <readline/readline.h>

#include <lauxlib.h>

#include "host.h"

#define PROMPT "hsmsh> "
#define PROMPT2 ">> "
#define CHUNKNAME "=stdin"
#define HISTORY_MAX 1000
#define INDEX_CHAIN_MAX 32 /* __index tables followed by completion */
#define NCAUGHT 4          /* the signals repl_line.c catches: INT, WINCH, TERM, HUP */

enum { LINE_OK, LINE_EOF, LINE_INTR };

struct repl {
    lua_State *L;
    char *history; /* the history file, or NULL when history is not saved */
    size_t history_entries; /* entries in the file as far as we know */
    char *prompt;           /* the last prompt from hsm.ui.prompt */
    int ui_error_reported;
};

/* repl.c */
int hsm_repl_is_blank(const char *s);
/* Frees a string that may hold something typed at the prompt, wiping it first. */
void hsm_repl_wipe_free(char *s);

/* repl_complete.c */
void hsm_repl_comp_clear(void);
void hsm_repl_readline_setup(lua_State *L);

/* repl_history.c */
/* Keeps an accepted entry: in memory and appended to the file (one write, O_APPEND, so
 * concurrent sessions interleave whole entries). Secret or blank entries are not kept. */
void hsm_repl_history_add(struct repl *r, const char *entry);
void hsm_repl_history_init(struct repl *r);
/* Reads the file, keeps its last HISTORY_MAX entries that carry no secret (rewriting the
 * file when it held more, or secrets), and with `load` puts them in readline's history. */
void hsm_repl_history_sync(struct repl *r, int load);
/* Whether a history entry may carry a secret: such an entry is never kept, neither in
 * the history file nor in readline's in-memory history. Case-insensitive, and broad on
 * purpose (a false positive only costs a history entry):
 *   - anywhere: "pin-value", "pin_value", "secret", "passphrase", "password", "component";
 *   - "pin" followed by optional blanks and "=" (pin=, pin =, so_pin = ...);
 *   - ':' or '.' then "login" as a whole word (s:login("1234"), s:login"1234", x.login(...));
 *   - "share" or "shares" as a whole word: letters on either side make another word
 *     ("shared", "timeshare" are innocent) unless it is a camelCase boundary ("keyShare");
 *     digits, '_' and punctuation are boundaries ("share1", "n_shares", "hsm.shares"). */
int hsm_repl_is_secret_entry(const char *s);

/* repl_line.c */
/* One line with readline: LINE_OK (*out malloc'd), LINE_EOF (Ctrl-D) or LINE_INTR (Ctrl-C). */
int hsm_repl_read_line(const char *prompt, char **out);
void hsm_repl_signals_install(struct sigaction *saved);
void hsm_repl_signals_restore(const struct sigaction *saved);

/* repl_print.c */
const char *hsm_repl_get_prompt(struct repl *r);
/* Shows the values above `base`: hsm.ui.show(...) when there is one, else l_print. */
void hsm_repl_print_results(struct repl *r, int base);
/* Reports the error on top of the stack. For an entry that looks like it carries a secret,
 * the parts of Lua's messages that quote the source ("near '...'", "(constant '...')")
 * are withheld. */
void hsm_repl_report(lua_State *L, int secret);

#endif
