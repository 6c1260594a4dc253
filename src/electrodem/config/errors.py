"""The one error type for bad input, raised before any compute."""

from __future__ import annotations

from typing import Any


class ConfigError(ValueError):
    """A configuration value is invalid.

    The message always names the key (dotted path), the value given and what is allowed.
    """

    def __init__(self, key: str, value: Any, allowed: str) -> None:
        self.key, self.value, self.allowed = key, value, allowed
        super().__init__(f"{key}={value!r} is invalid: {allowed}")


def require(cond: bool, key: str, value: Any, allowed: str) -> None:
    """Raise `ConfigError` unless ``cond`` holds."""
    if not cond:
        raise ConfigError(key, value, allowed)
