"""`python -m toolchain.cli`: the same as the `compress` command."""

from . import main

main()
