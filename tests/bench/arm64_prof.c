/*
 * arm64_prof.c - a qemu TCG plugin: the guest instructions executed per
 * translated block, for make bench-arm64-profile (tests/bench/
 * arm64_profile.py maps the blocks to the functions holding them). Where
 * ../shared/arm64/insn_count.c counts a run's instructions by class, this
 * says which code executed them.
 *
 * Build:  gcc -O2 -shared -fPIC -fvisibility=hidden -o arm64_prof.so arm64_prof.c
 * Use:    qemu-aarch64 -cpu CPU -plugin ./arm64_prof.so,out=FILE prog args
 *
 * Each translation of a block gets a counter that an inline TCG add bumps
 * each time the block runs (exact for one running guest thread, as
 * insn_count's inline mode: run the guest with one thread). At exit FILE
 * gets one line per block start address: "ADDR INSNS" in hex and decimal,
 * the instructions the block's executions added up to, summed over its
 * translations.
 *
 * Only the declarations this file needs are written here, matching the
 * ABI of qemu's include/qemu/qemu-plugin.h for API version 1 (Debian 12's
 * qemu-user 7.2), as insn_count.c does.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EXPORT __attribute__((visibility("default")))
typedef uint64_t qemu_plugin_id_t;
typedef struct {
    const char *target_name;
    struct { int min, cur; } version;
    bool system_emulation;
    union { struct { int smp_vcpus, max_vcpus; } system; };
} qemu_info_t;
struct qemu_plugin_tb;
enum qemu_plugin_op { QEMU_PLUGIN_INLINE_ADD_U64 };
typedef void (*qemu_plugin_udata_cb_t)(qemu_plugin_id_t id, void *userdata);
typedef void (*qemu_plugin_vcpu_tb_trans_cb_t)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);

void     qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id,
                                               qemu_plugin_vcpu_tb_trans_cb_t cb);
void     qemu_plugin_register_vcpu_tb_exec_inline(struct qemu_plugin_tb *tb,
                                                  enum qemu_plugin_op op, void *ptr,
                                                  uint64_t imm);
void     qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, qemu_plugin_udata_cb_t cb,
                                        void *userdata);
size_t   qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
uint64_t qemu_plugin_tb_vaddr(const struct qemu_plugin_tb *tb);

EXPORT int qemu_plugin_version = 1;

/* one translation of a block: bumped by n_insns each time it runs */
typedef struct block {
    uint64_t      vaddr;
    uint64_t      insns;
    struct block *next;
} block;

static block          *blocks;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static const char     *out_path;

static void
tb_trans(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    block *b = calloc(1, sizeof(*b));   /* lives as long as the block may run */

    (void) id;
    if (b == NULL) {
        return;
    }
    b->vaddr = qemu_plugin_tb_vaddr(tb);
    pthread_mutex_lock(&lock);
    b->next = blocks;
    blocks = b;
    pthread_mutex_unlock(&lock);
    qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &b->insns,
                                             qemu_plugin_tb_n_insns(tb));
}

static int
by_vaddr(const void *a, const void *b)
{
    uint64_t x = (*(block *const *) a)->vaddr, y = (*(block *const *) b)->vaddr;

    return x < y ? -1 : x > y;
}

static void
at_exit(qemu_plugin_id_t id, void *p)
{
    block **v, *b;
    size_t  n = 0, i;
    FILE   *f = out_path ? fopen(out_path, "w") : NULL;

    (void) id;
    (void) p;
    if (f == NULL) {
        f = stderr;
    }
    for (b = blocks; b != NULL; b = b->next) {
        n++;
    }
    v = malloc((n > 0 ? n : 1) * sizeof(*v));
    if (v == NULL) {
        fprintf(stderr, "arm64_prof: out of memory at exit\n");
        return;
    }
    for (i = 0, b = blocks; b != NULL; b = b->next) {
        v[i++] = b;
    }
    qsort(v, n, sizeof(*v), by_vaddr);
    for (i = 0; i < n; i++) {
        uint64_t sum = v[i]->insns;

        while (i + 1 < n && v[i + 1]->vaddr == v[i]->vaddr) {   /* retranslations */
            sum += v[++i]->insns;
        }
        if (sum > 0) {
            fprintf(f, "%" PRIx64 " %" PRIu64 "\n", v[i]->vaddr, sum);
        }
    }
    free(v);
    if (f != stderr) {
        fclose(f);
    }
}

EXPORT int
qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv)
{
    int k;

    for (k = 0; k < argc; k++) {
        if (strncmp(argv[k], "out=", 4) == 0) {
            out_path = argv[k] + 4;
        } else {
            fprintf(stderr, "arm64_prof: unknown option '%s'\n", argv[k]);
            return -1;
        }
    }
    (void) info;
    qemu_plugin_register_vcpu_tb_trans_cb(id, tb_trans);
    qemu_plugin_register_atexit_cb(id, at_exit, NULL);
    return 0;
}
