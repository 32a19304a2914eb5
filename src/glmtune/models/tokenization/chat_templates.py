"""Jinja chat templates that render each ChatGLM generation's OFFICIAL ``chat()`` prompt as text.

Written into exported ``tokenizer_config.json`` files, so that plain
``AutoTokenizer.from_pretrained(OUT).apply_chat_template(messages, add_generation_prompt=True)`` gives
the ids glmtune's inference engine (``glmtune.data.templates``) builds. They rely on the fast
tokenizer of ``fast_export``: every text chunk between two added tokens gets SentencePiece's dummy
prefix, and a leading space makes a separately encoded part (ChatGLM3's message content, an answer)
its own ``▁`` word, which is exactly how the official code encodes those parts one by one.

- chatglm (v1): the bare query without history, else ``[Round i]\\n问：q\\n答：a\\n`` from 0; then
  ``[gMASK]<sop>``; a final assistant message renders the training layout ``... answer<eop>``.
- chatglm2: ``[gMASK]sop`` + ``[Round i]\\n\\n问：q\\n\\n答：a\\n\\n`` from 1 + ``[Round n]\\n\\n问：query\\n\\n答：``;
  a final assistant message is appended as its own encoded part (the eos is not rendered: ChatGLM2's
  ``</s>`` is plain text to its tokenizer).
- chatglm3: ``[gMASK]sop`` + per message ``<|role|>{metadata}\\n`` + `` content`` (a system message's
  ``tools`` appended as 4-space-indented JSON, ``tool`` = ``<|observation|>``), then ``<|assistant|>``.
"""

from __future__ import annotations

# message list checks shared by the v1/v2 templates: optional blank system messages, then strictly
# alternating user/assistant turns; `answered` = the last turn is an assistant reply
_TURNS = (
    "{%- for m in messages if m['role'] == 'system' and (m['content'] or '') | trim -%}"
    "{{ raise_exception('this ChatGLM generation has no system slot: drop the system message') }}"
    "{%- endfor -%}"
    "{%- set turns = messages | rejectattr('role', 'equalto', 'system') | list -%}"
    "{%- for m in turns -%}"
    "{%- if m['role'] != (loop.index0 % 2 == 0 and 'user' or 'assistant') -%}"
    "{{ raise_exception('messages must alternate user/assistant turns') }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if not turns -%}{{ raise_exception('no user message') }}{%- endif -%}"
    "{%- set answered = turns[-1]['role'] == 'assistant' -%}"
    "{%- set q = turns | length - (2 if answered else 1) -%}"
)

CHATGLM = _TURNS + (
    "{%- if q == 0 -%}{{ turns[0]['content'] or '' }}"
    "{%- else -%}"
    "{%- for i in range(0, q, 2) -%}"
    "{{ '[Round ' ~ (i // 2) ~ ']\\n问：' ~ (turns[i]['content'] or '') ~ '\\n答：' ~ (turns[i + 1]['content'] or '') ~ '\\n' }}"
    "{%- endfor -%}"
    "{{ '[Round ' ~ (q // 2) ~ ']\\n问：' ~ (turns[q]['content'] or '') ~ '\\n答：' }}"
    "{%- endif -%}"
    "{{ '[gMASK]<sop>' }}"
    "{%- if answered -%}{{ (turns[-1]['content'] or '') ~ '<eop>' }}{%- endif -%}"
)

CHATGLM2 = "{{ '[gMASK]sop' }}" + _TURNS + (
    "{%- for i in range(0, q, 2) -%}"
    "{{ '[Round ' ~ (i // 2 + 1) ~ ']\\n\\n问：' ~ (turns[i]['content'] or '') ~ '\\n\\n答：' ~ (turns[i + 1]['content'] or '') ~ '\\n\\n' }}"
    "{%- endfor -%}"
    "{{ '[Round ' ~ (q // 2 + 1) ~ ']\\n\\n问：' ~ (turns[q]['content'] or '') ~ '\\n\\n答：' }}"
    "{%- if answered and turns[-1]['content'] -%}{{ ' ' ~ turns[-1]['content'] }}{%- endif -%}"
)

CHATGLM3 = (
    "{{ '[gMASK]sop' }}"
    "{%- set roles = {'system': 'system', 'user': 'user', 'assistant': 'assistant', "
    "'tool': 'observation', 'observation': 'observation'} -%}"
    "{%- for m in messages -%}"
    "{%- if m['role'] not in roles -%}{{ raise_exception('unknown role ' ~ m['role']) }}{%- endif -%}"
    "{%- set content = m['content'] or '' -%}"
    "{%- if m['role'] == 'system' and m['tools'] is defined and m['tools'] -%}"
    "{%- set content = content ~ '\\n' ~ (m['tools'] | tojson(indent=4)) -%}"
    "{%- endif -%}"
    "{{ '<|' ~ roles[m['role']] ~ '|>' ~ (m['metadata'] if m['metadata'] is defined and m['metadata'] else '') ~ '\\n' }}"
    "{%- if content -%}{{ ' ' ~ content }}{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|assistant|>' }}{%- endif -%}"
)

TEMPLATES = {"chatglm": CHATGLM, "chatglm2": CHATGLM2, "chatglm3": CHATGLM3}


def chat_template(family: str, dummy_prefix: bool = True) -> str:
    """The Jinja chat template of ``family`` (chatglm, chatglm2 or chatglm3).

    ``dummy_prefix=False`` (a SentencePiece model without ``add_dummy_prefix``, e.g. glmtune's built-in
    tiny model): separately encoded parts get no leading ``▁`` there, so none is rendered either.
    """
    template = TEMPLATES[family]
    return template if dummy_prefix else template.replace("{{ ' ' ~ ", "{{ ")
