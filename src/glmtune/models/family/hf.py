"""Any other causal LM that transformers supports natively (never with remote code)."""

from glmtune.models.family.base import ALL_LINEAR, FAMILIES, Family

FAMILIES.register("hf")(
    Family(
        name="hf",
        description="any causal LM transformers loads natively (no remote code)",
        detect=lambda files: bool(files.config.get("model_type")) and files.config.get("model_type") != "chatglm",
        tokenizer_loader="glmtune.models.hf_loading:load_tokenizer",
        model_loader="glmtune.models.hf_loading:load_model",
        default_template="hf",
        priority=0,
        lora_targets=ALL_LINEAR,  # module names vary by architecture
        prefix_module=None,  # P-Tuning v2 is ChatGLM-only
        padding_side="right",  # absolute-position models would see shifted positions on the left
        positions="model",  # the model counts positions itself
    )
)
