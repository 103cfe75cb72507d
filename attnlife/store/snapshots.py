"""Sampled attention patterns stored fp16, delta-encoded against the previous snapshot.

Layout: `RUN/snapshots/<name>/step_XXXXXXX.npz` (names such as `layer0`), each holding
`bits` (uint16), `shape`, `base_step` (-1 for a keyframe). A keyframe stores the fp16 bit
patterns as they are; a delta frame stores `bits XOR previous_bits` of the previous snapshot of
the same tensor (same shape), which is exactly reversible for every fp16 value (NaN, inf and
signed zeros included) and is mostly zero bits when patterns change slowly, so zlib
(`np.savez_compressed`) shrinks it well. Every `keyframe_every`-th snapshot is a keyframe so a
read decodes a bounded chain. Files are written atomically; a killed writer leaves no half file.
"""
from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path
from typing import Mapping, Optional

import numpy as np
import torch

from attnlife.errors import RunDirError
from attnlife.store.atomic import atomic_path, clean_temp_files
from attnlife.store.damage import first_line, warn_damaged
from attnlife.store.layout import checkpoint_name

KEYFRAME = -1


class DamagedSnapshotError(RunDirError):
    """A snapshot file (or one its delta chain needs) cannot be decoded."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"snapshot {path} is damaged ({reason})")
        self.path, self.reason = path, reason


def encode_delta(bits: np.ndarray, previous: np.ndarray | None) -> np.ndarray:
    """uint16 delta frame: bits XOR previous (or bits itself when previous is None)."""
    return bits.copy() if previous is None else np.bitwise_xor(bits, previous)


def decode_delta(frame: np.ndarray, previous: np.ndarray | None) -> np.ndarray:
    """Inverse of `encode_delta`: frame XOR previous (or frame itself for a keyframe)."""
    return frame.copy() if previous is None else np.bitwise_xor(frame, previous)


def fp16_bits(tensor: torch.Tensor) -> np.ndarray:
    """The fp16 bit patterns of `tensor` (cast to fp16) as uint16, same shape."""
    return tensor.detach().to(torch.float16).cpu().contiguous().numpy().view(np.uint16)


class SnapshotStore:
    """Writer and reader of `RUN/snapshots/`."""

    def __init__(self, run_dir: str | os.PathLike, keyframe_every: int = 16) -> None:
        self.root = Path(run_dir) / "snapshots"
        self.keyframe_every = int(keyframe_every)

    def steps(self, name: str) -> list[int]:
        """Steps at which snapshot `name` exists, ascending."""
        d = self.root / name
        return sorted(int(p.stem.split("_")[1]) for p in d.glob("step_*.npz")) if d.is_dir() else []

    def names(self) -> list[str]:
        """Names of the stored tensors (e.g. layer0, layer1)."""
        return sorted(p.name for p in self.root.iterdir() if p.is_dir()) if self.root.is_dir() else []

    def write(self, step: int, name: str, tensor: torch.Tensor) -> Path:
        """Store `tensor` as fp16 at `step` under `name`; returns the file (atomic write)."""
        bits = fp16_bits(tensor)
        earlier = [s for s in self.steps(name) if s < step]
        previous, base = None, KEYFRAME
        if earlier and len(earlier) % self.keyframe_every != 0:
            prev_bits = self.read_bits_or_warn(name, earlier[-1])   # damaged: a keyframe instead
            if prev_bits is not None and prev_bits.shape == bits.shape:
                previous, base = prev_bits, earlier[-1]
        frame = encode_delta(bits, previous)
        buf = io.BytesIO()
        np.savez_compressed(buf, bits=frame, shape=np.array(bits.shape, dtype=np.int64),
                            base_step=np.array(base, dtype=np.int64))
        path = self.root / name / f"{checkpoint_name(step)}.npz"
        path.parent.mkdir(parents=True, exist_ok=True)
        clean_temp_files(path.parent)
        with atomic_path(path) as tmp:
            tmp.write_bytes(buf.getvalue())
        return path

    def write_many(self, step: int, tensors: Mapping[int | str, torch.Tensor]) -> list[Path]:
        """Store several tensors at `step`; integer keys k become names `layer{k}`."""
        return [self.write(step, f"layer{k}" if isinstance(k, int) else str(k), t)
                for k, t in tensors.items()]

    def read(self, name: str, step: int) -> torch.Tensor:
        """The fp16 tensor stored under `name` at `step` (decoding its delta chain); a damaged file
        in the chain raises DamagedSnapshotError (one line naming it)."""
        return torch.from_numpy(self._read_bits(name, step).view(np.float16).copy())

    def read_or_warn(self, name: str, step: int) -> Optional[torch.Tensor]:
        """`read`, or None with one DamagedFileWarning when a file of its chain is damaged."""
        bits = self.read_bits_or_warn(name, step)
        return None if bits is None else torch.from_numpy(bits.view(np.float16).copy())

    def read_bits_or_warn(self, name: str, step: int) -> Optional[np.ndarray]:
        try:
            return self._read_bits(name, step)
        except DamagedSnapshotError as err:
            warn_damaged(err.path, err.reason, "skipped (attention snapshots are written while "
                         "training and cannot be rebuilt; delete the file to silence this)")
            return None

    def compression(self, name: str | None = None) -> dict:
        """{'raw_bytes', 'stored_bytes', 'ratio'}: fp16 size over file size, for one name or all."""
        raw = stored = 0
        for n in ([name] if name else self.names()):
            for s in self.steps(n):
                p = self.root / n / f"{checkpoint_name(s)}.npz"
                with np.load(p) as z:
                    raw += int(np.prod(z["shape"])) * 2
                stored += p.stat().st_size
        return {"raw_bytes": raw, "stored_bytes": stored, "ratio": raw / stored if stored else float("nan")}

    def _read_bits(self, name: str, step: int) -> np.ndarray:
        path = self.root / name / f"{checkpoint_name(step)}.npz"
        if not path.is_file():
            raise RunDirError(f"no snapshot {name!r} at step {step} in {self.root}; "
                              f"available steps: {self.steps(name)}")
        try:
            with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as z:  # closed on damage too
                frame, shape, base = z["bits"], tuple(z["shape"].tolist()), int(z["base_step"])
            if frame.dtype != np.uint16 or frame.size != int(np.prod(shape)) or (
                    base != KEYFRAME and base >= step):
                raise ValueError(f"{frame.dtype} bits of size {frame.size} for shape {shape}, "
                                 f"base step {base}")
        except (OSError, ValueError, KeyError, EOFError, TypeError, zipfile.BadZipFile) as err:
            raise DamagedSnapshotError(path, first_line(err)) from None
        previous = None if base == KEYFRAME else self._read_bits(name, base)
        if previous is not None and previous.size != frame.size:
            raise DamagedSnapshotError(path, f"delta frame of size {frame.size} against a base "
                                             f"of size {previous.size}")
        return decode_delta(frame.reshape(-1), None if previous is None else previous.reshape(-1)
                            ).reshape(shape)
