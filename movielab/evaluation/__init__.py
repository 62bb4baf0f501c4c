"""Evaluations of trained generators beyond the loss: text metrics, copies of training data,
rating conditioning, genre recognition; the callbacks that run them during training."""
