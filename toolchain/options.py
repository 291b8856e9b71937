"""Stage options from a TOML table: unknown keys, wrong types and bad enum values refused by name.

A pipeline config is checked whole, by this, before its first stage runs: a typo in `[prune]`
must not surface after minutes of training and analysis.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from enum import Enum
from pathlib import Path

from .errors import CompressError


def unknown_keys(table: dict, known, where: str) -> None:
    """Refuse keys a table does not have, naming the ones it does."""
    extra = set(table) - set(known)
    if extra:
        raise CompressError(f"{where}: unknown key(s) {', '.join(sorted(extra))}; known: {', '.join(sorted(known))}")


def _convert(value, hint, where: str):
    """`value` as the annotated type, or a CompressError naming the key and what it wants."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _convert(value, arg, where)
            except CompressError as e:
                errors.append(str(e))
        raise CompressError(errors[0])
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise CompressError(f"{where} must be a list, not {value!r}")
        return tuple(_convert(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
    if isinstance(hint, type) and issubclass(hint, Enum):
        try:
            return hint(value)
        except ValueError:
            raise CompressError(f"{where} must be one of {', '.join(repr(m.value) for m in hint)}, "
                                f"not {value!r}") from None
    if hint is bool:
        if not isinstance(value, bool):
            raise CompressError(f"{where} must be true or false, not {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise CompressError(f"{where} must be a whole number, not {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise CompressError(f"{where} must be a number, not {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise CompressError(f"{where} must be a string, not {value!r}")
        return value
    if hint is Path:
        if not isinstance(value, str | Path):
            raise CompressError(f"{where} must be a path, not {value!r}")
        return Path(value)
    return value  # nested option objects are built by their owner


def from_table(cls, table: dict, where: str, **fixed):
    """An options dataclass from a TOML table (plus `fixed` values the caller sets), validated."""
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown_keys(table, fields - set(fixed), where)
    hints = typing.get_type_hints(cls)
    values = {k: _convert(v, hints[k], f"{where} {k}") for k, v in table.items()}
    try:
        opts = cls(**values, **fixed)
    except (TypeError, ValueError) as e:
        raise CompressError(f"{where}: {e}") from e
    if hasattr(opts, "validate"):
        try:
            opts.validate()
        except CompressError as e:
            raise CompressError(f"{where}: {e}") from e
    return opts
