"""The `compress` command line: parse, build the stage's options, call the stage, print a summary.

No logic lives here beyond parsing. A CompressError becomes one line on stderr and exit 2. A stage
is imported only when its command runs, so `compress --help` starts without torch.
"""

from . import stages, tools  # noqa: F401 - their commands register on `main`
from .base import main

__all__ = ["main"]
