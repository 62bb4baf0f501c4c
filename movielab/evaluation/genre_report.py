"""A genre classifier's validation scores as a Markdown table: per genre, most frequent first."""

from __future__ import annotations

from collections.abc import Sequence

from movielab.models.genre_classifier import ValidationScores
from movielab.reports import markdown_table


def classification_report(validation: ValidationScores, genres: Sequence[str], threshold_metric: str) -> str:
    """Per-genre precision/recall/F1 on validation, then the micro and macro averages."""
    scores, support = validation.scores, validation.support
    order = sorted(range(len(genres)), key=lambda i: (-support[i], genres[i]))
    rows = [
        [genres[i], support[i], *(float(scores[k][i]) for k in ("precision", "recall", "f1"))] for i in order
    ]
    for average in ("micro", "macro"):
        rows.append(
            [
                f"{average} average",
                sum(support),
                *(float(scores[f"{k}_{average}"]) for k in ("precision", "recall", "f1")),
            ]
        )
    header = (
        f"Validation at step {validation.step}: {validation.records} labelled records, threshold "
        f"{validation.threshold:.2f} (chosen on validation for {threshold_metric}); "
        f"micro F2 {float(scores['f2_micro']):.3f}, macro F2 {float(scores['f2_macro']):.3f}\n\n"
    )
    return header + markdown_table(["genre", "support", "precision", "recall", "F1"], rows)
