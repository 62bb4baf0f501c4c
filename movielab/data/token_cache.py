"""Token ids stored once as memory-mapped files, keyed by everything that could change them.

A cache folder is built in a private staging folder and renamed into place whole, so no reader
ever sees half of one, and of two processes building the same cache at once the first rename wins
and the other loads it. Its meta.json, written last, lists every file with its size and SHA-256;
loading checks them all, so a damaged cache (a truncated, missing or altered file, a cut meta.json)
is noticed, moved aside and rebuilt after one log line, instead of failing every later run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import socket
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from movielab.data.tokenizers import Tokenizer, tokenizer_from_state

log = logging.getLogger(__name__)

CACHE_FORMAT = 3
SPLITS = ("train", "val")
META = "meta.json"
STAGING = ".staging."
DAMAGED = ".damaged."


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
    """`fingerprint` names the cache folder: a hash of the inputs and of every option that could
    change the tokens (and of the cache's format). `content_digest` is a hash of what came out (the
    token, offset and value files, the tokenizer, the statistics), so a run can be resumed on the
    same tokens after a change that only moves the cache (a new format, a reader option whose
    default leaves the tokens as they were, the file at another path)."""

    tokenizer: Tokenizer
    train: TokenSplit
    val: TokenSplit
    fingerprint: str
    stats: dict[str, Any]
    content_digest: str


def file_digest(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def content_digest(meta: dict[str, Any]) -> str:
    """sha256 of a cache's content as its meta.json lists it: every file's SHA-256, the splits'
    counts and dtypes, and the statistics less the source path; not the cache format."""
    described = {
        "files": {name: info["sha256"] for name, info in meta["files"].items()},
        "splits": meta["splits"],
        "dtype": meta["dtype"],
        "stats": {k: v for k, v in meta["stats"].items() if k != "source"},
    }
    return hashlib.sha256(json.dumps(described, sort_keys=True).encode("utf-8")).hexdigest()[:20]


def cache_key(*parts: object) -> str:
    text = "\n".join(repr(part) for part in (CACHE_FORMAT, *parts))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:20]


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16 if vocab_size <= np.iinfo(np.uint16).max + 1 else np.uint32)


class HashedFile:
    """A file written in appends, whose size and SHA-256 are known when it is closed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.handle = open(path, "wb")  # noqa: SIM115 (closed by close())
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> None:
        self.handle.write(data)
        self.digest.update(data)
        self.size += len(data)

    def close(self) -> dict[str, Any]:
        self.handle.close()
        return {"size": self.size, "sha256": self.digest.hexdigest()}


class SplitWriter:
    """Appends one split chunk by chunk: its tokens, offsets and per-record values, each a raw
    little-endian array file whose dtype and shape meta.json records.

    `values` declares each value's dtype and per-record shape up front, so a split that ends up
    with no records still has every file, with the right shape.
    """

    def __init__(
        self, folder: Path, name: str, dtype: np.dtype, values: dict[str, tuple[str, tuple[int, ...]]]
    ) -> None:
        self.name, self.dtype, self.values = name, np.dtype(dtype), values
        self.files = {
            "tokens": HashedFile(folder / f"{name}.tokens.bin"),
            "offsets": HashedFile(folder / f"{name}.offsets.bin"),
            **{v: HashedFile(folder / f"{name}.{v}.bin") for v in values},
        }
        self.n_tokens = self.n_records = 0
        self.files["offsets"].write(np.zeros(1, "<i8").tobytes())

    def append(self, chunk: TokenSplit) -> None:
        """A chunk's offsets start at 0; they are shifted to follow the tokens written so far."""
        self.files["tokens"].write(np.ascontiguousarray(chunk.tokens, self.dtype.newbyteorder("<")).tobytes())
        self.files["offsets"].write((np.asarray(chunk.offsets[1:], "<i8") + self.n_tokens).tobytes())
        for name, (dtype, shape) in self.values.items():
            array = np.ascontiguousarray(chunk.values[name], np.dtype(dtype).newbyteorder("<"))
            assert array.shape == (chunk.n_records, *shape), (name, array.shape)
            self.files[name].write(array.tobytes())
        self.n_tokens += len(chunk.tokens)
        self.n_records += chunk.n_records

    def close(self) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
        """(this split's entry in meta.json, its files' sizes and digests)."""
        infos = {handle.path.name: handle.close() for handle in self.files.values()}
        entry = {
            "tokens": self.n_tokens,
            "records": self.n_records,
            "values": {v: {"dtype": d, "shape": list(s)} for v, (d, s) in self.values.items()},
        }
        return entry, infos


