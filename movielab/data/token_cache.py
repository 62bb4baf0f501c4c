"""Token ids stored once as memory-mapped files, keyed by everything that could change them."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from movielab.data.tokenizers import Tokenizer, tokenizer_from_state

CACHE_FORMAT = 2
SPLITS = ("train", "val")


@dataclass(frozen=True)
class TokenSplit:
    """One split as a flat token stream plus record boundaries, so both window batching (LMs over a
    stream) and per-record batching (titles, sentences) read the same cache.

    `values` holds per-record arrays (first axis = record) that models condition on or predict:
    "rating" (float, NaN where the source has none) always; later layers add e.g. "genres".
    """

    tokens: np.ndarray
    offsets: np.ndarray  # record i is tokens[offsets[i]:offsets[i + 1]]
    values: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def n_records(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def record_tokens(self, index: int) -> np.ndarray:
        return self.tokens[self.offsets[index] : self.offsets[index + 1]]


@dataclass(frozen=True)
class TokenData:
    tokenizer: Tokenizer
    train: TokenSplit
    val: TokenSplit
    fingerprint: str
    stats: dict[str, Any]


def file_digest(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cache_key(*parts: object) -> str:
    text = "\n".join(repr(part) for part in (CACHE_FORMAT, *parts))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:20]


def encode_split(tokenizer: Tokenizer, texts: list[str], values: dict[str, np.ndarray]) -> TokenSplit:
    encoded = tokenizer.encode_batch(texts)
    lengths = np.array([len(ids) for ids in encoded], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    dtype = np.uint16 if tokenizer.vocab_size <= np.iinfo(np.uint16).max + 1 else np.uint32
    tokens = np.concatenate(encoded).astype(dtype) if encoded else np.zeros(0, dtype)
    return TokenSplit(tokens=tokens, offsets=offsets, values=values)


def load_token_cache(cache_dir: str | Path, key: str) -> TokenData | None:
    folder = Path(cache_dir) / key
    meta_path = folder / "meta.json"
    if not meta_path.exists():
        return None
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    splits = {}
    for name in SPLITS:
        length = meta["splits"][name]["tokens"]
        tokens = (
            np.memmap(folder / f"{name}.tokens.bin", dtype=meta["dtype"], mode="r", shape=(length,))
            if length
            else np.zeros(0, dtype=meta["dtype"])
        )
        values = {v: np.load(folder / f"{name}.{v}.npy") for v in meta["splits"][name]["values"]}
        splits[name] = TokenSplit(
            tokens=tokens, offsets=np.load(folder / f"{name}.offsets.npy"), values=values
        )
    tokenizer = tokenizer_from_state(json.loads((folder / "tokenizer.json").read_text(encoding="utf-8")))
    return TokenData(tokenizer, splits["train"], splits["val"], key, meta["stats"])


def save_token_cache(
    cache_dir: str | Path, key: str, tokenizer: Tokenizer, train: TokenSplit, val: TokenSplit, stats: dict
) -> TokenData:
    """Write into a private folder, then rename it into place: readers never see a half-written cache,
    and of two processes building the same cache at once, the first rename wins."""
    root = Path(cache_dir)
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=root))
    try:
        meta: dict[str, Any] = {"dtype": np.dtype(train.tokens.dtype).name, "stats": stats, "splits": {}}
        for name, split in (("train", train), ("val", val)):
            split.tokens.tofile(staging / f"{name}.tokens.bin")
            np.save(staging / f"{name}.offsets.npy", split.offsets)
            for value_name, array in split.values.items():
                np.save(staging / f"{name}.{value_name}.npy", array)
            meta["splits"][name] = {
                "tokens": int(len(split.tokens)),
                "records": split.n_records,
                "values": sorted(split.values),
            }
        tokenizer.save(staging / "tokenizer.json")
        (staging / "meta.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
        try:
            os.rename(staging, root / key)
        except OSError:
            if not (root / key / "meta.json").exists():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    loaded = load_token_cache(root, key)
    assert loaded is not None
    return loaded
