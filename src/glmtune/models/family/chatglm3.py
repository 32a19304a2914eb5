"""ChatGLM3-6B: ChatGLM2's architecture plus role tokens and rope_ratio (RoPE base multiplier)."""

from glmtune.models.family._detect import FolderFiles, chatglm2_or_3, is_thudm_chatglm, is_v1, recorded_family
from glmtune.models.family.base import FAMILIES, QKV, Family


def _detect(files: FolderFiles) -> bool:
    if recorded_family(files.config) == "chatglm3":  # exported by `glmtune export --to hf`
        return True
    return is_thudm_chatglm(files.config) and not is_v1(files.config) and chatglm2_or_3(files)[0] == "chatglm3"


FAMILIES.register("chatglm3")(
    Family(
        name="chatglm3",
        description="ChatGLM3-6B (ChatGLM2 architecture, role tokens, rope_ratio; runs on GlmForCausalLM)",
        detect=_detect,
        tokenizer_loader="glmtune.models.tokenization.chatglm3:load_tokenizer",
        model_loader="glmtune.models.glm_mapping.loading:load_model",
        default_template="chatglm3",
        priority=20,
        lora_targets=QKV,  # THUDM's fused query_key_value is split into q/k/v_proj at load time
        prefix_module="glmtune.models.glm_mapping.prefix",  # THUDM's P-Tuning v2 on GlmForCausalLM
        padding_side="left",  # as its tokenizer and chat() pad
        positions="tokenizer",  # its tokenizer yields position_ids (0 on left pads)
    )
)
