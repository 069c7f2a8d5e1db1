/* compiler/build.c — building generated C with the system C compiler, through
 * an on-disk cache shared by `mlc run`, `mlc train` (executables) and the CPU
 * JIT of libmlc (shared objects).
 *
 * Cache layout (docs/jit.md): BASE/<16 hex digits>/ holds the sources, the
 * result (`run` or `model.so`) and `sum`, the result's size and checksum.
 * BASE is $MLC_CACHE_DIR, else $XDG_CACHE_HOME/mlc, else ~/.cache/mlc.  The
 * key hashes every source, the compiler's identity (its resolved path, size
 * and modification time), the CPU (model and feature flags), the flags, the
 * runtime (mlcrt.h and libmlcrt.a, bytes) and the embedded weights.  An
 * entry is built in BASE/tmp.XXXXXX and renamed into place, so concurrent
 * processes never see half an entry; one whose result does not match its
 * `sum` is moved aside and rebuilt.
 */
#include "mlcc.h"
#include "mlcrt.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

/* "PATH: error: MESSAGE" (no line: the whole file). */
void diag_file_error(Diag *d, const char *path, const char *fmt, ...) {
  Source s = {.path = path, .text = "", .len = 0};
  Loc loc = {.src = &s, .line = 0, .col = 0};
  va_list ap;
  va_start(ap, fmt);
  diag_verror(d, loc, fmt, ap);
  va_end(ap);
}

bool build_write_file(Diag *d, const char *path, const char *text) {
  FILE *f = fopen(path, "wb");
  if (!f) {
    diag_file_error(d, path, "cannot write: %s", strerror(errno));
    return false;
  }
  size_t n = strlen(text);
  bool ok = fwrite(text, 1, n, f) == n;
  ok &= fclose(f) == 0;
  if (!ok) diag_file_error(d, path, "cannot write: %s", strerror(errno));
  return ok;
}

/* 64-bit words mixed by multiply and rotate: fast enough to checksum a
 * cached shared object with embedded weights on every start, and good
 * enough to notice corruption (not an adversary). */
uint64_t build_hash(uint64_t h, const void *p, size_t n) {
  const unsigned char *s = p;
  for (; n >= 8; s += 8, n -= 8) {
    uint64_t w;
    memcpy(&w, s, 8);
    h = ((h << 29 | h >> 35) ^ w) * 0x9e3779b97f4a7c15ULL;
  }
  uint64_t w = n;
  for (size_t i = 0; i < n; i++) w = w << 8 | s[i];
  h = ((h << 29 | h >> 35) ^ w) * 0x9e3779b97f4a7c15ULL;
  return h ^ h >> 31;
}

uint64_t build_hash_str(uint64_t h, const char *s) {
  return build_hash(h, s ? s : "", s ? strlen(s) + 1 : 1);
}

/* Hashes a file's bytes into *h; false if it cannot be read. */
static bool build_hash_file_size(const char *path, uint64_t *h, size_t *size) {
  FILE *f = fopen(path, "rb");
  if (!f) return false;
  static const size_t chunk = 1 << 20; /* a multiple of 8: chunks hash as one stream */
  char *buf = malloc(chunk);
  if (!buf) {
    fclose(f);
    return false;
  }
  size_t n, total = 0;
  while ((n = fread(buf, 1, chunk, f)) > 0) {
    *h = build_hash(*h, buf, n);
    total += n;
  }
  bool ok = !ferror(f);
  fclose(f);
  free(buf);
  if (size) *size = total;
  return ok;
}

bool build_hash_file(const char *path, uint64_t *h) {
  return build_hash_file_size(path, h, NULL);
}

const char *build_cache_dir(Arena *A) {
  const char *base = getenv("MLC_CACHE_DIR");
  if (base && *base) return base;
  const char *x = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
  return x && *x         ? arena_printf(A, "%s/mlc", x)
         : home && *home ? arena_printf(A, "%s/.cache/mlc", home)
                         : "/tmp/mlc-cache";
}

int build_mkdirs(const char *path) {
  char tmp[PATH_MAX];
  snprintf(tmp, sizeof tmp, "%s", path);
  for (char *p = tmp + 1; *p; p++)
    if (*p == '/') {
      *p = 0;
      mkdir(tmp, 0755);
      *p = '/';
    }
  return mkdir(tmp, 0755) == 0 || errno == EEXIST ? 0 : -1;
}