class CacheDamaged(Exception):
    """A cache folder whose files do not match its meta.json (or that has no readable meta.json)."""


class TokenCacheBuilder:
    """Builds one cache folder in a private staging folder, with `scratch` space beside it for the
    preparation's own temporary files, and publishes it whole with `publish`.

    The staging folder is named after this host and process, so a later build removes the ones
    left by a process that was killed (and never those of a live one).
    """

    def __init__(self, cache_dir: str | Path, key: str) -> None:
        self.root, self.key = Path(cache_dir), key
        self.root.mkdir(parents=True, exist_ok=True)
        remove_debris(self.root)
        prefix = f".{key}{STAGING}{socket.gethostname()}.{os.getpid()}."
        self.staging = Path(tempfile.mkdtemp(prefix=prefix, dir=self.root))
        self.scratch = self.staging / "scratch"
        self.scratch.mkdir()
        self.splits: dict[str, SplitWriter] = {}

    def __enter__(self) -> TokenCacheBuilder:
        return self

    def __exit__(self, *exc: object) -> None:
        for writer in self.splits.values():
            for handle in writer.files.values():
                handle.handle.close()
        shutil.rmtree(self.staging, ignore_errors=True)

    def split_writer(
        self, name: str, dtype: np.dtype, values: dict[str, tuple[str, tuple[int, ...]]]
    ) -> SplitWriter:
        self.splits[name] = SplitWriter(self.staging, name, dtype, values)
        return self.splits[name]

    def publish(self, tokenizer: Tokenizer, stats: dict[str, Any]) -> TokenData:
        shutil.rmtree(self.scratch)
        meta: dict[str, Any] = {"format": CACHE_FORMAT, "splits": {}, "files": {}}
        for name in SPLITS:
            writer = self.splits[name]
            meta["splits"][name], infos = writer.close()
            meta["files"].update(infos)
        meta["dtype"] = self.splits["train"].dtype.name
        tokenizer.save(self.staging / "tokenizer.json")
        meta["files"]["tokenizer.json"] = {
            "size": (self.staging / "tokenizer.json").stat().st_size,
            "sha256": file_digest(self.staging / "tokenizer.json"),
        }
        meta["stats"] = stats
        (self.staging / META).write_text(json.dumps(meta, indent=2), encoding="utf-8")  # last
        folder = self.root / self.key
        for _attempt in range(2):
            try:
                os.rename(self.staging, folder)
                return _open(folder, self.key, verify=False)  # just written and hashed
            except OSError:
                if not folder.exists():
                    raise
            existing = load_token_cache(self.root, self.key)  # another process's: checked
            if existing is not None:
                return existing
        raise OSError(f"cannot publish the token cache {folder}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_debris(root: Path) -> None:
    """Remove damaged folders moved aside, and staging folders of dead processes on this host."""
    host = socket.gethostname()
    for entry in root.glob(".*"):
        if DAMAGED in entry.name:
            shutil.rmtree(entry, ignore_errors=True)
        elif STAGING in entry.name:
            owner = entry.name.split(STAGING, 1)[1].rsplit(".", 2)
            if len(owner) == 3 and owner[0] == host and owner[1].isdigit() and not _alive(int(owner[1])):
                shutil.rmtree(entry, ignore_errors=True)


def _discard(folder: Path) -> None:
    """Move a damaged cache aside at once (one rename, so no reader sees it half deleted), then delete."""
    aside = folder.with_name(f".{folder.name}{DAMAGED}{uuid.uuid4().hex[:8]}")
    try:
        os.rename(folder, aside)
    except FileNotFoundError:
        return  # another process moved it already
    shutil.rmtree(aside, ignore_errors=True)


def _check_files(folder: Path, files: dict[str, Any]) -> None:
    for name, info in files.items():
        path = folder / name
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise CacheDamaged(f"{name} is missing") from None
        if size != info["size"]:
            raise CacheDamaged(f"{name} has {size} bytes, meta.json says {info['size']}")
        if file_digest(path) != info["sha256"]:
            raise CacheDamaged(f"{name} does not match the SHA-256 in meta.json")


def _read_meta(folder: Path) -> dict[str, Any]:
    try:
        meta = json.loads((folder / META).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CacheDamaged("meta.json is missing") from None
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise CacheDamaged("meta.json is not valid JSON (cut short?)") from None
    if not isinstance(meta, dict) or meta.get("format") != CACHE_FORMAT or "files" not in meta:
        raise CacheDamaged(f"meta.json does not describe a format-{CACHE_FORMAT} token cache")
    return meta


def _open_split(folder: Path, name: str, meta: dict[str, Any]) -> TokenSplit:
    entry, dtype = meta["splits"][name], np.dtype(meta["dtype"]).newbyteorder("<")
    length, records = int(entry["tokens"]), int(entry["records"])
    tokens_path = folder / f"{name}.tokens.bin"
    if tokens_path.stat().st_size != length * dtype.itemsize:
        raise CacheDamaged(f"{tokens_path.name} does not hold {length} tokens")
    tokens = np.memmap(tokens_path, dtype=dtype, mode="r", shape=(length,)) if length else np.zeros(0, dtype)
    offsets = np.fromfile(folder / f"{name}.offsets.bin", dtype="<i8")
    if (
        len(offsets) != records + 1
        or offsets[0] != 0
        or offsets[-1] != length
        or np.any(np.diff(offsets) < 0)
    ):
        raise CacheDamaged(f"{name}.offsets.bin does not describe {records} records of {length} tokens")
    values = {}
    for value, spec in entry["values"].items():
        shape = tuple(spec["shape"])
        array = np.fromfile(folder / f"{name}.{value}.bin", dtype=np.dtype(spec["dtype"]).newbyteorder("<"))
        if array.size != records * int(np.prod(shape)):
            raise CacheDamaged(f"{name}.{value}.bin does not hold {records} records")
        values[value] = array.reshape(records, *shape).astype(spec["dtype"], copy=False)
    return TokenSplit(tokens=tokens, offsets=offsets, values=values)


def _open(folder: Path, key: str, verify: bool = True) -> TokenData:
    """Raises CacheDamaged when anything is missing, cut or altered (with `verify`, every file's
    size and SHA-256 are checked against meta.json first)."""
    meta = _read_meta(folder)
    try:
        if verify:
            _check_files(folder, meta["files"])
        splits = {name: _open_split(folder, name, meta) for name in SPLITS}
        tokenizer = tokenizer_from_state(json.loads((folder / "tokenizer.json").read_text(encoding="utf-8")))
        return TokenData(tokenizer, splits["train"], splits["val"], key, meta["stats"], content_digest(meta))
    except CacheDamaged:
        raise
    except Exception as exc:  # whatever a damaged file breaks, the answer is to rebuild it
        raise CacheDamaged(f"unreadable ({type(exc).__name__}: {str(exc)[:80]})") from None


def load_token_cache(cache_dir: str | Path, key: str) -> TokenData | None:
    """The cache `key` under `cache_dir`, checked; None when there is none, or when it was damaged
    (then it is moved aside and deleted, with one warning line, so the caller rebuilds it)."""
    folder = Path(cache_dir) / key
    if not folder.exists():
        return None
    try:
        return _open(folder, key)
    except CacheDamaged as damage:
        log.warning("Token cache %s is damaged (%s): rebuilding it", folder, damage)
        _discard(folder)
        return None
