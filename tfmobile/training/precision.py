"""`precision: auto`: mixed bfloat16 only where the hardware computes in bfloat16, float32 elsewhere.

Mixed bfloat16 halves the matmul cost on CPUs with AVX512_BF16 or AMX and on GPUs of compute capability
8.0 and up (Ampere, Hopper). Everywhere else it is emulated and slower than float32: on a 2-core AVX2 CPU mixed
bfloat16 trained `small` at 0.82x the float32 speed (benchmarks/train_step_speed.py). Older GPUs
(compute capability 7.x, e.g. a Colab T4) have float16 tensor cores instead, so they get mixed float16.
"""

from __future__ import annotations

import tensorflow as tf

from tfmobile.errors import ConfigError
from tfmobile.hardware import cpu_flags
from tfmobile.models.config import PRECISIONS  # the names a config may give, checked where it loads

BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


def _gpu_compute_capabilities() -> list[tuple[int, int]]:
    caps = []
    for gpu in tf.config.list_physical_devices("GPU"):
        cap = tf.config.experimental.get_device_details(gpu).get("compute_capability")
        caps.append(tuple(cap) if cap else (0, 0))
    return caps


def resolve_precision(name: str, flags: set[str] | None = None, gpus: list[tuple[int, int]] | None = None
                      ) -> tuple[str, str]:
    """(Keras mixed-precision policy, why): `auto` decided from the hardware, anything else as given."""
    if name not in PRECISIONS:
        raise ConfigError(f"train.precision must be one of {', '.join(PRECISIONS)} (got {name!r})")
    if name != "auto":
        return name, "set in the config"
    gpus = _gpu_compute_capabilities() if gpus is None else gpus
    if gpus:
        major, minor = min(gpus)
        if major >= 8:
            return "mixed_bfloat16", f"auto: GPU of compute capability {major}.{minor} computes in bfloat16"
        return "mixed_float16", f"auto: GPU of compute capability {major}.{minor} has float16, not bfloat16"
    flags = cpu_flags() if flags is None else flags
    found = [f for f in BF16_CPU_FLAGS if f in flags]
    if found:
        return "mixed_bfloat16", f"auto: this CPU has {found[0]}"
    return "float32", "auto: this CPU has no bfloat16 instructions (avx512_bf16 / amx_bf16)"


__all__ = ["BF16_CPU_FLAGS", "PRECISIONS", "resolve_precision"]
