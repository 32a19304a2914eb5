"""Cutting a template's layout to the length limits, generically, and turning it into ids/labels.

Rules (the same for every template):
- Fixed tokens (``[gMASK] sop`` prefix, role/answer headers) and the token that closes a reply
  (eos/eop) are never cut: a truncated reply still ends with its stop token, so the model learns
  to stop.
- One-answer layouts: the prompt is cut on ``truncate_side`` ("right" keeps its head, as the
  official scripts do; "left" keeps the most recent context) and the answer keeps its head.
  ``max_source_length``/``max_target_length`` use the template's official budgets; ``cutoff_len``
  splits what the fixed tokens leave: a short answer (< half) is kept whole, else a short prompt
  is, else both are cut in proportion to their lengths; when the answer's share rounds to no token
  the example is dropped (its stop token alone would teach an empty reply).
- Multi-answer layouts (``multi_turn="all"``) and the ChatGLM3 official limit
  (``max_input_length + max_output_length + 1`` on the whole sequence) cut the tail: the reply the
  cut falls in (or the last complete one before it) is closed by eos; later turns are dropped.
- A result with no learned token is dropped (returned as None) and counted by the caller.
"""

from __future__ import annotations

from glmtune.data.templates.base import ANSWER, PROMPT, STOP, EncodeOptions, Layout, Segment, Template

IGNORE_INDEX = -100


def _cut_segments(layout: Layout, kind: str, keep: int, side: str) -> None:
    """Keep ``keep`` tokens in total over the segments of ``kind``: from the start ("right") or end ("left")."""
    idx = [i for i, s in enumerate(layout) if s.kind == kind]
    if side == "left":
        idx.reverse()
    for i in idx:
        seg = layout[i]
        n = min(len(seg.ids), max(keep, 0))
        keep -= n
        ids = seg.ids[:n] if side == "right" else seg.ids[len(seg.ids) - n:]
        layout[i] = Segment(ids, seg.learn, seg.kind)


def _length(layout: Layout, kind: str | None = None) -> int:
    return sum(len(s.ids) for s in layout if kind is None or s.kind == kind)


def _split_budget(budget: int, prompt: int, answer: int) -> tuple[int, int]:
    if answer * 2 < budget:
        target = answer
    elif prompt * 2 < budget:
        target = budget - prompt
    else:
        target = budget * answer // (prompt + answer)
    return budget - target, target


def _tail_cut(layout: Layout, limit: int, eos: int) -> Layout:
    room = limit - 1  # the closing eos always fits
    out: Layout = []
    used = 0
    for seg in layout:
        if used + len(seg.ids) <= room:
            out.append(seg)
            used += len(seg.ids)
            continue
        if seg.kind == ANSWER and room > used:
            out.append(Segment(seg.ids[: room - used], seg.learn, ANSWER))
        break
    while out and out[-1].kind not in (ANSWER, STOP):
        out.pop()
    if out and out[-1].kind == STOP:
        out.pop()  # replaced by the closing eos below
    if not any(s.kind == ANSWER for s in out):
        return []
    return [*out, Segment([eos], True, STOP)]


def truncate(layout: Layout, template: Template, opts: EncodeOptions, eos: int) -> tuple[Layout, bool]:
    """The layout cut to the limits in ``opts`` and whether anything was cut."""
    total = _length(layout)
    answers = sum(1 for s in layout if s.kind == ANSWER)
    layout = list(layout)
    if opts.max_source_length is not None and opts.max_target_length is not None:
        budgets = template.official_budgets(opts.max_source_length, opts.max_target_length) if answers == 1 else None
        if budgets is not None:
            prompt, answer = _length(layout, PROMPT), _length(layout, ANSWER)
            src, tgt = budgets
            cut = prompt > src or answer > tgt
            _cut_segments(layout, PROMPT, src, opts.truncate_side)
            _cut_segments(layout, ANSWER, tgt, "right")
            return layout, cut
        limit = template.official_total(opts.max_source_length, opts.max_target_length)
        if total <= limit:
            return layout, False
        return _tail_cut(layout, limit, eos), True
    if opts.cutoff_len is None or total <= opts.cutoff_len:
        return layout, False
    if answers != 1:
        return _tail_cut(layout, opts.cutoff_len, eos), True
    prompt, answer = _length(layout, PROMPT), _length(layout, ANSWER)
    budget = opts.cutoff_len - (total - prompt - answer)
    if budget < 1:
        return [], True
    src, tgt = _split_budget(budget, prompt, answer)
    if tgt == 0 and answer > 0:  # only the stop token would be learned: an empty reply to a long prompt
        return [], True
    _cut_segments(layout, PROMPT, src, opts.truncate_side)
    _cut_segments(layout, ANSWER, tgt, "right")
    return layout, True


def to_example(layout: Layout) -> dict[str, list[int]] | None:
    """``{"input_ids", "labels"}`` of a layout, or None when nothing in it is learned."""
    ids: list[int] = []
    labels: list[int] = []
    for seg in layout:
        ids.extend(seg.ids)
        labels.extend(seg.ids if seg.learn else [IGNORE_INDEX] * len(seg.ids))
    if not ids or all(x == IGNORE_INDEX for x in labels):
        return None
    return {"input_ids": ids, "labels": labels}
