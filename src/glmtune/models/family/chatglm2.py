"""ChatGLM2-6B: THUDM checkpoints mapped onto transformers' GlmForCausalLM."""

from glmtune.models.families import FAMILIES, Family
from glmtune.models.family._detect import is_thudm_chatglm, is_v1, recorded_family

FAMILIES.register("chatglm2")(
    Family(
        name="chatglm2",
        description="ChatGLM2-6B (multi-query attention, RMSNorm; runs on transformers GlmForCausalLM)",
        # a Glm folder written by `glmtune export --to hf` keeps its family in config.glmtune
        detect=lambda config, tok: (is_thudm_chatglm(config) and not is_v1(config))
        or recorded_family(config) == "chatglm2",
        tokenizer_loader="glmtune.models.tokenization.chatglm2:load_tokenizer",
        model_loader="glmtune.models.glm_mapping.loading:load_model",
        default_template="chatglm2",
        priority=10,
    )
)
