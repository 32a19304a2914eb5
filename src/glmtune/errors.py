"""Errors that the CLI turns into one clear line and exit status 2."""

from __future__ import annotations


class GlmtuneError(Exception):
    """A user-facing error: bad input, bad config, missing file. Printed without a traceback."""


class ConfigError(GlmtuneError):
    """A configuration key is unknown, ill-typed or out of range; the message names the key."""


class DataError(GlmtuneError):
    """Bad input data; the message names the file, the line or row and the field."""
