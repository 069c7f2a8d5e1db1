"""bench/torch_threads.py — give PyTorch exactly n threads.

torch.set_num_threads sets PyTorch's own pool (OpenMP), but Debian's PyTorch
does its GEMMs in the system BLAS, OpenBLAS (pthreads), which keeps its own
thread count (one per CPU): without this, "1 thread" PyTorch multiplies
matrices on every core.  The BLAS is already loaded by torch, so asking the
same library for openblas_set_num_threads changes the running instance."""
import ctypes
import torch


def set_threads(n):
    torch.set_num_threads(n)
    for name in ("libblas.so.3", "libopenblas.so.0"):
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        if hasattr(lib, "openblas_set_num_threads"):
            lib.openblas_set_num_threads(n)
            return True
    return False
