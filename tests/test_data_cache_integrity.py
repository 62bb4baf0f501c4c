"""The token cache verifies itself: a damaged cache is noticed on load and rebuilt with one log line;
two processes preparing the same cache at once both end with the same valid tokens."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from movielab.data.preparation import prepare_token_data
from movielab.data.readers import CsvReader
from movielab.data.templates import Template
from movielab.data.token_cache import TokenCacheBuilder, TokenSplit, load_token_cache, remove_debris
from movielab.data.tokenizers import CharTokenizer, TokenizerSpec

REPO = Path(__file__).resolve().parents[1]
READER = CsvReader({"title": "name", "description": "description", "rating": "rating"})


@pytest.fixture
def films(tmp_path) -> Path:
    path = tmp_path / "films.csv"
    rows = [f'Film {i},"Plot {i}, told ""twice"".",{i % 5}.5' for i in range(40)]
    path.write_text("name,description,rating\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return path


def _prepare(path, cache_dir):
    return prepare_token_data(path, READER, Template(), TokenizerSpec("char"), 0.2, 0, cache_dir)


def _as_arrays(data):
    return [np.asarray(getattr(data, s).tokens).copy() for s in ("train", "val")] + [
        data.train.offsets.copy(),
        data.val.values["rating"].copy(),
    ]


def _truncate(folder: Path) -> None:
    path = folder / "train.tokens.bin"
    path.write_bytes(path.read_bytes()[:-7])


def _cut_meta(folder: Path) -> None:
    path = folder / "meta.json"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _flip_a_token(folder: Path) -> None:
    path = folder / "val.tokens.bin"
    data = bytearray(path.read_bytes())
    data[3] ^= 0x01
    path.write_bytes(bytes(data))


def _grow(folder: Path) -> None:
    with open(folder / "train.offsets.bin", "ab") as handle:
        handle.write(b"\0" * 8)


def _lie_in_meta(folder: Path) -> None:
    """A meta.json that parses and whose file sizes match, but whose counts do not."""
    meta = json.loads((folder / "meta.json").read_text())
    meta["splits"]["train"]["tokens"] -= 2
    (folder / "meta.json").write_text(json.dumps(meta))


DAMAGE = {
    "truncated tokens": (_truncate, "train.tokens.bin has"),
    "cut meta.json": (_cut_meta, "meta.json is not valid JSON"),
    "missing meta.json": (lambda f: (f / "meta.json").unlink(), "meta.json is missing"),
    "missing offsets": (lambda f: (f / "train.offsets.bin").unlink(), "train.offsets.bin is missing"),
    "missing values": (lambda f: (f / "val.rating.bin").unlink(), "val.rating.bin is missing"),
    "missing tokenizer": (lambda f: (f / "tokenizer.json").unlink(), "tokenizer.json is missing"),
    "flipped byte": (_flip_a_token, "val.tokens.bin does not match the SHA-256"),
    "wrong size": (_grow, "train.offsets.bin has"),
    "inconsistent meta.json": (_lie_in_meta, "train.tokens.bin does not hold"),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_cache_is_rebuilt_with_one_line(films, tmp_path, caplog, damage):
    first = _prepare(films, tmp_path / "cache")
    expected = _as_arrays(first)
    folder = tmp_path / "cache" / first.fingerprint
    spoil, reason = DAMAGE[damage]
    spoil(folder)
    with caplog.at_level(logging.INFO):
        again = _prepare(films, tmp_path / "cache")
    notices = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(notices) == 1 and "\n" not in notices[0]
    assert notices[0].startswith(f"Token cache {folder} is damaged (") and reason in notices[0]
    assert notices[0].endswith("): rebuilding it")
    assert all(np.array_equal(a, b) for a, b in zip(_as_arrays(again), expected, strict=True))
    assert os.listdir(tmp_path / "cache") == [first.fingerprint]  # damaged copy gone, nothing left over
    caplog.clear()
    with caplog.at_level(logging.INFO):
        _prepare(films, tmp_path / "cache")
    assert "loaded from cache" in caplog.text  # healed for good
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_an_intact_cache_loads_every_file_checked(films, tmp_path):
    data = _prepare(films, tmp_path / "cache")
    meta = json.loads((tmp_path / "cache" / data.fingerprint / "meta.json").read_text())
    assert set(meta["files"]) == {p.name for p in (tmp_path / "cache" / data.fingerprint).iterdir()} - {
        "meta.json"
    }
    assert all(len(info["sha256"]) == 64 and info["size"] >= 0 for info in meta["files"].values())
    assert load_token_cache(tmp_path / "cache", data.fingerprint) is not None


def _builder_with_one_record(root, key, token):
    builder = TokenCacheBuilder(root, key)
    split = TokenSplit(np.array([token, token], np.uint16), np.array([0, 2]), {"rating": np.ones(1, "f4")})
    for name in ("train", "val"):
        builder.split_writer(name, np.dtype(np.uint16), {"rating": ("float32", ())}).append(split)
    return builder


def test_the_second_of_two_builders_loads_the_first_ones_cache(tmp_path):
    tokenizer = CharTokenizer.train(["ab"])
    with (
        _builder_with_one_record(tmp_path, "k", 1) as first,
        _builder_with_one_record(tmp_path, "k", 2) as second,
    ):
        won = first.publish(tokenizer, {"who": "first"})
        lost = second.publish(tokenizer, {"who": "second"})
    assert won.stats == lost.stats == {"who": "first"}
    assert np.asarray(lost.train.tokens).tolist() == [1, 1]
    assert os.listdir(tmp_path) == ["k"]  # the loser's staging folder is gone


def test_staging_folders_of_dead_processes_are_removed_and_live_ones_kept(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    left = _builder_with_one_record(tmp_path, "k", 1)  # a live build (this process)
    stale = tmp_path / left.staging.name.replace(f".{os.getpid()}.", f".{dead.pid}.")
    stale.mkdir()
    (stale / "scratch").mkdir()
    (tmp_path / ".k.damaged.1234abcd").mkdir()
    remove_debris(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [left.staging.name]
    left.__exit__(None, None, None)
    assert list(tmp_path.iterdir()) == []


PREPARE_IN_A_SUBPROCESS = textwrap.dedent(
    """
    import hashlib, sys, time
    from pathlib import Path
    import numpy as np
    from movielab.data.preparation import prepare_token_data
    from movielab.data.readers import CsvReader
    from movielab.data.templates import Template
    from movielab.data.tokenizers import TokenizerSpec

    path, cache, barrier, me = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]), sys.argv[4]
    (barrier / me).touch()
    while len(list(barrier.iterdir())) < 2:  # start preparing together
        time.sleep(0.001)
    reader = CsvReader({"title": "name", "description": "description", "rating": "rating"})
    data = prepare_token_data(path, reader, Template(), TokenizerSpec("char"), 0.2, 0, cache)
    digest = hashlib.sha256()
    for split in (data.train, data.val):
        digest.update(np.asarray(split.tokens).tobytes())
        digest.update(split.offsets.tobytes())
    print(data.fingerprint, digest.hexdigest())
    """
)


def test_two_processes_preparing_the_same_cache_at_once_agree(tmp_path):
    path = tmp_path / "films.csv"
    rows = [f"Film {i},A plot with words number {i} and {i * 7}.,{i % 9 / 2}" for i in range(30_000)]
    path.write_text("name,description,rating\n" + "\n".join(rows) + "\n", encoding="utf-8")
    (tmp_path / "barrier").mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [
        sys.executable,
        "-c",
        PREPARE_IN_A_SUBPROCESS,
        str(path),
        str(tmp_path / "cache"),
        str(tmp_path / "barrier"),
    ]
    workers = [
        subprocess.Popen([*command, name], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
        for name in "ab"
    ]
    results = [worker.communicate(timeout=300) for worker in workers]
    assert all(worker.returncode == 0 for worker in workers), [err for _, err in results]
    assert "Traceback" not in "".join(err for _, err in results)
    (a, _), (b, _) = results
    assert a.split() == b.split() and len(a.split()) == 2
    fingerprint = a.split()[0]
    assert os.listdir(tmp_path / "cache") == [fingerprint]  # one cache, no staging folder left
    loaded = load_token_cache(tmp_path / "cache", fingerprint)  # verifies every size and digest
    assert loaded is not None and loaded.train.n_records + loaded.val.n_records == 30_000
