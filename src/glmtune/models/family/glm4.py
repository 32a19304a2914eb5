"""GLM-4 checkpoints in transformers' own layout (model_type glm / glm4): plain transformers."""

from glmtune.models.family.base import FAMILIES, QKV, Family

FAMILIES.register("glm4")(
    Family(
        name="glm4",
        description="GLM-4 in transformers' native layout (GlmForCausalLM / Glm4ForCausalLM)",
        detect=lambda files: files.config.get("model_type") in ("glm", "glm4"),
        tokenizer_loader="glmtune.models.hf_loading:load_tokenizer",
        model_loader="glmtune.models.hf_loading:load_model",
        default_template="glm4",
        priority=5,
        lora_targets=QKV,  # GlmForCausalLM / Glm4ForCausalLM attention projections
        prefix_module=None,  # no official P-Tuning v2 for GLM-4: LoRA instead
        padding_side="right",  # plain transformers model: no position shift from pads
        positions="model",  # the model counts positions itself
    )
)
