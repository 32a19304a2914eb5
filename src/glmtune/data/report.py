"""What a conversion did: rows read, written and skipped by reason, per input and per output file."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class FileReport:
    """One input file: the format used, and where each of its rows went."""

    path: Path
    format: str = ""
    read: int = 0
    written: int = 0
    skipped: Counter[str] = field(default_factory=Counter)


@dataclass
class ConvertReport:
    """Totals of a run; ``written + skipped == read`` always holds, nothing is dropped uncounted."""

    inputs: list[FileReport] = field(default_factory=list)
    outputs: dict[Path, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def read(self) -> int:
        return sum(f.read for f in self.inputs)

    @property
    def written(self) -> int:
        return sum(f.written for f in self.inputs)

    @property
    def skipped(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for f in self.inputs:
            total.update(f.skipped)
        return total

    def summary(self) -> str:
        """A small table for the end of every run."""
        rows = [(f.path.name, f.format, f.read, f.written, sum(f.skipped.values())) for f in self.inputs]
        rows.append(("total", "", self.read, self.written, sum(self.skipped.values())))
        width = max(len(r[0]) for r in rows)
        lines = [f"{'input':<{width}}  {'format':<9} {'read':>8} {'written':>8} {'skipped':>8}"]
        lines += [f"{n:<{width}}  {fmt:<9} {r:>8} {w:>8} {s:>8}" for n, fmt, r, w, s in rows]
        for reason, count in sorted(self.skipped.items(), key=lambda kv: (-kv[1], kv[0])):
            lines.append(f"  skipped {count} row(s): {reason}")
        for path, count in self.outputs.items():
            lines.append(f"wrote {count} row(s) to {path}")
        return "\n".join(lines)
