"""What this machine is: the CPU's name and instruction-set flags. Timings and the `auto` precision depend on
them, so reports state them (never assume an instruction set: read it)."""

from __future__ import annotations

import os
import platform

# The flags that decide how fast training and inference run here (and which precision `auto` picks).
REPORTED_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "asimd", "sve")


def cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> set[str]:
    """The instruction-set flags the kernel reports for this CPU (empty where /proc/cpuinfo is absent)."""
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_name(cpuinfo: str = "/proc/cpuinfo") -> str:
    """The CPU model: platform.processor() is empty on most Linux hosts, /proc/cpuinfo names it."""
    name = platform.processor()
    if not name and os.path.exists(cpuinfo):
        with open(cpuinfo, encoding="utf-8", errors="replace") as f:
            name = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    return name or platform.machine()


def machine() -> dict:
    """{cpu, cores, flags}: the flags of REPORTED_FLAGS this CPU has."""
    flags = cpu_flags()
    return {"cpu": cpu_name(), "cores": os.cpu_count() or 1, "flags": [f for f in REPORTED_FLAGS if f in flags]}


__all__ = ["REPORTED_FLAGS", "cpu_flags", "cpu_name", "machine"]
