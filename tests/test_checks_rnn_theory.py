"""Lesson 1, RNN theory: the exercise checks accept right answers and reject wrong ones.

The right answers are the lesson's own, imported from the generated
``lstmbook.lessons.rnn_theory``; the checks compare them with torch oracles. Each check must also
reject the placeholder (with "not implemented yet"), a wrong shape (naming the expected one) and
plausible mistakes (naming what differs and, where it can, the mistake).
"""
import re

import jupytext
import pytest
import torch

from conftest import ROOT
from lstmbook.checks import ExerciseFailed, ExerciseNotDone
from lstmbook.checks import rnn_theory as check
from lstmbook.lessons import rnn_theory as rt


def placeholder(number):
    def answer(*args, **kwargs):
        raise NotImplementedError(f"Exercise {number}: a hint")
    return answer


def test_saved_functions_are_the_lessons():
    for name in ("rnn_step", "rnn_forward", "rnn_bptt", "lstm_cell", "cell_gradient_through_time"):
        assert callable(getattr(rt, name)), name


# ------------------------------------------------------------------------------------ 1.1
def test_rnn_step_passes(capsys):
    check.rnn_step(rt.rnn_step)
    assert "Exercise 1.1 passed" in capsys.readouterr().out


def test_rnn_step_accepts_numpy_output(capsys):
    check.rnn_step(lambda *a: rt.rnn_step(*a).numpy())
    assert "Exercise 1.1 passed" in capsys.readouterr().out


def test_rnn_step_placeholder():
    with pytest.raises(ExerciseNotDone, match="not implemented yet"):
        check.rnn_step(placeholder("1.1"))


@pytest.mark.parametrize("wrong, says", [
    (lambda X, H, W_xh, W_hh, b: torch.sigmoid(X @ W_xh + H @ W_hh + b), "sigmoid"),
    (lambda X, H, W_xh, W_hh, b: torch.tanh(X @ W_xh + H @ W_hh), "bias b_h is missing"),
    (lambda X, H, W_xh, W_hh, b: torch.tanh(X @ W_xh + b), "recurrent term"),
    (lambda X, H, W_xh, W_hh, b: torch.tanh(X @ W_xh + H @ W_hh.T + b), "transposed"),
    (lambda X, H, W_xh, W_hh, b: torch.tanh(X @ W_xh + H @ W_hh + b) * 1.01, "max abs error"),
])
def test_rnn_step_rejects_mistakes(wrong, says):
    with pytest.raises(ExerciseFailed) as err:
        check.rnn_step(wrong)
    message = str(err.value)
    assert "Exercise 1.1" in message and "the new state H" in message and says in message


def test_rnn_step_wrong_shape_names_expected_shape():
    with pytest.raises(ExerciseFailed, match=r"\(batch, num_hiddens\) = \(3, 5\)"):
        check.rnn_step(lambda X, H, W_xh, W_hh, b: (X @ W_xh + H @ W_hh + b).T)


# ------------------------------------------------------------------------------------ 1.2
def bptt_variant(carry=True, tanh_grad=True, h_prev_in_W_hh=True, h0_transposed=False,
                 b_h_mean=False):
    """A hand-written BPTT with one of the usual mistakes switched on."""
    def answer(X, H0, W_xh, W_hh, b_h, dH):
        Hs = rt.rnn_forward(X, H0, W_xh, W_hh, b_h)
        grads = dict(W_xh=torch.zeros_like(W_xh), W_hh=torch.zeros_like(W_hh),
                     b_h=torch.zeros_like(b_h))
        dH_next = torch.zeros_like(H0)
        for t in reversed(range(X.shape[0])):
            dA = (dH[t] + dH_next) * ((1 - Hs[t] ** 2) if tanh_grad else 1)
            H_prev = Hs[t - 1] if t > 0 else H0
            grads["W_xh"] += X[t].T @ dA
            grads["W_hh"] += (H_prev if h_prev_in_W_hh else Hs[t]).T @ dA
            grads["b_h"] += dA.mean(0) if b_h_mean else dA.sum(0)
            dH_next = dA @ W_hh.T if carry else torch.zeros_like(H0)
            if t == 0:
                grads["H0"] = dA @ (W_hh if h0_transposed else W_hh.T)
        return grads
    return answer


def test_rnn_bptt_passes(capsys):
    check.rnn_bptt(rt.rnn_bptt)
    assert "Exercise 1.2 passed" in capsys.readouterr().out


def test_rnn_bptt_reference_variant_passes(capsys):
    check.rnn_bptt(bptt_variant())  # the test's own BPTT agrees with autograd too
    assert "Exercise 1.2 passed" in capsys.readouterr().out


def test_rnn_bptt_placeholder():
    with pytest.raises(ExerciseNotDone, match="not implemented yet"):
        check.rnn_bptt(placeholder("1.2"))


@pytest.mark.parametrize("wrong, says", [
    (bptt_variant(carry=False), "not carried back through time"),
    (bptt_variant(tanh_grad=False), r"1 - H_t\*\*2"),
    (bptt_variant(h_prev_in_W_hh=False), "the gradient W_hh differs.*ENTERED step t"),
    (bptt_variant(h0_transposed=False, b_h_mean=True), "the gradient b_h differs.*over the batch"),
    (bptt_variant(h0_transposed=True), "the gradient H0 differs.*dA_1 @ W_hh.T"),
])
def test_rnn_bptt_rejects_mistakes(wrong, says):
    with pytest.raises(ExerciseFailed) as err:
        check.rnn_bptt(wrong)
    message = str(err.value)
    assert "Exercise 1.2" in message and "the gradient" in message
    assert re.search(says, message), message


