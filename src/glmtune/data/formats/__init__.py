"""Input formats, one small module each, registered in ``FORMATS`` by name.

Importing this package registers them all; ``detect`` picks one from the keys the rows share.
"""

from __future__ import annotations

from glmtune.data.formats import alpaca, belle, chatglm, columns, explain, messages, sharegpt  # noqa: F401
from glmtune.data.formats.base import FORMATS, Format, Options, detect

__all__ = ["FORMATS", "Format", "Options", "detect"]
