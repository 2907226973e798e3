"""Memory a process has freed, handed back to the system (glibc's ``malloc_trim``).

glibc keeps freed memory in its heaps (up to twice its mmap threshold at the top, which grows
to 32 MB as large blocks are freed, and every hole below it), and a process would keep it after
the work that needed it: about 30 MB of a 92 MB CSV upload's parse, and the 80 MB of SQLite
pages its insert held (docs/benchmarks.md, issue 29).
"""

import ctypes

# glibc's malloc_trim, None where the C library has none (musl, macOS).
MALLOC_TRIM = getattr(ctypes.CDLL(None), "malloc_trim", None)


def return_freed_memory() -> None:
    if MALLOC_TRIM is not None:
        MALLOC_TRIM(0)
