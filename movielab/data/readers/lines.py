"""Line-by-line UTF-8 reading that names the file and line of any bad byte."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from movielab.errors import MovielabError


def iter_text_lines(path: str | Path) -> Iterator[str]:
    """Yield the file's lines (line endings kept), streamed, so large files need little memory."""
    with open(path, "rb") as handle:
        for line_number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise MovielabError(
                    f"{path}:{line_number}: byte 0x{raw[exc.start]:02x} at column {exc.start + 1} is not "
                    "valid UTF-8; re-encode the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)"
                ) from None
            if line_number == 1:
                line = line.removeprefix("\ufeff")
            yield line
