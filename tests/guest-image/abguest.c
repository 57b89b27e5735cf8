/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * abguest: the guest agent of the test image. Reads one command per line from the
 * virtio console (default /dev/hvc0, "-" for stdin/stdout) and answers one line,
 * "ok ..." or "err ...". The commands are listed in tests/guest-image/README.md.
 *
 * Memory is held by forked workers with oom_score_adj 1000 while the agent itself runs
 * with -1000, so the guest's OOM killer picks a worker and the agent keeps answering.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <linux/futex.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define MAX_WORKERS 64
#define NAME_LEN 32
#define LINE_MAX_LEN 1024
#define REPLY_MAX_LEN 4096
#define CHUNK_SIZE ((size_t) 1 << 20)
#define CHUNK_RECORDS (CHUNK_SIZE / sizeof(uint64_t))
/* Address space an ebizzy worker reserves for its chunks (nothing is allocated until used). */
#define EBIZZY_MAX_CHUNKS 16384
#define HUGE_PAGE ((size_t) 2 << 20)
#define USEC_PER_SEC UINT64_C(1000000)
#define MAX(a, b) ((a) > (b) ? (a) : (b))

enum worker_mode {
        MODE_HOLD,
        MODE_THRASH,
        MODE_EBIZZY,
};

struct worker {
        char name[NAME_LEN];
        pid_t pid;
        enum worker_mode mode;
        bool used;
        bool alive;
};

/* An ebizzy worker's run: asked for by the agent, done by the worker, in memory they share. */
struct ebizzy_stats {
        uint64_t chunks, seconds; /* the run asked for */
        uint32_t generation;      /* the agent bumps it (a futex) to start a run */
        uint32_t done;            /* the run is over: the worker waits for the next one */
        uint64_t records;
        uint64_t fill_usec;       /* how long resizing the working set took; 0 until then */
        uint64_t elapsed_usec;    /* since the run's start, at the last record */
};

static struct worker workers[MAX_WORKERS];
/* MAX_WORKERS entries, one per worker slot, mapped shared before the first ebizzy fork. */
static struct ebizzy_stats *ebizzy_stats;
static int in_fd = -1, out_fd = -1;

static int write_all(int fd, const char *buf, size_t len) {
        while (len > 0) {
                ssize_t n = write(fd, buf, len);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                buf += n;
                len -= (size_t) n;
        }
        return 0;
}

static void reply(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void reply(const char *fmt, ...) {
        char buf[REPLY_MAX_LEN];
        va_list ap;
        int n;

        va_start(ap, fmt);
        n = vsnprintf(buf, sizeof(buf) - 1, fmt, ap);
        va_end(ap);
        if (n < 0)
                n = 0;
        if ((size_t) n > sizeof(buf) - 2)
                n = sizeof(buf) - 2;
        buf[n++] = '\n';
        /* The console may have no reader; a lost reply must not stop the agent. */
        (void) write_all(out_fd, buf, (size_t) n);
        /* Mirror on stderr (the serial console log) for post-mortems. */
        (void) write_all(STDERR_FILENO, "abguest: < ", 11);
        (void) write_all(STDERR_FILENO, buf, (size_t) n);
}

static int set_oom_score_adj(int value) {
        char buf[16];
        int fd, r, n;

        fd = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        n = snprintf(buf, sizeof(buf), "%d\n", value);
        r = write_all(fd, buf, (size_t) n);
        close(fd);
        return r;
}

/* Reads a small /proc file whole into buf (NUL-terminated). */
static int read_file(const char *path, char *buf, size_t size) {
        size_t len = 0;
        int fd;

        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        while (len < size - 1) {
                ssize_t n = read(fd, buf + len, size - 1 - len);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        n = -errno;
                        close(fd);
                        return (int) n;
                }
                if (n == 0)
                        break;
                len += (size_t) n;
        }
        close(fd);
        buf[len] = '\0';
        return 0;
}

/* Finds "KEY<sep>VALUE" at the start of a line; KEY must match whole. */
static int lookup_u64(const char *text, const char *key, char sep, uint64_t *ret) {
        size_t klen = strlen(key);

        for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
                char *end;
                unsigned long long v;

                if (strncmp(p, key, klen) != 0 || p[klen] != sep)
                        continue;
                errno = 0;
                v = strtoull(p + klen + 1, &end, 10);
                if (errno != 0 || end == p + klen + 1)
                        return -EINVAL;
                *ret = v;
                return 0;
        }
        return -ENOENT;
}

