"""lstmbook.training and lstmbook.checks: the loop's guard and the check framework's messages."""
import numpy as np
import pytest

from lstmbook import checks, training
from lstmbook.checks import intro as check_intro
from lstmbook.intro import unigram_log_probs


def test_train_loop_records_history_and_evaluates():
    losses = iter(np.linspace(3.0, 1.0, 20))
    history = training.train_loop(lambda step: next(losses), 20, eval_fn=lambda: 0.5,
                                  eval_every=5, plot=False)
    assert history.steps == list(range(20))
    assert history.losses[0] == 3.0 and history.losses[-1] == 1.0
    assert history.val_steps == [4, 9, 14, 19] and history.val_losses == [0.5] * 4


def test_train_loop_stops_on_nan_with_hint():
    values = [2.0, 1.5, float("nan"), 1.0]
    with pytest.raises(training.NonFiniteLossError, match="at step 2.*learning rate"):
        training.train_loop(lambda step: values[step], 4, plot=False)


def test_train_loop_respects_time_budget():
    history = training.train_loop(lambda step: 1.0, 10_000, plot=False, max_seconds=0.0)
    assert len(history.steps) == 1


def test_check_reports_pass(capsys):
    check_intro.unigram_log_probs(unigram_log_probs)
    assert "Exercise 0.1 passed" in capsys.readouterr().out


def test_check_rejects_placeholder():
    def placeholder(train_ids, vocab_size):
        raise NotImplementedError("Exercise 0.1: count each id")
    with pytest.raises(checks.ExerciseNotDone, match="Exercise 0.1 .* not implemented yet"):
        check_intro.unigram_log_probs(placeholder)


@pytest.mark.filterwarnings("ignore:divide by zero")
@pytest.mark.parametrize("wrong, message", [
    # no smoothing: symbols never seen get log 0 = -inf
    (lambda ids, V: np.log(np.bincount(ids, minlength=V) / len(ids)), "NaN or inf"),
    # forgot to normalise
    (lambda ids, V: np.log(np.bincount(ids, minlength=V) + 1.0), "sum to"),
    # counts only the symbols seen (no minlength): wrong shape
    (lambda ids, V: np.log((np.bincount(ids) + 1.0) / (np.bincount(ids) + 1.0).sum()), "shape"),
    # ignores the counts: the uniform model
    (lambda ids, V: np.log(np.full(V, 1.0 / V)), "differs from the reference"),
])
def test_check_rejects_wrong_unigram(wrong, message):
    with pytest.raises(checks.ExerciseFailed, match=message):
        check_intro.unigram_log_probs(wrong)


def test_expect_close_names_shape():
    with pytest.raises(checks.ExerciseFailed, match=r"H has shape \(2,\), expected \(3,\)"):
        checks.expect_close("H", np.zeros(2), np.zeros(3))
