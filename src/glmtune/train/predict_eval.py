"""``predict_eval=N``: after training, answer N dev conversations with the engine and score them
(BLEU-4 / ROUGE, as ``glmtune eval``), next to the eval loss, as the seeds' ``--predict_with_generate``.

The dev conversations are the ones behind the eval dataset (its ``conversation`` column indexes the
records of ``eval_data``, or of ``data`` for a ``val_size`` split). Greedy decoding, so the report
of a run is reproducible.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from glmtune.utils.io import atomic_open

PREDICTIONS = "predictions_eval.jsonl"
REPORT = "eval_report.json"


def _record_files(paths: list[str]) -> list[str]:
    from glmtune.data.tokenized import is_tokenized_dir, load_meta

    files: list[str] = []
    for path in paths:
        files += load_meta(path).get("data_files", []) if is_tokenized_dir(path) else [path]
    return files


def dev_conversations(paths: list[str], dataset: Any, n: int) -> list[dict[str, Any]]:
    """The first ``n`` dev conversations as predict rows: id, prompt messages, reference."""
    from glmtune.data.records import numbered_records

    records = [(f"{Path(p).name}:{line}", rec) for p in _record_files(paths) for line, rec in numbered_records(p)]
    wanted = sorted(set(dataset["conversation"]))[:n] if "conversation" in dataset.column_names else range(n)
    rows = []
    for index in wanted:
        where, record = records[index]
        messages = record["messages"]
        last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
        rows.append({"id": record.get("id", where), "messages": messages[:last],
                     "reference": messages[last]["content"]})  # fmt: skip
    return rows


def predict_and_score(out: Path, model: Any, tokenizer: Any, template: str, rows: list[dict[str, Any]],
                      max_new_tokens: int, eval_loss: float | None) -> dict[str, Any]:
    """Writes ``predictions_eval.jsonl`` and ``eval_report.json`` into ``out``; returns the report."""
    from glmtune.evaluate.metrics import aggregate
    from glmtune.inference.engine import Engine
    from glmtune.inference.settings import GenerationSettings

    engine = Engine(model, tokenizer, template)
    settings = GenerationSettings(temperature=0, max_new_tokens=max_new_tokens)
    completions = engine.generate([r["messages"] for r in rows], settings)
    with atomic_open(out / PREDICTIONS) as fh:
        for row, c in zip(rows, completions):
            fh.write(json.dumps({**row, "prediction": c.text, "finish_reason": c.finish_reason},
                                ensure_ascii=False) + "\n")  # fmt: skip
    report: dict[str, Any] = {"eval_loss": eval_loss, **aggregate([(c.text, r["reference"]) for r, c in
                                                                  zip(rows, completions)])}  # fmt: skip
    with atomic_open(out / REPORT) as fh:
        json.dump(report, fh, indent=2, ensure_ascii=False)
    return report
