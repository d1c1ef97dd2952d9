"""Typed storage errors."""

from __future__ import annotations


class StorageError(Exception):
    """The store failed to do what was asked (I/O error, corrupt object)."""


class KeyNotFound(StorageError):
    """No object at that key."""

    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(f"no object at {key!r}")


class InvalidName(ValueError):
    """A publishing point, track or stream name that cannot be stored safely."""


class InvalidOption(ValueError):
    """A server manifest option with a value Headwater cannot use."""

    def __init__(self, option: str, message: str) -> None:
        self.option = option
        super().__init__(f"option {option!r}: {message}")
