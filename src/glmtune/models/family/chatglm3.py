"""ChatGLM3-6B: ChatGLM2's architecture plus role tokens and rope_ratio (RoPE base multiplier)."""

from glmtune.models.families import FAMILIES, Family
from glmtune.models.family._detect import is_thudm_chatglm, is_v1, names, recorded_family


def _detect(config: dict, tok: dict) -> bool:
    if recorded_family(config) == "chatglm3":  # exported by `glmtune export --to hf`
        return True
    if not is_thudm_chatglm(config) or is_v1(config):
        return False
    hub = names(config, tok)
    return "chatglm3" in hub or "<|user|>" in str(tok.get("chat_template", ""))


FAMILIES.register("chatglm3")(
    Family(
        name="chatglm3",
        description="ChatGLM3-6B (ChatGLM2 architecture, role tokens, rope_ratio; runs on GlmForCausalLM)",
        detect=_detect,
        tokenizer_loader="glmtune.models.tokenization.chatglm2:load_tokenizer_v3",
        model_loader="glmtune.models.glm_mapping.loading:load_model",
        default_template="chatglm3",
        priority=20,
    )
)
