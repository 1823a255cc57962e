"""Host memory for CPU training: keep freed tensor memory in the process for reuse.

PyTorch's CPU allocator takes every tensor from ``malloc`` and gives it back on free. glibc
serves blocks above its mmap threshold (128 KiB at first) with fresh ``mmap`` pages and
returns trimmed heap tops to the kernel, so a training step whose activations are a few
hundred KiB each (SAC at batch 512, the MAML meta-batch) page-faults on every new tensor: on
these machines about 500 faults per SAC update and 14,000 per MAML outer step, a sixth of
the update's time and more of the step's. Raising the mmap and trim thresholds keeps those
blocks in the heap, where the next step reuses them without faults; memory above the
process's peak working set is never held (``bench/sac_updates.py``, ``bench/maml_pretrain.py``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

MMAP_THRESHOLD = 64 * 2**20
"""Blocks at least this large still come from ``mmap`` (one-off buffers such as a replay
buffer's columns are returned to the kernel when freed)."""
TRIM_THRESHOLD = 2**30
"""Free memory at the top of the heap kept for reuse before glibc trims it."""
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # <malloc.h>
_tuned: bool | None = None


def retain_freed_memory() -> bool:
    """Set glibc's malloc thresholds for training (process-wide; idempotent).

    Returns whether they are set: False off Linux/glibc (other allocators keep their own
    defaults; nothing changes).
    """
    global _tuned
    if _tuned is None:
        _tuned = False
        path = ctypes.util.find_library('c') if sys.platform.startswith('linux') else None
        libc = ctypes.CDLL(path) if path else None
        if libc is not None and hasattr(libc, 'mallopt') and hasattr(libc,
                                                                     'gnu_get_libc_version'):
            _tuned = bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
                          and libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return _tuned
