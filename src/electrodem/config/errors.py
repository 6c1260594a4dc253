"""The one error type for bad input, raised before any compute."""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable
from typing import Any


class ConfigError(ValueError):
    """A configuration value is invalid.

    The message always names the key (dotted path), the value given and what is allowed, on one line.
    """

    def __init__(self, key: str, value: Any, allowed: str) -> None:
        self.key, self.value, self.allowed = key, value, allowed
        super().__init__(f"{key}={value!r} is invalid: {allowed}")


def require(cond: bool, key: str, value: Any, allowed: str) -> None:
    """Raise `ConfigError` unless ``cond`` holds."""
    if not cond:
        raise ConfigError(key, value, allowed)


def is_number(v: Any) -> bool:
    """A finite real number: int or float, not a bool (YAML ``true`` is an int to Python), not NaN or
    +-inf (a NaN passes no comparison and an inf passes every lower bound, so range checks alone let
    them through)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def is_integer(v: Any) -> bool:
    """An int that is not a bool."""
    return isinstance(v, int) and not isinstance(v, bool)


def unknown_key(key: str, value: Any, known: Iterable[str]) -> ConfigError:
    """`ConfigError` for a key that is not in ``known``, suggesting the nearest known name.

    ``key`` is the dotted path of the unknown key; its last component is matched against ``known``
    with `difflib.get_close_matches` (similarity ratio >= 0.6: close enough to be a typo).
    """
    prefix, _, name = key.rpartition(".")
    names = sorted(known)
    near = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
    where = f"a known key of {prefix}" if prefix else "a known top-level key"
    hint = f"did you mean {(prefix + '.' if prefix else '') + near[0]}? " if near else ""
    return ConfigError(key, value, f"{where}: {hint}known: {names}")


def require_known_keys(cfg: dict[str, Any], known: Iterable[str], prefix: str) -> None:
    """Raise `unknown_key` for the first key of ``cfg`` not in ``known`` (``prefix``: dotted path of
    the mapping, empty for the top level)."""
    names = set(known)
    for k, v in cfg.items():
        if k not in names:
            raise unknown_key(f"{prefix}.{k}" if prefix else str(k), v, names)
