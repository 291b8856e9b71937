"""One progress bar helper for every long loop: rich on a terminal; elsewhere (a CI log, a file) a
line every HEARTBEAT_S seconds while the loop runs, so a long stage never looks hung; nothing at
all with COMPRESS_PROGRESS=0."""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

HEARTBEAT_S = 30.0


def enabled() -> bool:
    return os.environ.get("COMPRESS_PROGRESS", "auto") == "1" or (
        os.environ.get("COMPRESS_PROGRESS", "auto") == "auto" and sys.stderr.isatty())


@contextmanager
def task(description: str, total: float | None) -> Iterator[Callable[..., None]]:
    """Yield `advance(n=1, **fields)`; shows a transient bar on stderr when it is a terminal."""
    if not enabled():
        if os.environ.get("COMPRESS_PROGRESS") == "0":
            yield lambda n=1, **kw: None
            return
        with _heartbeat(description, total) as advance:
            yield advance
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TextColumn("{task.fields[info]}")]
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        tid = bar.add_task(description, total=total, info="")

        def advance(n: float = 1, info: str | None = None) -> None:
            bar.update(tid, advance=n, **({"info": info} if info is not None else {}))

        yield advance


@contextmanager
def _heartbeat(description: str, total: float | None) -> Iterator[Callable[..., None]]:
    """Where no bar can be drawn: one line on stderr every HEARTBEAT_S seconds (none for a loop that
    ends sooner): what is done of what, after how long, and the last unit's news."""
    state = {"done": 0.0, "info": ""}
    start, stop = time.monotonic(), threading.Event()

    def beat() -> None:
        while not stop.wait(HEARTBEAT_S):
            of = f"/{total:g}" if total is not None else ""
            news = f": {state['info']}" if state["info"] else ""
            print(f"{description}: {state['done']:g}{of} after {time.monotonic() - start:.0f} s{news}",
                  file=sys.stderr, flush=True)

    def advance(n: float = 1, info: str | None = None) -> None:
        state["done"] += n
        if info is not None:
            state["info"] = info

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield advance
    finally:
        stop.set()