static bool exists(const char *p) {
  return access(p, F_OK) == 0;
}

/* The directory of the running program (for an installed mlc: PREFIX/bin). */
static const char *exe_dir(Arena *A) {
  char exe[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  exe[n > 0 ? n : 0] = 0;
  char *slash = strrchr(exe, '/');
  if (slash) *slash = 0;
  return arena_strdup(A, exe);
}

/* Where the runtime header and library are: $MLC_RUNTIME_INCLUDE /
 * $MLC_RUNTIME_LIB; else beside the running program (BIN/../include and
 * BIN/../lib/libmlcrt.a, as `cmake --install` lays them out, wherever the
 * prefix was moved to); else the install prefix mlc was configured with;
 * else the build tree libmlc was built in. */
void build_runtime_paths(Arena *A, const char **inc, const char **lib) {
  *inc = getenv("MLC_RUNTIME_INCLUDE");
  *lib = getenv("MLC_RUNTIME_LIB");
  if (*inc && *lib) return;
  const char *dir = exe_dir(A);
  const char *cand[][2] = {{arena_printf(A, "%s/../" MLC_INSTALL_INCLUDEDIR, dir),
                            arena_printf(A, "%s/../" MLC_INSTALL_LIBDIR "/libmlcrt.a", dir)},
                           {MLC_INSTALL_PREFIX "/" MLC_INSTALL_INCLUDEDIR,
                            MLC_INSTALL_PREFIX "/" MLC_INSTALL_LIBDIR "/libmlcrt.a"},
                           {MLC_BUILD_RUNTIME_INCLUDE, MLC_BUILD_RUNTIME_LIB}};
  int pick = 0;
  for (int i = 0; i < 3; i++)
    if (exists(arena_printf(A, "%s/mlcrt.h", cand[i][0])) && exists(cand[i][1])) {
      pick = i;
      break;
    }
  if (!*inc) *inc = cand[pick][0];
  if (!*lib) *lib = cand[pick][1];
}

/* The compiler's identity for the cache key: the file $CC (or cc) resolves
 * to through $PATH and symlinks, its size and modification time, so an
 * upgraded compiler builds afresh. */
static uint64_t compiler_identity(Arena *A, const char *cc, uint64_t h) {
  h = build_hash_str(h, cc);
  const char *found = NULL;
  if (strchr(cc, '/'))
    found = cc;
  else {
    const char *path = getenv("PATH");
    char *copy = arena_strdup(A, path ? path : "/usr/bin:/bin");
    for (char *dir = strtok(copy, ":"); dir && !found; dir = strtok(NULL, ":")) {
      const char *p = arena_printf(A, "%s/%s", *dir ? dir : ".", cc);
      if (access(p, X_OK) == 0) found = p;
    }
  }
  char real[PATH_MAX];
  struct stat st;
  if (found && realpath(found, real) && stat(real, &st) == 0) {
    h = build_hash_str(h, real);
    int64_t id[3] = {(int64_t)st.st_size, (int64_t)st.st_mtim.tv_sec, (int64_t)st.st_mtim.tv_nsec};
    h = build_hash(h, id, sizeof id);
  }
  return h;
}

/* The CPU's identity for the cache key (-march=native builds for it): its
 * model name and feature flags as /proc/cpuinfo gives them for the first
 * processor, so that a cache shared between machines (a network home) never
 * hands one machine's code to another; where the file is missing, nothing. */
static uint64_t cpu_identity(uint64_t h) {
  FILE *f = fopen("/proc/cpuinfo", "r");
  if (!f) return build_hash_str(h, "no /proc/cpuinfo");
  char line[8192];
  int seen = 0;
  while (seen < 2 && fgets(line, sizeof line, f))
    if (!strncmp(line, "model name", 10) || !strncmp(line, "flags", 5)) {
      h = build_hash_str(h, line);
      seen++;
    }
  fclose(f);
  return h;
}

/* Runs argv with stdout and stderr into log (a file path) and waits.  Returns
 * the exit status, or -1 (message in d) when it cannot run. */
static int run_logged(char **argv, const char *log, Diag *d) {
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  pid_t pid;
  int rc = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) {
    diag_error(d, (Loc){0}, "cannot run the C compiler %s: %s (set $CC)", argv[0], strerror(rc));
    return -1;
  }
  int st;
  while (waitpid(pid, &st, 0) < 0)
    if (errno != EINTR) {
      diag_error(d, (Loc){0}, "cannot wait for the C compiler %s: %s", argv[0], strerror(errno));
      return -1;
    }
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
}

