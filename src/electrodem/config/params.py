"""Build a parameter dataclass from a config mapping, naming the key that is wrong.

Every step's parameters are a dataclass that validates itself in ``__post_init__`` (raising
`ConfigError` with the dotted key); `build` adds what the dataclass cannot see: keys it does not have
(refused with the nearest known name) and values of a type its checks cannot even compare.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from electrodem.config.errors import ConfigError, require, require_known_keys


def build(cls: type, cfg: Mapping[str, Any] | None, prefix: str) -> Any:
    """Instantiate dataclass ``cls`` from a mapping, naming unknown keys (with the nearest known one)
    and bad types under ``prefix`` (the dotted path of the mapping)."""
    cfg = dict(cfg or {})
    require(all(isinstance(k, str) for k in cfg), prefix, cfg, "a mapping with text keys")
    require_known_keys(cfg, (f.name for f in dataclasses.fields(cls)), prefix)
    try:
        return cls(**cfg)
    except TypeError as e:  # a wrong type that the dataclass could not even compare
        # Name the key: the first one that fails on its own against the defaults.
        bad = next((k for k in cfg if _type_error_alone(cls, k, cfg[k])), None)
        key, value = (f"{prefix}.{bad}", cfg[bad]) if bad is not None else (prefix, cfg)
        raise ConfigError(key, value, f"a value of the right type ({e})") from e


def _type_error_alone(cls: type, key: str, value: Any) -> bool:
    """Whether ``cls(key=value)`` with every other field at its default raises TypeError."""
    try:
        cls(**{key: value})
    except TypeError:
        return True
    except ValueError:  # ConfigError included: a checked value, not a type the checks choke on
        return False
    return False
