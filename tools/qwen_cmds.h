/*
 * qwen_cmds.h - subcommands of the qwen CLI implemented outside qwen.c.
 * Each takes the subcommand's argv (argv[0] is its name) and returns the
 * process exit code: 0 success, 1 failure, 2 bad usage.
 */
#ifndef QWEN_CMDS_H
#define QWEN_CMDS_H

#include <time.h>

/* Seconds on the monotonic clock, for the commands' timings. */
static inline double
qwen_cli_now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double) ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* qwen tokenize -m MODEL (--text-file F | --text S) [--bench] */
int qwen_cmd_tokenize(int argc, char **argv);
/* qwen detokenize -m MODEL --ids 1,2,3 */
int qwen_cmd_detokenize(int argc, char **argv);
/* qwen template [-m MODEL] --messages F.json [--tools T.json] [--no-think]
 *               [--no-generation-prompt] */
int qwen_cmd_template(int argc, char **argv);
/* qwen grammar-bench -m MODEL [--steps N] [--json]: the per-token cost of
 * constrained sampling over a few real-world schemas */
int qwen_cmd_grammar_bench(int argc, char **argv);

#endif
