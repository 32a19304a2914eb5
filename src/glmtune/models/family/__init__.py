"""Built-in families; importing this package registers them (one import line each).

A new family is one module here (a ``Family`` with its facts, registered in ``FAMILIES``) plus its
name in the import line below. ``Family``/``FAMILIES`` live in ``base``, which imports no family
module, so the family modules import it without a cycle.
"""

from glmtune.models.family import chatglm, chatglm2, chatglm3, glm4, hf  # noqa: F401
from glmtune.models.family.base import ALL_LINEAR, FAMILIES, QKV, Family, resolve

__all__ = ["ALL_LINEAR", "FAMILIES", "QKV", "Family", "resolve"]
