"""``glmtune tokenize``: encode converted JSONL into a cached Arrow folder that ``train`` reuses."""

from __future__ import annotations

import argparse

from glmtune.data.templates import TEMPLATES, EncodeOptions


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="glmtune tokenize", description=__doc__)
    p.add_argument("--model", required=True, help="checkpoint folder whose tokenizer to use")
    p.add_argument("--family", help="model family when its files cannot tell (chatglm, chatglm2, chatglm3, glm4, hf)")
    p.add_argument("--data", required=True, action="append", help="converted JSONL file (repeatable)")
    p.add_argument("-o", "--output", required=True, help="output folder (datasets Arrow + glmtune_tokenized.json)")
    p.add_argument("--template", choices=TEMPLATES.names(), help="prompt format (default: the model family's)")
    p.add_argument("--multi-turn", default="all", choices=("all", "last", "split"))
    p.add_argument("--train-on-prompt", action="store_true", help="learn the prompt tokens too")
    p.add_argument("--cutoff-len", type=int, help="max tokens per example")
    p.add_argument("--max-source-length", type=int, help="official prompt limit (with --max-target-length)")
    p.add_argument("--max-target-length", type=int, help="official answer limit")
    p.add_argument("--truncate-side", default="right", choices=("right", "left"),
                   help="prompt truncation: right keeps the head (official), left keeps the tail")
    p.add_argument("--round-prompt-always", action="store_true",
                   help="chatglm: '[Round 0]' prompt even without history (official ptuning with a history column)")
    p.add_argument("--no-train-on-observation", dest="train_on_observation", action="store_false",
                   help="chatglm3: do not learn tool results")
    p.add_argument("--num-proc", type=int, default=2, help="worker processes")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--overwrite", action="store_true", help="replace an output folder glmtune did not write")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from glmtune.data.tokenized import build_tokenized_dataset
    from glmtune.models.loading import load_tokenizer

    options = EncodeOptions.from_settings(args)
    tokenizer = load_tokenizer(args.model, family=args.family)
    _, report = build_tokenized_dataset(
        tokenizer, args.data, args.template, options, num_proc=args.num_proc, output_dir=args.output,
        progress=not args.no_progress, overwrite=args.overwrite,
    )
    print(report)
    return 0
