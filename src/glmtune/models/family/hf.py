"""Any other causal LM that transformers supports natively (never with remote code)."""

from glmtune.models.families import FAMILIES, Family

FAMILIES.register("hf")(
    Family(
        name="hf",
        description="any causal LM transformers loads natively (no remote code)",
        detect=lambda files: bool(files.config.get("model_type")) and files.config.get("model_type") != "chatglm",
        tokenizer_loader="glmtune.models.hf_loading:load_tokenizer",
        model_loader="glmtune.models.hf_loading:load_model",
        default_template="hf",
        priority=0,
    )
)
