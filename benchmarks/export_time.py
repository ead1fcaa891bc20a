"""How long one LiteRT export takes: a preset built with random weights, exported with `export_model`
(no run directory, as HAT's latency dataset will export hundreds of models), once per quantization.

    python benchmarks/export_time.py [--config small] [--quantize none dynamic] [--length 96]

Prints seconds per export and writes benchmarks/results/export_time.json (with the machine).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

from _common import import_tensorflow_quietly, run_main

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="small")
    ap.add_argument("--quantize", nargs="+", default=["none", "dynamic"], choices=["none", "float16", "dynamic"])
    ap.add_argument("--length", type=int, default=96, help="fixed source and target length S = T")
    args = ap.parse_args()
    import_tensorflow_quietly()
    from tfmobile.deploy.export import export_model
    from tfmobile.hardware import machine
    from tfmobile.models.config import load_config
    from tfmobile.models.transformer import build_transformer
    from tfmobile.utils import atomic_write_text

    cfg = load_config(args.config).model
    began = time.monotonic()
    model = build_transformer(cfg)
    build_seconds = time.monotonic() - began
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for quantize in args.quantize:
            began = time.monotonic()
            meta = export_model(model, cfg, os.path.join(tmp, quantize), quantize=quantize,
                                max_source_len=args.length, max_target_len=args.length)
            rows.append({"quantize": quantize, "seconds": round(time.monotonic() - began, 1),
                         "bytes": meta["model_bytes"]})
            print(f"{args.config} {quantize}: {rows[-1]['seconds']} s, {meta['model_bytes'] / 2**20:.1f} MiB", flush=True)
    result = {"config": args.config, "length": args.length, "build_seconds": round(build_seconds, 1),
              "exports": rows, "machine": machine()}
    os.makedirs(RESULTS, exist_ok=True)
    atomic_write_text(os.path.join(RESULTS, "export_time.json"), json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(run_main("export_time", main))