/* Removes a directory's plain files, then the directory. */
static void remove_tree(const char *dir) {
  DIR *dp = opendir(dir);
  if (dp) {
    char p[PATH_MAX];
    for (struct dirent *e; (e = readdir(dp));) {
      if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
      snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
      unlink(p);
    }
    closedir(dp);
  }
  rmdir(dir);
}

void build_evict(Arena *A, const char *entry) {
  /* rename first: another process sees the entry whole or not at all */
  char *aside = arena_printf(A, "%s.evict.%ld.%ld", entry, (long)getpid(), (long)clock());
  if (rename(entry, aside) == 0) remove_tree(aside);
}

/* The `sum` file of an entry: "SIZE HASH\n" of its result. */
static bool entry_ok(Arena *A, const char *entry, const char *out_name) {
  const char *out = arena_printf(A, "%s/%s", entry, out_name);
  FILE *f = fopen(arena_printf(A, "%s/sum", entry), "r");
  if (!f) return false;
  unsigned long long want_size, want_hash;
  bool ok = fscanf(f, "%llu %llx", &want_size, &want_hash) == 2;
  fclose(f);
  uint64_t h = BUILD_HASH_INIT;
  size_t size = 0;
  return ok && build_hash_file_size(out, &h, &size) && size == want_size && h == want_hash;
}

static bool write_sum(Diag *d, Arena *A, const char *dir, const char *out) {
  uint64_t h = BUILD_HASH_INIT;
  size_t size = 0;
  if (!build_hash_file_size(out, &h, &size)) {
    diag_file_error(d, out, "cannot read what the C compiler wrote: %s", strerror(errno));
    return false;
  }
  return build_write_file(d, arena_printf(A, "%s/sum", dir),
                          arena_printf(A, "%zu %016llx\n", size, (unsigned long long)h));
}

/* The first lines of the compiler's log, for the message. */
static const char *log_head(Arena *A, const char *log) {
  FILE *f = fopen(log, "r");
  if (!f) return "";
  char buf[2048];
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = 0;
  return arena_strdup(A, buf);
}

