/* tests/install/libmlc_check.c — libmlc (mlc.h) as a program uses it:
 * compile an MDL source held in memory to C files, and report the errors
 * of a broken one as text.  Run in an empty directory.
 * Prints "N checks passed" and exits 0, or prints each failed check. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mlc.h>

#include "../e2e/api/check.h" /* CHECK, checks_result */


static long file_size(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return -1;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fclose(f);
  return n;
}

static const char *good = "model tiny {\n"
                          "  input x: f32[B, 4]\n"
                          "  param w: f32[3, 4] = normal\n"
                          "  output y = relu(linear(x, w))\n"
                          "}\n";
static const char *bad = "model tiny {\n"
                         "  input x: f32[B, 4]\n"
                         "  param w: f32[3, 5] = normal\n"
                         "  output y = linear(x, w)\n"
                         "}\n";

int main(void) {
  CHECK(mlc_version() && strcmp(mlc_version(), "0.1.0") >= 0, "version %s", mlc_version());
  char *diag = NULL;
  int rc = mlc_compile_string("tiny.mdl", good, "tiny.c", NULL, &diag);
  CHECK(rc == MLC_OK, "good model: status %d: %s", rc, diag ? diag : "(null)");
  CHECK(diag && !strstr(diag, "error"), "good model: diagnostics '%s'", diag ? diag : "(null)");
  mlc_free(diag);
  CHECK(file_size("tiny.c") > 100 && file_size("tiny.h") > 100, "tiny.c / tiny.h not written");

  rc = mlc_compile_string("bad.mdl", bad, "bad.c", NULL, &diag);
  CHECK(rc == MLC_ERROR, "broken model: status %d", rc);
  CHECK(diag && strstr(diag, "bad.mdl:4:") && strstr(diag, "error:"), "broken model: diagnostics '%s'",
        diag ? diag : "(null)");
  CHECK(file_size("bad.c") < 0, "bad.c was written for a broken model");
  mlc_free(diag);

  mlc_options o = {.opt_level = 0, .embed_weights = "missing.safetensors"};
  rc = mlc_compile_string("tiny.mdl", good, "emb.c", &o, &diag);
  CHECK(rc == MLC_ERROR && diag && strstr(diag, "missing.safetensors: error: "), "missing weights: %d '%s'", rc,
        diag ? diag : "(null)");
  mlc_free(diag);

  rc = mlc_compile_file("no-such-file.mdl", "x.c", NULL, &diag);
  CHECK(rc == MLC_ERROR && diag && strstr(diag, "no-such-file.mdl"), "missing file: %d '%s'", rc, diag ? diag : "(null)");
  mlc_free(diag);
  CHECK(mlc_compile_file("tiny.mdl", "out.txt", NULL, NULL) == MLC_EUSAGE, "an output not ending in .c");

  return checks_result();
}
