"""The engine reproduces the official chat() answers, batched == single, streamed == generated."""

from __future__ import annotations

import json

import pytest

from glmtune.inference.engine import Engine
from glmtune.inference.settings import GenerationSettings

MINIS = ["chatglm-mini", "chatglm2-mini", "chatglm3-mini"]


def conversation(case: dict) -> list[dict]:
    messages = []
    for turn in case["history"]:
        if isinstance(turn, dict):
            messages.append(turn)
        else:  # v1/v2 history: [query, response] pairs
            messages += [{"role": "user", "content": turn[0]}, {"role": "assistant", "content": turn[1]}]
    return [*messages, {"role": "user", "content": case["query"]}]


@pytest.fixture(scope="module", params=MINIS)
def mini(request, reference):
    root = reference / "checkpoints" / request.param
    expected = json.loads((reference / "checkpoints" / f"{request.param}.expected.json").read_text())
    return request.param, Engine.load(root, device="cpu"), expected["chat"]


def greedy(case: dict) -> GenerationSettings:
    return GenerationSettings(temperature=0, max_new_tokens=case["max_length"] - case["prompt_length"])


def test_official_chat_answers_single_and_batched(mini):
    name, engine, cases = mini
    singles = []
    for case in cases:
        messages = conversation(case)
        assert engine.prompt_ids(messages) == case["prompt_input_ids"]
        got = engine.generate([messages], greedy(case))[0]
        want_ids = [t for t in case["new_token_ids"] if t not in engine.stop_ids]
        assert got.token_ids == want_ids
        assert got.finish_reason == ("stop" if case["stopped_on_eos"] else "length")
        if name == "chatglm3-mini":  # chat() decodes outputs[len(prompt):-1]: it always drops the last token
            dropped = engine.template.parse_reply(engine.tokenizer.decode(case["ids_decoded_by_chat"])).content
            assert dropped == case["response"] and got.text.startswith(case["response"])
        else:
            assert got.text == case["response"]
        singles.append(got)
    # the same cases in one left-padded batch (different prompt lengths) give the same answers
    settings = greedy(max(cases, key=lambda c: c["max_length"] - c["prompt_length"]))
    batched = engine.generate([conversation(c) for c in cases], settings, batch_size=len(cases))
    for case, one, many in zip(cases, singles, batched):
        assert many.token_ids[: len(one.token_ids)] == one.token_ids, case["name"]


def test_streamed_deltas_concatenate_to_the_generated_text(mini):
    name, engine, cases = mini
    case = cases[-1]
    settings = greedy(case)
    deltas = list(engine.stream(conversation(case), settings))
    # ChatGLM3 holds a reply back until its metadata line ends (it may be a tool call); the random mini
    # never writes that newline, so its reply arrives in one piece
    assert (len(deltas) > 1 or name == "chatglm3-mini") and all("\ufffd" not in d for d in deltas)
    assert "".join(deltas) == engine.generate([conversation(case)], settings)[0].text == engine.last.text


def test_stop_strings_cut_the_reply(mini):
    _, engine, cases = mini
    case = cases[0]
    full = engine.generate([conversation(case)], greedy(case))[0].text
    stop = full[len(full) // 2: len(full) // 2 + 2]
    got = engine.generate([conversation(case)], greedy(case).with_(stop=[stop]))[0]
    assert got.finish_reason == "stop" and got.text == full[: full.index(stop)].strip()
    assert "".join(engine.stream(conversation(case), greedy(case).with_(stop=[stop]))) == got.text


def test_sampling_is_seeded(mini):
    _, engine, cases = mini
    settings = GenerationSettings(temperature=1.0, top_p=0.9, max_new_tokens=6, seed=11)
    a, b = (engine.generate([conversation(cases[0])], settings)[0].token_ids for _ in range(2))
    assert a == b