static int meminfo_kb(const char *key, uint64_t *ret) {
        static char buf[8192];
        int r;

        r = read_file("/proc/meminfo", buf, sizeof(buf));
        if (r < 0)
                return r;
        return lookup_u64(buf, key, ':', ret);
}

static void reap_workers(void) {
        for (size_t i = 0; i < MAX_WORKERS; i++)
                if (workers[i].alive && waitpid(workers[i].pid, NULL, WNOHANG) == workers[i].pid)
                        workers[i].alive = false;
}

static struct worker *find_worker(const char *name) {
        for (size_t i = 0; i < MAX_WORKERS; i++)
                if (workers[i].used && strcmp(workers[i].name, name) == 0)
                        return &workers[i];
        return NULL;
}

static struct worker *new_worker_slot(const char *name) {
        struct worker *w = find_worker(name);

        /* A dead worker's name can be reused. */
        if (w)
                return w->alive ? NULL : w;
        for (size_t i = 0; i < MAX_WORKERS; i++)
                if (!workers[i].used)
                        return &workers[i];
        for (size_t i = 0; i < MAX_WORKERS; i++)
                if (!workers[i].alive)
                        return &workers[i];
        return NULL;
}

static uint64_t now_usec(void) {
        struct timespec ts;

        (void) clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * USEC_PER_SEC + (uint64_t) ts.tv_nsec / 1000;
}

static uint64_t xorshift(uint64_t *x) {
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        return *x;
}

/* In a forked worker: dies with the agent, leaves the console alone, is the OOM killer's pick. */
static void worker_init(void) {
        /* Memory held for a dead agent would be a leak nobody can free. */
        (void) prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (in_fd > STDERR_FILENO)
                close(in_fd);
        (void) set_oom_score_adj(1000);
}

/* Writes to every page so that the guest really backs it with RAM. */
static void touch_pages(volatile char *p, size_t size, size_t page) {
        for (size_t off = 0; off < size; off += page)
                p[off] = (char) (off / page + 1);
}

/* Child side: map and touch, tell the parent through notify_fd, then hold or thrash. */
static _Noreturn void worker_main(enum worker_mode mode, size_t size, int notify_fd) {
        size_t page = (size_t) sysconf(_SC_PAGESIZE), pages;
        volatile char *p;
        uint64_t x = 0x9e3779b97f4a7c15ULL ^ (uint64_t) getpid();

        /* MAP_NORESERVE: past the guest's RAM the OOM killer answers, not mmap(). */
        p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (p == MAP_FAILED)
                _exit(2);
        touch_pages(p, size, page);
        if (write_all(notify_fd, "t", 1) < 0)
                _exit(3);
        close(notify_fd);

        if (mode == MODE_HOLD)
                for (;;)
                        pause();

        /* Niced so that the agent stays responsive on a single vCPU. */
        (void) setpriority(PRIO_PROCESS, 0, 10);
        pages = size / page;
        for (;;)
                p[(xorshift(&x) % pages) * page] += 1;
}

/*
 * Forks a child that maps and touches size bytes, and waits until it reports the memory
 * touched (returns 0) or dies (-ENOMEM when SIGKILLed, i.e. by the OOM killer, else
 * -EIO). once: the child frees the memory and exits after touching it; otherwise it
 * stays as a worker. *ret_pid is the child's pid whenever the fork succeeded.
 */
