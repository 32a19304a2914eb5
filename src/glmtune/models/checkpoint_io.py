"""Reading checkpoint weights outside ``from_pretrained``: single or sharded ``.bin`` / ``.safetensors``.

Models themselves are loaded by transformers (``from_pretrained``); this reads what it does not:
P-Tuning prefixes, shapes for ``glmtune info`` and adapter detection, and checks a folder's shards
exist before a load. Tensors are yielded one at a time, shard by shard; ``.bin`` files are read with
``torch.load(weights_only=True)`` (no arbitrary unpickling) and memory-mapped where possible.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from glmtune.errors import GlmtuneError

SAFE_INDEX = "model.safetensors.index.json"
BIN_INDEX = "pytorch_model.bin.index.json"
SAFE_SINGLE = "model.safetensors"
BIN_SINGLE = "pytorch_model.bin"
_SAFE_DTYPES = {"F16": "float16", "BF16": "bfloat16", "F32": "float32", "F64": "float64", "I64": "int64",
                "I32": "int32", "I8": "int8", "U8": "uint8", "BOOL": "bool"}


def checkpoint_files(folder: str | Path) -> list[Path]:
    """The weight files of ``folder`` in load order (safetensors preferred over .bin)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise GlmtuneError(f"model folder not found: {folder}")
    for index_name in (SAFE_INDEX, BIN_INDEX):
        index = folder / index_name
        if index.is_file():
            try:
                weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise GlmtuneError(f"{index}: not a valid checkpoint index ({exc})") from None
            names = list(dict.fromkeys(weight_map.values()))
            missing = [n for n in names if not (folder / n).is_file()]
            if missing:
                raise GlmtuneError(f"{index} names shard(s) that are missing: {', '.join(missing)}")
            return [folder / n for n in names]
    for single in (SAFE_SINGLE, BIN_SINGLE):
        if (folder / single).is_file():
            return [folder / single]
    found = sorted(p.name for p in folder.iterdir())[:12]
    raise GlmtuneError(
        f"no weights in {folder}: expected {SAFE_SINGLE}, {BIN_SINGLE} or a sharded index (found {found})"
    )


def read_errors() -> tuple[type[BaseException], ...]:
    """What reading a non-tensor or broken weight file raises (torch refuses pickled objects)."""
    import pickle

    return (pickle.UnpicklingError, EOFError)


def _load_bin(path: Path) -> dict[str, Any]:
    import torch

    try:
        try:
            data = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:  # old (non-zip) serialization cannot be memory-mapped
            data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - unpickling errors come in many types
        raise GlmtuneError(f"cannot read {path} as a plain tensor checkpoint: {exc}") from None
    if not isinstance(data, dict):
        raise GlmtuneError(f"{path} does not hold a state dict (found {type(data).__name__})")
    return data


def iter_file_tensors(path: str | Path, dtype: Any = None,
                      skip: Callable[[str], bool] | None = None) -> Iterator[tuple[str, Any]]:
    """(key, tensor) of one weight file; floating tensors are cast to ``dtype`` when given.

    Keys for which ``skip(key)`` is true are dropped before they are read or cast (a tied 6B output
    layer would otherwise be materialised in the target dtype only to be thrown away).
    """
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(path), framework="pt", device="cpu") as fh:
            for key in fh.keys():
                if skip is None or not skip(key):
                    yield key, _cast(fh.get_tensor(key), dtype)
        return
    data = _load_bin(path)
    for key in list(data):
        tensor = data.pop(key)
        if skip is None or not skip(key):
            yield key, _cast(tensor, dtype)
        del tensor


def iter_checkpoint_tensors(folder: str | Path, dtype: Any = None,
                            skip: Callable[[str], bool] | None = None) -> Iterator[tuple[str, Any]]:
    """(key, tensor) for every tensor of a checkpoint folder, one shard at a time (see ``iter_file_tensors``)."""
    for path in checkpoint_files(folder):
        yield from iter_file_tensors(path, dtype, skip)


def checkpoint_shapes(folder: str | Path) -> dict[str, tuple[tuple[int, ...], str]]:
    """key -> (shape, dtype name) without materialising weights (safetensors headers / mmap)."""

    out: dict[str, tuple[tuple[int, ...], str]] = {}
    for path in checkpoint_files(folder):
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="pt", device="cpu") as fh:
                for key in fh.keys():
                    sl = fh.get_slice(key)
                    out[key] = (tuple(sl.get_shape()), _SAFE_DTYPES.get(sl.get_dtype(), sl.get_dtype()))
            continue
        for key, tensor in _load_bin(path).items():
            out[key] = (tuple(tensor.shape), str(tensor.dtype).replace("torch.", ""))
    return out


def _cast(tensor: Any, dtype: Any) -> Any:
    if dtype is not None and tensor.is_floating_point() and tensor.dtype != dtype:
        return tensor.to(dtype)
    return tensor