const char *build_cached(Arena *A, const BuildSpec *s, Diag *d, bool *was_cached) {
  if (was_cached) *was_cached = false;
  const char *inc, *lib;
  build_runtime_paths(A, &inc, &lib);
  const char *hdr = arena_printf(A, "%s/mlcrt.h", inc);
  if (!exists(lib) || !exists(hdr)) {
    diag_error(d, (Loc){0},
               "cannot find the runtime library (tried %s and %s); set MLC_RUNTIME_LIB and "
               "MLC_RUNTIME_INCLUDE",
               lib, hdr);
    return NULL;
  }
  const char *cc = getenv("CC");
  if (!cc || !*cc) cc = "cc";
  const char *flags = getenv("MLC_CFLAGS");
  if (!flags) flags = "";
  /* the key */
  uint64_t h = BUILD_HASH_INIT;
  h = build_hash_str(h, s->shared ? "shared" : "executable");
  for (int i = 0; i < s->nfiles; i++)
    h = build_hash_str(build_hash_str(h, s->files[i].name), s->files[i].text);
  h = compiler_identity(A, cc, h);
  h = cpu_identity(h);
  h = build_hash_str(h, BUILD_CFLAGS);
  h = build_hash_str(h, flags);
  h = build_hash_str(h, inc);
  if (!build_hash_file_size(hdr, &h, NULL) || !build_hash_file_size(lib, &h, NULL)) {
    diag_error(d, (Loc){0}, "cannot read the runtime (%s, %s): %s", hdr, lib, strerror(errno));
    return NULL;
  }
  if (s->weights) h = build_hash(build_hash_str(h, "embed"), s->weights, s->c->plan->weight_bytes);
  const char *base = build_cache_dir(A);
  const char *dir = arena_printf(A, "%s/%016llx", base, (unsigned long long)h);
  const char *result = arena_printf(A, "%s/%s", dir, s->out_name);
  if (exists(dir)) {
    if (entry_ok(A, dir, s->out_name)) {
      if (was_cached) *was_cached = true;
      return result;
    }
    build_evict(A, dir); /* damaged, or from an older mlc without a sum: never trusted */
  }
  if (build_mkdirs(base) != 0) {
    diag_file_error(d, base, "cannot create the cache directory: %s", strerror(errno));
    return NULL;
  }
  char *tmp = arena_printf(A, "%s/tmp.XXXXXX", base);
  if (!mkdtemp(tmp)) {
    diag_file_error(d, base, "cannot create a directory in the cache: %s", strerror(errno));
    return NULL;
  }
  /* argv: cc -std=c11 -O3 $MLC_CFLAGS [-fPIC -shared ...] -I INC FILES.c LIB -lm -pthread -o OUT
   * [weights.c] */
  char *argv[96];
  int n = 0;
  argv[n++] = (char *)cc;
  argv[n++] = "-std=c11"; /* BUILD_CFLAGS */
  argv[n++] = "-O3";
  argv[n++] = "-march=native";
  argv[n++] = "-ffp-contract=off";
  argv[n++] = "-fno-trapping-math";
  char *extra = arena_strdup(A, flags);
  for (char *t = strtok(extra, " "); t && n < 48; t = strtok(NULL, " ")) argv[n++] = t;
  if (s->shared) {
    /* the runtime linked in with its symbols hidden (--exclude-libs): the
     * object needs nothing from the program that loads it, and two models
     * loaded side by side cannot see each other's symbols (-Bsymbolic) */
    const char *so[] = {"-fPIC", "-shared", "-Wl,-Bsymbolic", "-Wl,--exclude-libs,ALL"};
    for (int i = 0; i < 4; i++) argv[n++] = (char *)so[i];
  }
  argv[n++] = "-I";
  argv[n++] = (char *)inc;
  for (int i = 0; i < s->nfiles; i++) {
    const char *p = arena_printf(A, "%s/%s", tmp, s->files[i].name);
    if (!build_write_file(d, p, s->files[i].text)) goto fail;
    size_t len = strlen(p);
    if (s->files[i].compile && n < 80 && len > 2 && !strcmp(p + len - 2, ".c"))
      argv[n++] = (char *)p;
  }
  const char *out = arena_printf(A, "%s/%s", tmp, s->out_name);
  const char *rest[] = {lib, "-lm", "-pthread", "-o", out};
  for (int i = 0; i < 5; i++) argv[n++] = (char *)rest[i];
  if (s->weights) {
    const char *wc = arena_printf(A, "%s/model_weights.c", tmp);
    FILE *f = fopen(wc, "wb");
    bool ok =
        f && emitc_weights(f, s->c->g, s->weights_path, s->weights, s->c->plan->weight_bytes) == 0;
    if (f) ok &= fclose(f) == 0;
    if (!ok) {
      diag_file_error(d, wc, "cannot write: %s", strerror(errno));
      goto fail;
    }
    argv[n++] = (char *)wc;
  }
  argv[n] = NULL;
  const char *log = arena_printf(A, "%s/cc.log", tmp);
  int rc = run_logged(argv, log, d);
  if (rc != 0) {
    if (rc > 0)
      diag_error(d, (Loc){0},
                 "internal error: the generated C did not compile (%s exited with %d); sources "
                 "kept in %s\n%s",
                 cc, rc, tmp, log_head(A, log));
    return NULL; /* the sources stay for a bug report */
  }
  if (!write_sum(d, A, tmp, out)) goto fail;
  for (int tries = 0; tries < 2; tries++) {
    if (rename(tmp, dir) == 0) return result;
    /* another process won the race: use theirs if it is whole */
    if (entry_ok(A, dir, s->out_name)) {
      remove_tree(tmp);
      return result;
    }
    build_evict(A, dir);
  }
  return out; /* ours, outside the cache: used once and left in BASE/tmp.* (rare) */
fail:
  remove_tree(tmp);
  return NULL;
}
