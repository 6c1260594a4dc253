"""Configuration: schemas, validation and the error type for bad input."""

from electrodem.config.errors import ConfigError, require

__all__ = ["ConfigError", "require"]
