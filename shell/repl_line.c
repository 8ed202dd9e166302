/* repl_line.c - reading a line with readline in callback mode: our own signal handling, so
 * Ctrl-C at the prompt clears the line, Ctrl-Z suspends and a resize is seen. */
#include "repl.h"

/* ---------------------------------------------------------------------- signals */

static volatile sig_atomic_t got_int, got_winch, got_tstp, got_term, in_wait;

static void on_signal(int sig)
{
    if (sig == SIGINT)
        got_int = 1;
    else if (sig == SIGWINCH)
        got_winch = 1;
    else if (sig == SIGTSTP)
        got_tstp = 1; /* installed only while hsm_repl_read_line waits */
    else if (in_wait)
        got_term = sig; /* restore the terminal first (hsm_repl_read_line) */
    else {
        signal(sig, SIG_DFL);
        raise(sig);
    }
}

static const int caught[] = {SIGINT, SIGWINCH, SIGTERM, SIGHUP};
_Static_assert(sizeof caught / sizeof caught[0] == NCAUGHT, "NCAUGHT in repl.h");

void hsm_repl_signals_install(struct sigaction *saved)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < NCAUGHT; i++)
        sigaction(caught[i], &sa, &saved[i]);
}

void hsm_repl_signals_restore(const struct sigaction *saved)
{
    for (size_t i = 0; i < NCAUGHT; i++)
        sigaction(caught[i], &saved[i], NULL);
}

/* ------------------------------------------------------------------ reading lines */

static char *cb_line;
static int cb_done;

static void on_line(char *line)
{
    cb_line = line;
    cb_done = 1;
    if (rl_line_buffer) /* readline's copy of what was typed */
        explicit_bzero(rl_line_buffer, strlen(rl_line_buffer));
    rl_callback_handler_remove();
}

/* Ctrl-C at a prompt: drop what was typed and leave the line. */
static void cancel_line(void)
{
    rl_callback_sigcleanup();
    rl_free_line_state();
    rl_point = rl_end;
    rl_redisplay();
    if (rl_line_buffer)
        explicit_bzero(rl_line_buffer, (size_t)rl_end);
    rl_replace_line("", 0);
    fputs("^C\n", rl_outstream ? rl_outstream : stdout);
    rl_callback_handler_remove(); /* restores the terminal */
}

/* Ctrl-Z at a prompt: give the terminal back, stop, and on `fg` take it again with the
 * line as it was. */
static void suspend_line(const char *prompt)
{
    char *saved = rl_copy_text(0, rl_end);
    int point = rl_point;
    struct sigaction dfl, mine;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    rl_callback_handler_remove(); /* restores the terminal */
    fputc('\n', stdout);
    fflush(stdout);
    sigaction(SIGTSTP, &dfl, &mine);
    raise(SIGTSTP); /* stops here until SIGCONT */
    sigaction(SIGTSTP, &mine, NULL);
    rl_callback_handler_install(prompt, on_line);
    if (saved) {
        rl_insert_text(saved);
        rl_point = point <= rl_end ? point : rl_end;
        hsm_repl_wipe_free(saved);
    }
    rl_redisplay();
}

/* One line with readline: LINE_OK (*out malloc'd), LINE_EOF (Ctrl-D) or LINE_INTR (Ctrl-C). */
int hsm_repl_read_line(const char *prompt, char **out)
{
    sigset_t block, old;
    struct sigaction sa, old_tstp;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigemptyset(&block);
    for (size_t i = 0; i < NCAUGHT; i++)
        sigaddset(&block, caught[i]);
    sigaddset(&block, SIGTSTP);
    got_tstp = 0;
    sigaction(SIGTSTP, &sa, &old_tstp); /* Lua code runs with the default Ctrl-Z */
    *out = NULL;
    cb_line = NULL;
    cb_done = 0;
    got_int = 0; /* a Ctrl-C that came while Lua was finishing is not for this prompt */
    int rc = LINE_EOF;
    fflush(stdout);
    fflush(stderr);
    rl_callback_handler_install(prompt, on_line);
    while (!cb_done) {
        struct pollfd pfd = {.fd = fileno(rl_instream ? rl_instream : stdin), .events = POLLIN};
        int n = 0, err = 0;
        in_wait = 1;
        sigprocmask(SIG_BLOCK, &block, &old);
        if (!got_int && !got_winch && !got_tstp && !got_term) {
            n = ppoll(&pfd, 1, NULL, &old); /* signals are let in only while waiting */
            err = errno;
        }
        sigprocmask(SIG_SETMASK, &old, NULL);
        in_wait = 0;
        if (got_term) {
            int sig = got_term;
            rl_callback_handler_remove();
            fputc('\n', stdout);
            fflush(stdout);
            signal(sig, SIG_DFL);
            raise(sig);
        }
        if (got_tstp) {
            got_tstp = 0;
            suspend_line(prompt);
            got_winch = 1; /* the window may have changed meanwhile */
        }
        if (got_winch) {
            got_winch = 0;
            rl_resize_terminal();
        }
        if (got_int) {
            got_int = 0;
            cancel_line();
            rc = LINE_INTR;
            break;
        }
        if (n < 0 && err != EINTR) {
            rl_callback_handler_remove();
            break;
        }
        if (n > 0)
            rl_callback_read_char(); /* may call on_line */
    }
    sigaction(SIGTSTP, &old_tstp, NULL);
    *out = cb_line;
    return cb_line ? LINE_OK : rc;
}
