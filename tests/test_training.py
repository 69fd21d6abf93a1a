"""lstmbook.training and lstmbook.checks: the loop's guard and the check framework's messages."""
import math
import time

import numpy as np
import pytest

from lstmbook import checks, training
from lstmbook.checks import intro as check_intro
from lstmbook.lessons.intro import unigram_log_probs


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


def test_run_for_stops_on_the_budget_and_evaluates_at_the_end():
    history = training.run_for(0.0, lambda step, progress: 1.0, eval_fn=lambda: 0.5, plot=False)
    assert history.steps == [0] and history.val_steps == [0] and history.val_losses == [0.5]


def test_run_for_stops_at_max_steps_and_passes_progress():
    seen = []
    history = training.run_for(60.0, lambda step, progress: seen.append(progress) or 1.0,
                               max_steps=4, eval_fn=lambda: 0.5, evals=2, plot=False)
    assert history.num_steps == 4 and len(seen) == 4
    assert seen[0] == pytest.approx(0.0, abs=0.01) and seen[2] == pytest.approx(0.5, abs=0.01)
    assert history.val_steps == [1, 3]  # at half and at the end, not twice at the end


def test_run_for_evaluates_evenly_over_the_budget(monkeypatch):
    now = [0.0]
    monkeypatch.setattr(training.time, "perf_counter", lambda: now[0])

    def step(_, progress):  # each step takes one second
        now[0] += 1.0
        return 1.0
    history = training.run_for(10.0, step, eval_fn=lambda: 0.5, evals=5, plot=False)
    assert history.val_steps == [1, 3, 5, 7, 9] and history.num_steps == 10
    assert history.val_times == [2.0, 4.0, 6.0, 8.0, 10.0]


def test_run_for_can_leave_evaluations_out_of_the_budget(monkeypatch):
    now = [0.0]
    monkeypatch.setattr(training.time, "perf_counter", lambda: now[0])

    def step(_, progress):
        now[0] += 1.0
        return 1.0

    def slow_eval():  # ten seconds per evaluation
        now[0] += 10.0
        return 0.5
    paused = training.run_for(4.0, step, eval_fn=slow_eval, evals=2, plot=False,
                              pause_clock_for_eval=True)
    counted = training.run_for(4.0, step, eval_fn=slow_eval, evals=2, plot=False)
    assert paused.num_steps == 4 and paused.val_times == [2.0, 4.0]
    assert counted.num_steps == 2 and counted.val_times == [12.0]  # one evaluation spent it


def test_run_for_stops_early_when_after_eval_says_so():
    history = training.run_for(60.0, lambda step, progress: 1.0, max_steps=100, evals=10,
                               eval_fn=lambda: 0.5, after_eval=lambda h: len(h.val_losses) == 3,
                               plot=False)
    assert len(history.val_losses) == 3 and history.num_steps == 30


def test_run_for_skips_steps_that_read_no_loss():
    history = training.run_for(60.0, lambda step, progress: None if step % 2 else 2.0,
                               max_steps=6, plot=False)
    assert history.num_steps == 6 and history.steps == [0, 2, 4]


def test_run_for_stops_on_nan_naming_the_run():
    with pytest.raises(training.NonFiniteLossError, match=r"step 3 \(make train\).*learning"):
        training.run_for(60.0, lambda step, progress: math.nan if step == 3 else 1.0,
                         plot=False, context="make train")


def test_clock_pauses():
    clock = training.Clock(10.0)
    with clock.paused():
        time.sleep(0.05)
    assert clock.elapsed < 0.04 and not clock.done and clock.progress < 0.01


def test_cosine_lr_warms_up_then_decays_to_its_floor():
    assert training.cosine_lr(0.0, 1e-2) == pytest.approx(1e-2)
    assert training.cosine_lr(0.5, 1e-2) == pytest.approx(5.5e-3)
    assert training.cosine_lr(1.0, 1e-2) == pytest.approx(1e-3)  # a tenth by default
    assert training.cosine_lr(2.0, 1e-2) == pytest.approx(1e-3)
    assert training.cosine_lr(0.05, 1e-2, 1e-4, warmup=0.1) == pytest.approx(5e-3)
    assert training.cosine_lr(0.1, 1e-2, 1e-4, warmup=0.1) == pytest.approx(1e-2)
    assert training.cosine_lr(1.0, 1e-2, 1e-4, warmup=0.1) == pytest.approx(1e-4)
    lrs = [training.cosine_lr(f, 1e-2, 1e-4, warmup=0.1) for f in np.linspace(0.1, 1.0, 20)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))


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
