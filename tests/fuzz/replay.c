/* tests/fuzz/replay.c — a main() for the fuzzing harnesses without libFuzzer.
 *
 *   fuzz_replay_NAME FILE|DIR ...
 *
 * Feeds every file (directories: every regular file inside but dotfiles,
 * not recursive, in name order) to LLVMFuzzerTestOneInput once.  ctest runs this over the
 * seed corpus and the regression inputs (tests/fuzz/regress/NAME/: every
 * input a fuzzer ever crashed on), so a fixed bug stays fixed in builds
 * without clang; the ASan build catches memory errors in the replays.
 */
#include "fuzz.h"
#include <dirent.h>
#include <string.h>
#include <sys/stat.h>

static int replay_file(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    fprintf(stderr, "%s: cannot open\n", path);
    return 1;
  }
  size_t cap = 4096, len = 0;
  uint8_t *buf = malloc(cap);
  while (buf) {
    len += fread(buf + len, 1, cap - len, f);
    if (len < cap) break;
    uint8_t *bigger = realloc(buf, cap *= 2);
    if (!bigger) free(buf);
    buf = bigger;
  }
  fclose(f);
  if (!buf) {
    fprintf(stderr, "%s: out of memory\n", path);
    return 1;
  }
  LLVMFuzzerTestOneInput(buf, len);
  free(buf);
  return 0;
}

static int by_name(const struct dirent **a, const struct dirent **b) { return strcmp((*a)->d_name, (*b)->d_name); }

int main(int argc, char **argv) {
  int bad = 0, n = 0;
  for (int i = 1; i < argc; i++) {
    struct stat st;
    if (stat(argv[i], &st) != 0) {
      fprintf(stderr, "%s: no such file or directory\n", argv[i]);
      bad = 1;
      continue;
    }
    if (!S_ISDIR(st.st_mode)) {
      bad |= replay_file(argv[i]);
      n++;
      continue;
    }
    struct dirent **ents;
    int k = scandir(argv[i], &ents, NULL, by_name);
    if (k < 0) {
      fprintf(stderr, "%s: cannot list\n", argv[i]);
      bad = 1;
      continue;
    }
    for (int j = 0; j < k; j++) {
      char path[4096];
      snprintf(path, sizeof path, "%s/%s", argv[i], ents[j]->d_name);
      if (ents[j]->d_name[0] != '.' && stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
        bad |= replay_file(path);
        n++;
      }
      free(ents[j]);
    }
    free(ents);
  }
  printf("%d inputs replayed\n", n);
  return bad;
}
