"""ChatGLM-6B (v1 / v1.1): our own GLM v1 implementation and the ice_text tokenizer."""

from glmtune.models.family._detect import is_v1
from glmtune.models.family.base import FAMILIES, Family

FAMILIES.register("chatglm")(
    Family(
        name="chatglm",
        description="ChatGLM-6B v1/v1.1 (GLM v1 architecture, 2-D positions, ice_text tokenizer)",
        detect=lambda files: is_v1(files.config),
        tokenizer_loader="glmtune.models.tokenization.chatglm:load_tokenizer",
        model_loader="glmtune.models.chatglm_v1.loading:load_model",
        default_template="chatglm",
        priority=30,
        lora_targets=("query_key_value",),  # v1 keeps THUDM's module names: the fused attention projection
        prefix_module="glmtune.models.chatglm_v1.prefix",  # THUDM's P-Tuning v2 on our v1 model
        padding_side="left",  # as its tokenizer and chat() pad
        positions="glm_2d",  # the v1 model builds its 2-D positions from [gMASK] <sop>
    )
)
