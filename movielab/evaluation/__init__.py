"""Evaluations of trained generators beyond the loss: copies of training data, rating conditioning."""

from movielab.evaluation.callbacks import RatingConditioningReport
from movielab.evaluation.rating_conditioning import RatingEvaluation, evaluate_rating_conditioning
from movielab.evaluation.training_texts import TextIndex, TrainingTextIndex, load_training_index

__all__ = [
    "RatingConditioningReport",
    "RatingEvaluation",
    "TextIndex",
    "TrainingTextIndex",
    "evaluate_rating_conditioning",
    "load_training_index",
]
