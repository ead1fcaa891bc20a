"""What every benchmark script shares: the quiet TensorFlow import and the command-line exit contract
(a TfmobileError is one `PROG: error: ...` line and exit 2; Ctrl-C says how to resume and exits 130)."""

from __future__ import annotations

import sys
from typing import Callable

from tfmobile.errors import TfmobileError


def import_tensorflow_quietly() -> None:
    from tfmobile.cli import _import_tensorflow_quietly

    _import_tensorflow_quietly()


def run_main(prog: str, body: Callable[[], int | None],
             resume_hint: str = "rerun the same command to continue") -> int:
    """Run `body()` and turn the library's errors into one line on stderr and a non-zero exit status."""
    try:
        return body() or 0
    except TfmobileError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; {resume_hint}", file=sys.stderr)
        return 130