def test_rnn_bptt_rejects_wrong_container_and_missing_keys():
    with pytest.raises(ExerciseFailed, match="should return a dict"):
        check.rnn_bptt(lambda *a: list(rt.rnn_bptt(*a).values()))
    with pytest.raises(ExerciseFailed, match=r"lacks the key\(s\) \['H0'\]"):
        check.rnn_bptt(lambda *a: {k: v for k, v in rt.rnn_bptt(*a).items() if k != "H0"})


def test_rnn_bptt_wrong_shape_names_expected_shape():
    def b_h_not_summed_over_batch(*args):
        grads = rt.rnn_bptt(*args)
        grads["b_h"] = grads["b_h"].expand(3, -1) / 3
        return grads
    with pytest.raises(ExerciseFailed, match=r"b_h should have shape \(num_hiddens,\) = \(5,\)"):
        check.rnn_bptt(b_h_not_summed_over_batch)


# ------------------------------------------------------------------------------------ 1.3
def lstm_variant(mistake):
    def answer(X, H_prev, C_prev, p):
        gate = lambda g: X @ p[f"W_x{g}"] + H_prev @ p[f"W_h{g}"] + p[f"b_{g}"]
        I, F, O = torch.sigmoid(gate("i")), torch.sigmoid(gate("f")), torch.sigmoid(gate("o"))
        G = torch.sigmoid(gate("g")) if mistake == "sigmoid_g" else torch.tanh(gate("g"))
        if mistake == "swap_if":
            I, F = F, I
        C = F * C_prev + I * G if mistake != "no_forget" else C_prev + I * G
        H = O * C if mistake == "no_tanh" else O * torch.tanh(C)
        return (C, H) if mistake == "order" else (H, C)
    return answer


def test_lstm_cell_passes(capsys):
    check.lstm_cell(rt.lstm_cell)
    assert "Exercise 1.3 passed" in capsys.readouterr().out


def test_lstm_cell_placeholder():
    with pytest.raises(ExerciseNotDone, match="not implemented yet"):
        check.lstm_cell(placeholder("1.3"))


@pytest.mark.parametrize("mistake, names, says", [
    ("no_tanh", "the new hidden state H", "H = o * tanh(C)"),
    ("order", "cell state C", "wrong order"),
    ("swap_if", "cell state C", "input and forget gates are swapped"),
    ("sigmoid_g", "cell state C", "takes tanh, not a sigmoid"),
    ("no_forget", "cell state C", "forget gate is missing"),
])
def test_lstm_cell_rejects_mistakes(mistake, names, says):
    with pytest.raises(ExerciseFailed) as err:
        check.lstm_cell(lstm_variant(mistake))
    message = str(err.value)
    assert "Exercise 1.3" in message and names in message and says in message
    assert "max abs error" in message


def test_lstm_cell_rejects_wrong_return():
    with pytest.raises(ExerciseFailed, match=r"should return a pair \(H, C\)"):
        check.lstm_cell(lambda *a: rt.lstm_cell(*a)[0])
    with pytest.raises(ExerciseFailed, match=r"\(batch, num_hiddens\) = \(3, 5\)"):
        check.lstm_cell(lambda *a: tuple(v.T for v in rt.lstm_cell(*a)))


# ------------------------------------------------------------------------------------ 1.4
def test_cell_gradient_passes(capsys):
    check.cell_gradient_through_time(rt.cell_gradient_through_time)
    assert "Exercise 1.4 passed" in capsys.readouterr().out


def test_cell_gradient_placeholder():
    with pytest.raises(ExerciseNotDone, match="not implemented yet"):
        check.cell_gradient_through_time(placeholder("1.4"))


@pytest.mark.parametrize("wrong, says", [
    (lambda F: torch.cumprod(F, 0), "wrong end"),
    (lambda F: torch.cat([torch.flip(torch.cumprod(torch.flip(F[1:], [0]), 0), [0]),
                          torch.ones_like(F[:1])]), "off by one"),
    (lambda F: torch.flip(torch.cumsum(torch.flip(F, [0]), 0), [0]), "product"),
    (lambda F: F.prod(0, keepdim=True).expand_as(F), "max abs error"),
])
def test_cell_gradient_rejects_mistakes(wrong, says):
    with pytest.raises(ExerciseFailed) as err:
        check.cell_gradient_through_time(wrong)
    message = str(err.value)
    assert "Exercise 1.4" in message and "the result G" in message and says in message


def test_cell_gradient_wrong_shape_names_expected_shape():
    with pytest.raises(ExerciseFailed, match=r"\(num_steps, batch, num_hiddens\) = \(7, 2, 3\)"):
        check.cell_gradient_through_time(lambda F: F.prod(0))


@pytest.mark.parametrize("number", ["1.2", "1.3"])
def test_hints_nudge_without_the_formula(number):
    """The placeholder's hint is read before trying: no formula, no code (issue 15); the
    formula is in the check's message instead."""
    notebook = jupytext.read(ROOT / "book" / "01_rnn_theory.md", fmt="md:myst")
    hint = next(c.metadata["hint"] for c in notebook.cells
                if c.metadata.get("exercise") == number)
    assert not any(token in hint for token in ("=", "@", "**", "(1 -", "sigmoid(")), hint


def test_wrong_answer_gets_the_formula_the_hint_leaves_out():
    with pytest.raises(ExerciseFailed, match=r"dA = dH_total \* \(1 - H_t\*\*2\)"):
        check.rnn_bptt(lambda *a: {k: 2 * v for k, v in rt.rnn_bptt(*a).items()})
    with pytest.raises(ExerciseFailed, match=r"C = f \* C_prev \+ i \* g; H = o \* tanh\(C\)"):
        check.lstm_cell(lambda *a: tuple(1.5 * v for v in rt.lstm_cell(*a)))
