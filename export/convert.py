#!/usr/bin/env python3
"""Convert a trained tfmobile run to LiteRT: the thin script form of `tfmobile export`.

    python export/convert.py runs/small --out exports/small --quantize dynamic
    python export/convert.py runs/small --out exports/small-int8 --quantize int8 --max-source-len 48

Writes OUT/model.tflite (signatures encode, decode_step, translate), the SentencePiece model(s) and
OUT/model_meta.json. Every option of `tfmobile export --help` applies.
"""

import sys

from tfmobile.cli import main

if __name__ == "__main__":
    sys.exit(main(["export", *sys.argv[1:]]))