static int spawn_toucher(enum worker_mode mode, size_t size, bool once, pid_t *ret_pid) {
        int pfd[2], status;
        pid_t pid;
        ssize_t n;
        char c;

        if (pipe2(pfd, O_CLOEXEC) < 0)
                return -errno;
        pid = fork();
        if (pid < 0) {
                int r = -errno;

                close(pfd[0]);
                close(pfd[1]);
                return r;
        }
        if (pid == 0) {
                worker_init();
                close(pfd[0]);
                if (once) {
                        void *p;

                        p = mmap(NULL, size, PROT_READ | PROT_WRITE,
                                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
                        if (p == MAP_FAILED)
                                _exit(2);
                        touch_pages(p, size, (size_t) sysconf(_SC_PAGESIZE));
                        _exit(write_all(pfd[1], "t", 1) < 0 ? 3 : 0);
                }
                worker_main(mode, size, pfd[1]);
        }
        *ret_pid = pid;
        close(pfd[1]);
        do
                n = read(pfd[0], &c, 1);
        while (n < 0 && errno == EINTR);
        close(pfd[0]);

        if (!once && n == 1)
                return 0;
        if (waitpid(pid, &status, 0) != pid)
                return -errno;
        if (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
                return -ENOMEM;
        if (n != 1 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
                return -EIO;
        return 0;
}

static int parse_uint(const char *s, unsigned long max, unsigned long *ret) {
        char *end;
        unsigned long v;

        if (!s)
                return -EINVAL;
        errno = 0;
        v = strtoul(s, &end, 10);
        if (errno != 0 || *end != '\0' || end == s || v == 0 || v > max)
                return -EINVAL;
        *ret = v;
        return 0;
}

static int parse_mb(const char *s, size_t *ret) {
        unsigned long v;
        int r;

        r = parse_uint(s, SIZE_MAX >> 20, &v);
        if (r < 0)
                return r;
        *ret = (size_t) v << 20;
        return 0;
}

static void cmd_alloc(enum worker_mode mode, char *name, char *mb) {
        struct worker *w;
        pid_t pid = 0;
        size_t size;
        int r;

        if (!name || strlen(name) >= NAME_LEN || parse_mb(mb, &size) < 0)
                return reply("err usage: %s NAME MB", mode == MODE_HOLD ? "alloc" : "thrash");
        reap_workers();
        w = new_worker_slot(name);
        if (!w)
                return reply("err worker %s exists or too many workers", name);

        r = spawn_toucher(mode, size, false, &pid);
        if (pid > 0) {
                /* A worker that died while touching stays listed, dead. */
                snprintf(w->name, sizeof(w->name), "%s", name);
                w->pid = pid;
                w->mode = mode;
                w->used = true;
                w->alive = r == 0;
        }
        if (r == -ENOMEM)
                return reply("err oom");
        if (r < 0)
                return reply("err worker failed: %s", strerror(-r));
        reply("ok pid %d", (int) pid);
}

static int record_cmp(const void *a, const void *b) {
        uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;

        return (x > y) - (x < y);
}

static void futex_wait(uint32_t *addr, uint32_t val) {
        (void) syscall(SYS_futex, addr, FUTEX_WAIT, val, NULL, NULL, 0);
}

static void futex_wake(uint32_t *addr) {
        (void) syscall(SYS_futex, addr, FUTEX_WAKE, INT32_MAX, NULL, NULL, 0);
}

/*
 * The loop of the ebizzy benchmark (Debian has no package of it), run after run: a run resizes the
 * working set to 'chunks' chunks of 1 MiB filled with sorted records, then for 'seconds' picks a chunk
 * at random, copies it, looks a random record up in the copy by binary search and writes it back to
 * the chunk; that is one record. As in ebizzy a run lasts 'seconds' after the filling, so slow memory
 * shows in the elapsed time. Unlike ebizzy, whose runs are processes of their own, a worker keeps its
 * chunks from one run to the next: a smaller run frees the chunks beyond its size (as the guest
 * frees an exiting ebizzy's memory), a bigger one fills only the new ones. The memory the host sees
 * is the same; what is saved is refilling all of it, which under nested TCG (page zeroing at a few
 * MiB/s) would take most of a run. The copy buffer is reused rather than allocated per record, and new
 * chunks are filled by copying the first one, faster under TCG than storing each record.
 */
static _Noreturn void ebizzy_main(struct ebizzy_stats *st) {
        uint64_t x = 0x9e3779b97f4a7c15ULL ^ (uint64_t) getpid(), *mem, *copy;
        uint32_t generation = 0;
        size_t have = 0;
        char *base;

        (void) setpriority(PRIO_PROCESS, 0, 10);
        /* 2 MiB aligned, so that the chunks are faulted in as huge pages when THP is on. */
        base = mmap(NULL, EBIZZY_MAX_CHUNKS * CHUNK_SIZE + HUGE_PAGE, PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        copy = mmap(NULL, CHUNK_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (base == MAP_FAILED || copy == MAP_FAILED)
                _exit(2);
        mem = (uint64_t *) (((uintptr_t) base + HUGE_PAGE - 1) & ~(uintptr_t) (HUGE_PAGE - 1));

        for (;;) {
                uint64_t start, deadline, records = 0;
                size_t chunks;

                while (__atomic_load_n(&st->generation, __ATOMIC_ACQUIRE) == generation)
                        futex_wait(&st->generation, generation);
                generation = __atomic_load_n(&st->generation, __ATOMIC_ACQUIRE);
                chunks = st->chunks;
                start = now_usec();

                if (chunks < have)
                        (void) madvise(mem + chunks * CHUNK_RECORDS, (have - chunks) * CHUNK_SIZE, MADV_DONTNEED);
                if (have == 0)
                        for (size_t j = 0; j < CHUNK_RECORDS; j++)
                                mem[j] = j;
                for (size_t c = MAX(have, (size_t) 1); c < chunks; c++)
                        memcpy(mem + c * CHUNK_RECORDS, mem, CHUNK_SIZE);
                have = chunks;
                deadline = now_usec() + st->seconds * USEC_PER_SEC;
                __atomic_store_n(&st->fill_usec, (now_usec() - start) ?: 1, __ATOMIC_RELAXED);

                while (now_usec() < deadline) {
                        uint64_t *chunk = mem + xorshift(&x) % chunks * CHUNK_RECORDS;
                        uint64_t key = xorshift(&x) % CHUNK_RECORDS;
                        const uint64_t *found;

                        memcpy(copy, chunk, CHUNK_SIZE);
                        found = bsearch(&key, copy, CHUNK_RECORDS, sizeof(uint64_t), record_cmp);
                        if (!found)
                                _exit(4); /* memory corruption */
                        chunk[key] = *found;
                        __atomic_store_n(&st->records, ++records, __ATOMIC_RELAXED);
                        __atomic_store_n(&st->elapsed_usec, now_usec() - start, __ATOMIC_RELAXED);
                }
                __atomic_store_n(&st->done, 1, __ATOMIC_RELEASE);
        }
}

/* Starts a run: of the worker's own when it waits for one, else of a new worker. */
static void cmd_ebizzy(char *name, char *chunks_s, char *seconds_s) {
        unsigned long chunks, seconds;
        struct ebizzy_stats *st;
        struct worker *w;
        pid_t pid;

        if (!name || strlen(name) >= NAME_LEN || parse_uint(chunks_s, EBIZZY_MAX_CHUNKS, &chunks) < 0 ||
            parse_uint(seconds_s, 86400, &seconds) < 0)
                return reply("err usage: ebizzy NAME CHUNKS SECONDS (CHUNKS 1-%d)", EBIZZY_MAX_CHUNKS);
        reap_workers();
        w = find_worker(name);
        if (w && w->alive && w->mode == MODE_EBIZZY) {
                st = &ebizzy_stats[w - workers];
                if (!__atomic_load_n(&st->done, __ATOMIC_ACQUIRE))
                        return reply("err %s is running", name);
                st->chunks = chunks;
                st->seconds = seconds;
                st->records = st->fill_usec = st->elapsed_usec = 0;
                st->done = 0;
                __atomic_add_fetch(&st->generation, 1, __ATOMIC_RELEASE);
                futex_wake(&st->generation);
                return reply("ok pid %d", (int) w->pid);
        }

        w = new_worker_slot(name);
        if (!w)
                return reply("err worker %s exists or too many workers", name);
        st = &ebizzy_stats[w - workers];
        *st = (struct ebizzy_stats) {
                .chunks = chunks,
                .seconds = seconds,
                .generation = 1,
        };
        pid = fork();
        if (pid < 0)
                return reply("err fork: %s", strerror(errno));
        if (pid == 0) {
                worker_init();
                ebizzy_main(st);
        }
        *w = (struct worker) {
                .pid = pid,
                .mode = MODE_EBIZZY,
                .used = true,
                .alive = true,
        };
        snprintf(w->name, sizeof(w->name), "%s", name);
        reply("ok pid %d", (int) pid);
}

static void cmd_records(char *name) {
        const struct ebizzy_stats *st;
        struct worker *w;
        uint32_t done;

        if (!name)
                return reply("err usage: records NAME");
        reap_workers();
        w = find_worker(name);
        if (!w || w->mode != MODE_EBIZZY)
                return reply("err no ebizzy worker %s", name);
        st = &ebizzy_stats[w - workers];
        done = __atomic_load_n(&st->done, __ATOMIC_ACQUIRE);
        reply("ok records=%llu fill_ms=%llu elapsed_ms=%llu running=%d done=%d",
              (unsigned long long) __atomic_load_n(&st->records, __ATOMIC_RELAXED),
              /* Both rounded up: fill_ms 0 means "not filled yet", however fast the fill. */
              (unsigned long long) (__atomic_load_n(&st->fill_usec, __ATOMIC_RELAXED) + 999) / 1000,
              (unsigned long long) (__atomic_load_n(&st->elapsed_usec, __ATOMIC_RELAXED) + 999) / 1000,
              w->alive && !done, done);
}

static void cmd_free(char *name) {
        struct worker *w;

        if (!name)
                return reply("err usage: free NAME");
        w = find_worker(name);
        if (!w)
                return reply("err no worker %s", name);
        if (w->alive) {
                (void) kill(w->pid, SIGKILL);
                (void) waitpid(w->pid, NULL, 0);
        }
        *w = (struct worker) {};
        reply("ok");
}

static void cmd_prefault(char *pct_s) {
        uint64_t avail_kb;
        unsigned long pct;
        pid_t pid = 0;
        size_t size;
        int r;

        if (!pct_s)
                return reply("err usage: prefault PCT");
        if (parse_uint(pct_s, 100, &pct) < 0)
                return reply("err usage: prefault PCT (1-100)");
        if (meminfo_kb("MemAvailable", &avail_kb) < 0)
                return reply("err cannot read MemAvailable");

        size = (size_t) (avail_kb * pct / 100) << 10;
        r = spawn_toucher(MODE_HOLD, size, true, &pid);
        if (r == -ENOMEM)
                return reply("err oom");
        if (r < 0)
                return reply("err prefault failed: %s", strerror(-r));
        reply("ok %zu", size >> 20);
}

/* Writes MB MiB to PATH from its start, through the guest's page cache, and fsyncs: disk I/O
 * for a virtio-blk disk (its writes go through the host's page cache with cache=writeback).
 * Answers when done: "ok MS", the milliseconds it took. */
static void cmd_write(const char *path, char *mb) {
        static char block[CHUNK_SIZE];
        uint64_t start = now_usec();
        size_t size;
        int fd, r = 0;

        if (!path || parse_mb(mb, &size) < 0)
                return reply("err usage: write PATH MB");
        memset(block, 0xab, sizeof(block));
        fd = open(path, O_WRONLY | O_CLOEXEC);
        if (fd < 0)
                return reply("err cannot open %s: %s", path, strerror(errno));
        for (size_t done = 0; done < size && r >= 0; done += sizeof(block))
                r = write_all(fd, block, sizeof(block));
        if (r >= 0 && fsync(fd) < 0)
                r = -errno;
        close(fd);
        if (r < 0)
                return reply("err cannot write %s: %s", path, strerror(-r));
        reply("ok %llu", (unsigned long long) ((now_usec() - start) / 1000));
}

static void cmd_meminfo(void) {
        uint64_t total, free_kb, avail;

        if (meminfo_kb("MemTotal", &total) < 0 ||
            meminfo_kb("MemFree", &free_kb) < 0 ||
            meminfo_kb("MemAvailable", &avail) < 0)
                return reply("err cannot read /proc/meminfo");
        reply("ok MemTotal=%llu MemFree=%llu MemAvailable=%llu",
              (unsigned long long) total, (unsigned long long) free_kb, (unsigned long long) avail);
}

static void cmd_vmstat(char **saveptr) {
        static char text[16384];
        char out[REPLY_MAX_LEN] = "ok";
        size_t len = 2;
        char *key;

        if (read_file("/proc/vmstat", text, sizeof(text)) < 0)
                return reply("err cannot read /proc/vmstat");
        while ((key = strtok_r(NULL, " \t", saveptr))) {
                uint64_t v;
                int n;

                if (lookup_u64(text, key, ' ', &v) < 0)
                        return reply("err unknown vmstat key %s", key);
                n = snprintf(out + len, sizeof(out) - len, " %s=%llu", key, (unsigned long long) v);
                if (n < 0 || (size_t) n >= sizeof(out) - len)
                        return reply("err too many keys");
                len += (size_t) n;
        }
        reply("%s", out);
}

static void cmd_pressure(const char *kind) {
        char buf[512], *line;

        kind = kind ?: "some";
        if (strcmp(kind, "some") != 0 && strcmp(kind, "full") != 0)
                return reply("err usage: pressure [some|full]");
        if (read_file("/proc/pressure/memory", buf, sizeof(buf)) < 0)
                return reply("err cannot read /proc/pressure/memory");
        for (line = buf; line; line = strchr(line, '\n'), line = line ? line + 1 : NULL)
                if (strncmp(line, kind, strlen(kind)) == 0 && line[strlen(kind)] == ' ') {
                        line[strcspn(line, "\n")] = '\0';
                        return reply("ok %s", line);
                }
        reply("err no %s line in /proc/pressure/memory", kind);
}

/* Transparent huge pages: the kernel turns them off on guests under 512 MiB, where the bench's
 * guests are; its workload faults its memory in 2 MiB at a time with them. */
static void cmd_thp(const char *mode) {
        static const char path[] = "/sys/kernel/mm/transparent_hugepage/enabled";
        int fd, r;

        if (!mode || (strcmp(mode, "always") != 0 && strcmp(mode, "madvise") != 0 && strcmp(mode, "never") != 0))
                return reply("err usage: thp always|madvise|never");
        fd = open(path, O_WRONLY | O_CLOEXEC);
        if (fd < 0)
                return reply("err cannot open %s: %s", path, strerror(errno));
        r = write_all(fd, mode, strlen(mode));
        close(fd);
        if (r < 0)
                return reply("err cannot write %s: %s", path, strerror(-r));
        reply("ok");
}

static void cmd_workers(void) {
        char out[REPLY_MAX_LEN] = "ok";
        size_t len = 2;

        reap_workers();
        for (size_t i = 0; i < MAX_WORKERS; i++) {
                int n;

                if (!workers[i].used)
                        continue;
                n = snprintf(out + len, sizeof(out) - len, " %s:%d:%s", workers[i].name,
                             (int) workers[i].pid, workers[i].alive ? "alive" : "dead");
                if (n < 0 || (size_t) n >= sizeof(out) - len)
                        break;
                len += (size_t) n;
        }
        reply("%s", out);
}

/* A guest lying about its balloon, as a malicious driver could: writes PAGES into the virtio-balloon
 * device's config.actual (QEMU then reports RAM - PAGES * 4 KiB as the balloon size, negative past
 * the RAM). Through the virtio PCI configuration access capability, a window in PCI config space
 * onto the device's BARs: sysfs lets root write config space whatever the kernel's devmem policy. */
#define PCI_CAP_ID_VNDR 0x09
#define VIRTIO_PCI_CAP_DEVICE_CFG 4
#define VIRTIO_PCI_CAP_PCI_CFG 5

static int balloon_config(char *ret, size_t size) {
        static const char dir[] = "/sys/bus/pci/devices";
        struct dirent *de;
        DIR *d = opendir(dir);
        int r = -ENODEV;

        if (!d)
                return -errno;
        while ((de = readdir(d))) {
                char path[512], id[32];

                if (de->d_name[0] == '.')
                        continue;
                snprintf(path, sizeof(path), "%s/%s/vendor", dir, de->d_name);
                if (read_file(path, id, sizeof(id)) < 0 || strncmp(id, "0x1af4", 6) != 0)
                        continue;
                snprintf(path, sizeof(path), "%s/%s/device", dir, de->d_name);
                /* Transitional and modern virtio-balloon. */
                if (read_file(path, id, sizeof(id)) < 0 || (strncmp(id, "0x1002", 6) != 0 && strncmp(id, "0x1045", 6) != 0))
                        continue;
                snprintf(ret, size, "%s/%s/config", dir, de->d_name);
                r = 0;
                break;
        }
        closedir(d);
        return r;
}

static void cmd_balloon_actual(const char *pages_s) {
        uint8_t cfg[256];
        char path[512];
        unsigned long long pages;
        int dev_bar = -1, window = -1, fd, r;
        uint32_t dev_off = 0;
        char *end;

        if (!pages_s || (errno = 0, pages = strtoull(pages_s, &end, 10), errno != 0 || *end || pages > UINT32_MAX))
                return reply("err usage: balloon-actual PAGES");
        r = balloon_config(path, sizeof(path));
        if (r < 0)
                return reply("err no virtio-balloon PCI device: %s", strerror(-r));
        fd = open(path, O_RDWR | O_CLOEXEC);
        if (fd < 0)
                return reply("err cannot open %s: %s", path, strerror(errno));
        if (pread(fd, cfg, sizeof(cfg), 0) != (ssize_t) sizeof(cfg)) {
                close(fd);
                return reply("err cannot read %s", path);
        }
        /* The capability list: status bit 4, first pointer at 0x34, each at most once. */
        for (unsigned p = (cfg[6] & 0x10) ? cfg[0x34] & ~3u : 0, n = 0; p >= 0x40 && p + 20 <= sizeof(cfg) && n < 48;
             p = cfg[p + 1] & ~3u, n++) {
                if (cfg[p] != PCI_CAP_ID_VNDR)
                        continue;
                if (cfg[p + 3] == VIRTIO_PCI_CAP_DEVICE_CFG) {
                        dev_bar = cfg[p + 4];
                        memcpy(&dev_off, cfg + p + 8, 4);
                        dev_off = le32toh(dev_off);
                } else if (cfg[p + 3] == VIRTIO_PCI_CAP_PCI_CFG)
                        window = (int) p;
        }
        if (dev_bar < 0 || window < 0) {
                close(fd);
                return reply("err no device or PCI configuration access capability");
        }

        /* struct virtio_pci_cfg_cap: bar at 4, offset at 8, length at 12, data at 16; config.actual
         * is the second le32 of struct virtio_balloon_config. */
        uint8_t bar = (uint8_t) dev_bar;
        uint32_t off = htole32(dev_off + 4), len = htole32(4), val = htole32((uint32_t) pages);
        if (pwrite(fd, &bar, 1, window + 4) != 1 || pwrite(fd, &off, 4, window + 8) != 4 ||
            pwrite(fd, &len, 4, window + 12) != 4 || pwrite(fd, &val, 4, window + 16) != 4) {
                r = -errno;
                close(fd);
                return reply("err cannot write %s: %s", path, strerror(-r));
        }
        close(fd);
        reply("ok");
}

/* The feature bits the virtio-balloon driver accepted, as the virtio core shows them in sysfs: one
 * '0'/'1' per bit from bit 0 (/sys/bus/virtio/devices/virtioN/features, device id 0x0005). */
static void cmd_balloon_features(void) {
        static const char dir[] = "/sys/bus/virtio/devices";
        struct dirent *de;
        DIR *d = opendir(dir);

        if (!d)
                return reply("err cannot open %s: %s", dir, strerror(errno));
        while ((de = readdir(d))) {
                char path[512], buf[128];

                if (de->d_name[0] == '.')
                        continue;
                snprintf(path, sizeof(path), "%s/%s/device", dir, de->d_name);
                if (read_file(path, buf, sizeof(buf)) < 0 || strncmp(buf, "0x0005", 6) != 0)
                        continue;
                snprintf(path, sizeof(path), "%s/%s/features", dir, de->d_name);
                closedir(d);
                if (read_file(path, buf, sizeof(buf)) < 0)
                        return reply("err cannot read %s", path);
                buf[strcspn(buf, "\n")] = 0;
                return reply("ok %s", buf);
        }
        closedir(d);
        reply("err no virtio-balloon device");
}

static void handle_line(char *line) {
        char *saveptr = NULL, *cmd, *a, *b;

        fprintf(stderr, "abguest: > %s\n", line);
        cmd = strtok_r(line, " \t", &saveptr);
        if (!cmd)
                return;
        if (strcmp(cmd, "vmstat") == 0)
                return cmd_vmstat(&saveptr);

        a = strtok_r(NULL, " \t", &saveptr);
        b = strtok_r(NULL, " \t", &saveptr);
        if (strcmp(cmd, "ping") == 0)
                reply("ok pong%s%s", a ? " " : "", a ?: "");
        else if (strcmp(cmd, "alloc") == 0)
                cmd_alloc(MODE_HOLD, a, b);
        else if (strcmp(cmd, "thrash") == 0)
                cmd_alloc(MODE_THRASH, a, b);
        else if (strcmp(cmd, "free") == 0)
                cmd_free(a);
        else if (strcmp(cmd, "prefault") == 0)
                cmd_prefault(a);
        else if (strcmp(cmd, "write") == 0)
                cmd_write(a, b);
        else if (strcmp(cmd, "meminfo") == 0)
                cmd_meminfo();
        else if (strcmp(cmd, "pressure") == 0)
                cmd_pressure(a);
        else if (strcmp(cmd, "ebizzy") == 0)
                cmd_ebizzy(a, b, strtok_r(NULL, " \t", &saveptr));
        else if (strcmp(cmd, "records") == 0)
                cmd_records(a);
        else if (strcmp(cmd, "thp") == 0)
                cmd_thp(a);
        else if (strcmp(cmd, "workers") == 0)
                cmd_workers();
        else if (strcmp(cmd, "balloon-actual") == 0)
                cmd_balloon_actual(a);
        else if (strcmp(cmd, "balloon-features") == 0)
                cmd_balloon_features();
        else
                reply("err unknown command %s", cmd);
}

static int open_console(const char *path) {
        struct termios t;

        if (strcmp(path, "-") == 0) {
                in_fd = STDIN_FILENO;
                out_fd = STDOUT_FILENO;
                return 0;
        }
        in_fd = out_fd = open(path, O_RDWR | O_NOCTTY | O_CLOEXEC);
        if (in_fd < 0)
                return -errno;
        /* Raw: no echo of the host's commands, no \n -> \r\n. */
        if (tcgetattr(in_fd, &t) == 0) {
                cfmakeraw(&t);
                if (tcsetattr(in_fd, TCSANOW, &t) < 0)
                        return -errno;
                (void) tcflush(in_fd, TCIFLUSH);
        }
        return 0;
}

int main(int argc, char *argv[]) {
        const char *path = argc > 1 ? argv[1] : "/dev/hvc0";
        char buf[LINE_MAX_LEN];
        size_t len = 0;
        int r;

        (void) signal(SIGPIPE, SIG_IGN);
        r = open_console(path);
        if (r < 0) {
                fprintf(stderr, "abguest: cannot open %s: %s\n", path, strerror(-r));
                return EXIT_FAILURE;
        }
        if (set_oom_score_adj(-1000) < 0)
                fprintf(stderr, "abguest: cannot set oom_score_adj: %m\n");
        ebizzy_stats = mmap(NULL, MAX_WORKERS * sizeof(struct ebizzy_stats), PROT_READ | PROT_WRITE,
                            MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (ebizzy_stats == MAP_FAILED) {
                fprintf(stderr, "abguest: cannot map the ebizzy statistics: %m\n");
                return EXIT_FAILURE;
        }
        reply("abguest ready");

        for (;;) {
                ssize_t n = read(in_fd, buf + len, sizeof(buf) - len);
                char *nl;

                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0) {
                        fprintf(stderr, "abguest: read: %m\n");
                        return EXIT_FAILURE;
                }
                if (n == 0) {
                        if (in_fd == STDIN_FILENO)
                                return EXIT_SUCCESS;
                        /* Host side hung up: wait for the next connection. */
                        sleep(1);
                        continue;
                }
                len += (size_t) n;
                while ((nl = memchr(buf, '\n', len))) {
                        size_t l = (size_t) (nl - buf);

                        *nl = '\0';
                        if (l > 0 && buf[l - 1] == '\r')
                                buf[l - 1] = '\0';
                        handle_line(buf);
                        len -= l + 1;
                        memmove(buf, nl + 1, len);
                }
                if (len == sizeof(buf)) {
                        reply("err line too long");
                        len = 0;
                }
        }
}
