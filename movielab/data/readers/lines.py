"""Line-by-line UTF-8 reading that names the file and line of any bad byte.

Every reader reads its files through `iter_text_lines`, so one policy holds for all of them:
- invalid UTF-8 and NUL bytes stop the reading with a one-line MovielabError naming file:line
  (a NUL means a binary, UTF-16 or damaged file: there is no text to train on);
- other control characters (C0 except tab, newline and carriage return; DEL; C1 U+0080-U+009F)
  are removed from the text and counted: one warning line per file gives the count, the
  characters and the first file:line. C1 characters are almost always Windows-1252 punctuation
  that was decoded as Latin-1 (U+0092 for a right quote): re-decode such a file to keep them.

The file is checked in blocks of whole lines (a C-speed scan), and only a block that holds a
control character is cleaned byte by byte, so clean files pay almost nothing for the check.
"""

from __future__ import annotations

import io
import logging
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from movielab.errors import MovielabError

log = logging.getLogger(__name__)

BLOCK_SIZE = 1 << 20
_C0_AND_DEL = bytes([*range(1, 9), 11, 12, *range(14, 32), 127])  # NUL has its own check
_CONTROL = re.compile(rb"[\x01-\x08\x0b\x0c\x0e-\x1f\x7f]|\xc2[\x80-\x9f]")
_C1 = re.compile(rb"\xc2[\x80-\x9f]")
_UTF16_MARKS = (b"\xff\xfe", b"\xfe\xff")


class RemovedControls:
    """What was taken out of one file, for its warning line."""

    def __init__(self) -> None:
        self.characters: Counter[str] = Counter()
        self.lines = 0
        self.first_line = 0

    def remove(self, block: bytes, first_line: int) -> bytes:
        """`block` without its control characters; `first_line` is the number of its first line."""
        line, position, last_line = first_line, 0, 0
        for match in _CONTROL.finditer(block):
            line += block.count(b"\n", position, match.start())
            position = match.start()
            self.characters[match.group().decode("utf-8")] += 1
            if line != last_line:
                self.lines += 1
                last_line = line
            self.first_line = self.first_line or line
        return _CONTROL.sub(b"", block)

    def report(self, path: Path) -> None:
        if not self.characters:
            return
        listed = ", ".join(f"U+{ord(c):04X} x{n}" for c, n in sorted(self.characters.items()))
        log.warning(
            "%s: removed %d control characters (%s) from %d lines, the first at line %d%s",
            path,
            sum(self.characters.values()),
            listed,
            self.lines,
            self.first_line,
            "; U+0080-U+009F are usually Windows-1252 punctuation decoded as Latin-1"
            if any("\x80" <= c <= "\x9f" for c in self.characters)
            else "",
        )


def _has_controls(block: bytes) -> bool:
    return len(block.translate(None, _C0_AND_DEL)) != len(block) or (
        b"\xc2" in block and _C1.search(block) is not None
    )


def _line_blocks(handle: BinaryIO) -> Iterator[bytes]:
    """The file in blocks of about BLOCK_SIZE bytes that end at a line end (the last one may not)."""
    pending: list[bytes] = []
    while block := handle.read(BLOCK_SIZE):
        cut = block.rfind(b"\n") + 1
        if not cut:  # a line longer than a block
            pending.append(block)
            continue
        yield b"".join([*pending, block[:cut]])
        pending = [block[cut:]]
    if rest := b"".join(pending):
        yield rest


def _not_text(path: Path, line: int, column: int, what: str, utf16: bool) -> MovielabError:
    advice = (
        "the file is UTF-16: save it as UTF-8"
        if utf16
        else "re-encode the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)"
        if "UTF-8" in what
        else "the file is binary or damaged, not text"
    )
    return MovielabError(f"{path}:{line}: {what} at column {column}; {advice}")


def iter_text_lines(path: str | Path) -> Iterator[str]:
    """Yield the file's lines (line endings kept), streamed, so large files need little memory."""
    path = Path(path)
    removed = RemovedControls()
    line_number = 0
    with open(path, "rb") as handle:
        utf16 = handle.read(2) in _UTF16_MARKS
        handle.seek(0)
        for block in _line_blocks(handle):
            if (nul := block.find(b"\x00")) >= 0:
                line = line_number + block.count(b"\n", 0, nul) + 1
                column = nul - (block.rfind(b"\n", 0, nul) + 1) + 1
                raise _not_text(path, line, column, "NUL byte", utf16)
            if _has_controls(block):
                block = removed.remove(block, line_number + 1)
            for raw in io.BytesIO(block):
                line_number += 1
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    what = f"byte 0x{raw[exc.start]:02x} is not valid UTF-8"
                    raise _not_text(path, line_number, exc.start + 1, what, utf16) from None
                if line_number == 1:
                    line = line.removeprefix("\ufeff")
                yield line
    removed.report(path)
