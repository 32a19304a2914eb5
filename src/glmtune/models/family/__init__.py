"""Built-in families; importing this package registers them (one line each)."""

from glmtune.models.family import chatglm, chatglm2, chatglm3, glm4, hf  # noqa: F401
