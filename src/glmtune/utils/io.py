"""File I/O shared across glmtune.

Atomic writes (a crash or an error never leaves a half-written file or folder behind) and the one
reader of small JSON settings files, so every config file reports a syntax error the same way.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from glmtune.errors import GlmtuneError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO[Any]]:
    """Open a temp file beside ``path``; rename it over ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    binary = "b" in mode
    os.chmod(tmp, 0o666 & ~_umask())
    try:
        with os.fdopen(fd, mode, encoding=None if binary else encoding) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def follow_umask(folder: Path) -> None:
    """Give what was written under ``folder`` normal permissions: libraries that write through their
    own temp files (safetensors, transformers' save_pretrained) leave weights readable by the owner only."""
    mask = _umask()
    for root, dirs, files in os.walk(folder):
        for name in dirs:
            os.chmod(os.path.join(root, name), 0o777 & ~mask)
        for name in files:
            os.chmod(os.path.join(root, name), 0o666 & ~mask)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temp folder beside ``path``; it replaces ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; the result is a normal folder
    try:
        yield tmp
        follow_umask(tmp)
        if path.exists():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


OUTPUT_MARKER = "glmtune_output.json"  # {"kind": ...}: glmtune wrote this folder (export, predict, ...)


def write_marker(folder: Path, kind: str) -> None:
    """Mark ``folder`` (being written) as a glmtune output of ``kind``, so a later run may replace it."""
    (folder / OUTPUT_MARKER).write_text(json.dumps({"kind": kind}) + "\n", encoding="utf-8")


def claim_output(path: str | os.PathLike[str], kind: str, overwrite: bool = False,
                 own_files: tuple[str, ...] = ()) -> None:
    """Refuse to replace a folder glmtune did not write: ``path`` may be missing, empty, or a glmtune
    output of the same ``kind`` (its marker, or one of ``own_files``); anything else needs ``overwrite``."""
    path = Path(path)
    if not path.exists():
        return
    if not path.is_dir():
        raise GlmtuneError(f"{path} exists and is a file, not a folder; choose another output")
    children = sorted(p.name for p in path.iterdir())
    if not children:
        return
    marker = read_json(path / OUTPUT_MARKER) if (path / OUTPUT_MARKER).is_file() else {}
    if marker.get("kind") == kind or any((path / name).is_file() for name in own_files):
        return
    if overwrite:
        return
    what = f"a glmtune {marker['kind']} output" if marker.get("kind") else (
        f"files glmtune did not write ({', '.join(children[:5])}{', ...' if len(children) > 5 else ''})")
    raise GlmtuneError(f"{path} is not empty: it holds {what}; choose another output folder, or pass "
                       "--overwrite to replace it")


def read_json(path: Path) -> dict[str, Any]:
    """A JSON settings file as a dict: ``{}`` when absent or not an object; bad JSON names file:line:col."""
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise GlmtuneError(f"{path}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}") from None
    return data if isinstance(data, dict) else {}
