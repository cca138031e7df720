"""Progress output: one line per step, with elapsed seconds, so CI logs show where time goes."""

import sys
import time
from contextlib import contextmanager


def say(message: str) -> None:
    print(f"[env] {message}", flush=True)


@contextmanager
def phase(name: str):
    start = time.monotonic()
    say(f"{name} ...")
    try:
        yield
    except BaseException:
        say(f"{name} FAILED after {time.monotonic() - start:.1f}s")
        raise
    say(f"{name} done in {time.monotonic() - start:.1f}s")


def fail(message: str) -> "NoReturn":  # noqa: F821
    print(f"[env] error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(1)
