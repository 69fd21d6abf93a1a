"""Checks for lesson 0 (book/00_intro.md)."""
import numpy as np

from . import ExerciseFailed, exercise, expect_close


@exercise("0.1", "a unigram model")
def unigram_log_probs(answer):
    # Fixed case worked by hand: ids [0, 0, 2] over 4 symbols -> counts+1 = [3, 1, 2, 1] / 7.
    got = answer(np.array([0, 0, 2]), 4)
    expected = np.log(np.array([3.0, 1.0, 2.0, 1.0]) / 7.0)
    if np.shape(got) != (4,):
        raise ExerciseFailed(f"expected one log probability per symbol, shape (4,) for "
                             f"vocab_size=4, got shape {np.shape(got)}")
    total = np.exp(np.asarray(got, dtype=np.float64)).sum()
    if not np.isclose(total, 1.0):
        raise ExerciseFailed(f"the probabilities exp(log p) sum to {total:.4g}, not 1. Hint: "
                             "divide the smoothed counts by their total, N + V, before taking "
                             "the log")
    expect_close("log p for ids [0, 0, 2], vocab_size=4", got, expected,
                 hint="add 1 to every count (Laplace smoothing), including symbols never seen")
