"""One progress bar helper for every long loop: rich on a terminal, silent elsewhere (CI logs)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager


def enabled() -> bool:
    return os.environ.get("COMPRESS_PROGRESS", "auto") == "1" or (
        os.environ.get("COMPRESS_PROGRESS", "auto") == "auto" and sys.stderr.isatty())


@contextmanager
def task(description: str, total: float | None) -> Iterator[Callable[..., None]]:
    """Yield `advance(n=1, **fields)`; shows a transient bar on stderr when it is a terminal."""
    if not enabled():
        yield lambda n=1, **kw: None
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
