"""The peak resident set size of this process (no TensorFlow: the memory programs of every
backend read it)."""

from __future__ import annotations

import resource
import sys


def peak_mib():
    """This process's peak resident set size, MiB."""
    # VmHWM: this process's own peak (ru_maxrss on Linux keeps the parent's across fork + exec)
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB elsewhere
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20
