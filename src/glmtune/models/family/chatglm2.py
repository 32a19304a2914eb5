"""ChatGLM2-6B: THUDM checkpoints mapped onto transformers' GlmForCausalLM."""

from glmtune.models.families import FAMILIES, Family
from glmtune.models.family._detect import FolderFiles, chatglm2_or_3, is_thudm_chatglm, is_v1, recorded_family


def _detect(files: FolderFiles) -> bool:
    if recorded_family(files.config) == "chatglm2":  # exported by `glmtune export --to hf`
        return True
    return is_thudm_chatglm(files.config) and not is_v1(files.config) and chatglm2_or_3(files)[0] == "chatglm2"


FAMILIES.register("chatglm2")(
    Family(
        name="chatglm2",
        description="ChatGLM2-6B (multi-query attention, RMSNorm; runs on transformers GlmForCausalLM)",
        detect=_detect,
        tokenizer_loader="glmtune.models.tokenization.chatglm2:load_tokenizer",
        model_loader="glmtune.models.glm_mapping.loading:load_model",
        default_template="chatglm2",
        priority=10,
    )
)
