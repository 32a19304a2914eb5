from __future__ import annotations

import pytest

from glmtune.utils.io import atomic_dir, atomic_open


def test_atomic_open_leaves_nothing_on_error(tmp_path):
    target = tmp_path / "out.jsonl"
    with pytest.raises(RuntimeError):
        with atomic_open(target) as fh:
            fh.write("partial")
            raise RuntimeError("boom")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_atomic_open_replaces(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with atomic_open(target) as fh:
        fh.write("new")
    assert target.read_text() == "new"


def test_atomic_dir(tmp_path):
    target = tmp_path / "ckpt"
    with atomic_dir(target) as tmp:
        (tmp / "a.bin").write_bytes(b"1")
    assert (target / "a.bin").read_bytes() == b"1"
    with pytest.raises(ValueError):
        with atomic_dir(target) as tmp:
            (tmp / "b.bin").write_bytes(b"2")
            raise ValueError
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]
    assert not (target / "b.bin").exists()


def test_atomic_open_follows_umask(tmp_path):
    import os

    old = os.umask(0o022)
    try:
        with atomic_open(tmp_path / "f.txt") as fh:
            fh.write("x")
    finally:
        os.umask(old)
    assert (tmp_path / "f.txt").stat().st_mode & 0o777 == 0o644


def test_atomic_dir_follows_umask(tmp_path):
    import os

    old = os.umask(0o022)
    try:
        with atomic_dir(tmp_path / "model") as tmp:  # e.g. an exported model other users must read
            (tmp / "a.bin").write_bytes(b"1")
    finally:
        os.umask(old)
    assert (tmp_path / "model").stat().st_mode & 0o777 == 0o755


def test_atomic_dir_normalises_private_files_from_libraries(tmp_path):
    import os

    old = os.umask(0o022)
    try:
        with atomic_dir(tmp_path / "model") as tmp:
            (tmp / "sub").mkdir(mode=0o700)
            weights = tmp / "sub" / "model.safetensors"
            weights.write_bytes(b"x")
            os.chmod(weights, 0o600)  # what safetensors' own temp-file write leaves
    finally:
        os.umask(old)
    assert (tmp_path / "model" / "sub").stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "model" / "sub" / "model.safetensors").stat().st_mode & 0o777 == 0o644
