"""Read generated samples back from files: movielab.generate's `<run>/samples/*.txt`, or plain text
with one sample per line, so any generator's output can be evaluated alike."""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from pathlib import Path

from movielab.data.readers.lines import iter_text_lines
from movielab.errors import MovielabError

SAMPLE_MARKER = re.compile(r"^=== sample \d+( \(.*\))? ===$")  # (...): e.g. cut off
HEADER_CKPT = re.compile(r"^# ckpt=(\S+)")
HEADER_GENRES = re.compile(r"\bgenres=(\[[^\]]*\]|'[^']*'|\"[^\"]*\")")


@dataclass
class SampleFile:
    """The samples of one file, and what its header says: the checkpoint and requested genres."""

    path: Path
    samples: list[str]
    ckpt: str | None = None
    genres: list[str] = field(default_factory=list)


def read_sample_file(path: str | Path) -> SampleFile:
    """movielab.generate's format (a `# ckpt=...` header, then `=== sample N ===` blocks) when the
    file has sample markers; otherwise every non-empty line not starting with `#` is a sample."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise MovielabError(f"samples file not found: {path}")
    lines = [line.rstrip("\r\n") for line in iter_text_lines(path)]
    headers = [line for line in lines if line.startswith("# ")]
    ckpt = next((m.group(1) for m in map(HEADER_CKPT.match, headers) if m), None)
    genres = _header_genres(path, headers)
    if any(SAMPLE_MARKER.match(line) for line in lines):
        samples, current = [], None
        for line in lines:
            if SAMPLE_MARKER.match(line):
                if current is not None:
                    samples.append("\n".join(current).strip("\n"))
                current = []
            elif current is not None:
                current.append(line)
        if current is not None:
            samples.append("\n".join(current).strip("\n"))
    else:
        samples = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    samples = [s for s in samples if s.strip()]
    if not samples:
        raise MovielabError(f"{path}: no samples found (expected '=== sample N ===' blocks or one per line)")
    return SampleFile(path, samples, ckpt, genres)


def _header_genres(path: Path, headers: list[str]) -> list[str]:
    for header in headers:
        match = HEADER_GENRES.search(header)
        if match:
            try:
                value = ast.literal_eval(match.group(1))
            except (ValueError, SyntaxError):
                raise MovielabError(f"{path}: cannot read the header's genres={match.group(1)}") from None
            return [value] if isinstance(value, str) else [str(v) for v in value]
    return []
