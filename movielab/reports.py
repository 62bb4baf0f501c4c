"""Markdown tables for the reports runs leave behind."""

from __future__ import annotations

from collections.abc import Sequence


def format_cell(value: object, digits: int = 3) -> str:
    if isinstance(value, float):
        return "n/a" if value != value else f"{value:.{digits}f}"
    return str(value).replace("|", "\\|")


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]], digits: int = 3) -> str:
    lines = [
        "| " + " | ".join(headers) + " |",
        "|" + "|".join("---" for _ in headers) + "|",
        *("| " + " | ".join(format_cell(cell, digits) for cell in row) + " |" for row in rows),
    ]
    return "\n".join(lines) + "\n"
