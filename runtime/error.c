/* error.c — status names and error text for libmlcrt.
 *
 * Errors travel two ways: functions with an `err` parameter format their
 * message into that caller-owned MLCRT_ERRLEN buffer (mlcrt_seterr), and
 * instance-less calls (create, init) leave it in a thread-local buffer read
 * through mlcrt_last_error().  The thread-local buffer is the only mutable
 * state in the runtime; being per-thread, two instances in two threads never
 * see each other's messages.
 */
#include "mlcrt.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static _Thread_local char last_error[MLCRT_ERRLEN];

const char *mlcrt_status_name(int status) {
  switch (status) {
  case MLCRT_OK:
    return "ok";
  case MLCRT_EINVAL:
    return "invalid argument";
  case MLCRT_EIO:
    return "I/O error";
  case MLCRT_EFORMAT:
    return "malformed file";
  case MLCRT_ESHAPE:
    return "wrong dtype or shape";
  case MLCRT_ENOMEM:
    return "out of memory";
  case MLCRT_ENUMERIC:
    return "non-finite value";
  case MLCRT_EUNSUPPORTED:
    return "unsupported";
  default:
    return "unknown status";
  }
}

/* When err is NULL the message goes to the thread-local last error instead,
 * so that it is never silently lost. */
int mlcrt_seterr(char *err, int status, const char *fmt, ...) {
  char *dst = err ? err : last_error;
  va_list ap;
  va_start(ap, fmt);
  int r = vsnprintf(dst, MLCRT_ERRLEN, fmt, ap);
  va_end(ap);
  if (r < 0) /* encoding error: leave something readable */
    snprintf(dst, MLCRT_ERRLEN, "%s", mlcrt_status_name(status));
  return status;
}

const char *mlcrt_last_error(void) {
  return last_error;
}

void mlcrt_set_last_error(const char *msg) {
  if (!msg) {
    last_error[0] = '\0';
    return;
  }
  if (msg == last_error) return;
  size_t n = strlen(msg);
  if (n >= MLCRT_ERRLEN) n = MLCRT_ERRLEN - 1;
  memmove(last_error, msg, n);
  last_error[n] = '\0';
}
