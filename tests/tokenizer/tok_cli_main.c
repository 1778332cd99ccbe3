/*
 * tok_cli_main.c - a stand-in main for the tokenizer subcommands, so they
 * can be tested before tools/qwen.c (the real CLI) exists. Built by
 * mk/tokenizer.mk with -DQWEN_TOK_CMDS_NO_MODEL: -m takes a tokenizer
 * directory only.
 */
#include <stdio.h>
#include <string.h>

#include "qwen_cmds.h"

int
main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "tokenize") == 0)
        return qwen_cmd_tokenize(argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "detokenize") == 0)
        return qwen_cmd_detokenize(argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "template") == 0)
        return qwen_cmd_template(argc - 1, argv + 1);
    fprintf(stderr, "usage: %s tokenize|detokenize|template ...\n", argv[0]);
    return 2;
}
