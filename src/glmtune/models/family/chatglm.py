"""ChatGLM-6B (v1 / v1.1): our own GLM v1 implementation and the ice_text tokenizer."""

from glmtune.models.families import FAMILIES, Family
from glmtune.models.family._detect import is_v1

FAMILIES.register("chatglm")(
    Family(
        name="chatglm",
        description="ChatGLM-6B v1/v1.1 (GLM v1 architecture, 2-D positions, ice_text tokenizer)",
        detect=lambda files: is_v1(files.config),
        tokenizer_loader="glmtune.models.tokenization.chatglm:load_tokenizer",
        model_loader="glmtune.models.chatglm_v1.loading:load_model",
        default_template="chatglm",
        priority=30,
    )
)
