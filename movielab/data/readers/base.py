"""What every reader offers besides `read`: the files it reads beside data.path (none by default)."""

from __future__ import annotations

from pathlib import Path


class FileReader:
    def companion_files(self, path: str | Path) -> list[Path]:
        """Files read besides `path` (IMDb's ratings beside title.basics.tsv): their content is
        part of the token-cache key."""
        return []
