"""Lesson 7: the saved functions against hand-computed cases and direct counts; the exercise
checks accept the right answers and reject the placeholder and plausible wrong ones."""
import math
from collections import Counter

import numpy as np
import pytest
import torch

from lstmbook import data, lm
from lstmbook.checks import ExerciseFailed, ExerciseNotDone
from lstmbook.checks import memory as check
from lstmbook.lessons import memory as m

# --- the n-gram model ----------------------------------------------------------------------------

def test_context_codes_by_hand():
    ids = np.array([1, 2, 3, 4])
    assert m.context_codes(ids, 0, 10).tolist() == [0, 0, 0, 0]
    assert m.context_codes(ids, 1, 10).tolist() == [1, 2, 3, 4]
    assert m.context_codes(ids, 2, 10).tolist() == [-1, 12, 23, 34]  # most recent = lowest digit
    assert m.context_codes(ids[None], 3, 10).tolist() == [[-1, -1, 123, 234]]
    with pytest.raises(ValueError, match="too long"):
        m.context_codes(ids, 10, 65)


def test_ngram_counts_by_hand():
    vocab = data.Vocab("abcd")
    table = m.NGramCounts(vocab.encode("abcabdab"), 2, len(vocab))
    ab, ca, zz = (m.context_codes(vocab.encode(h), 2, 4)[-1] for h in ("ab", "ca", "dd"))
    rows = table.rows([ab, ca, zz, -1])
    assert rows.tolist() == [[0, 0, 1, 1], [0, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]
    assert table.find([ab, zz])[1].tolist() == [True, False]
    unigram = m.NGramCounts(vocab.encode("abcabdab"), 0, 4).rows([0])[0]
    assert unigram.tolist() == [2, 3, 1, 1]  # the characters after the first: bcabdab
    with pytest.raises(ValueError, match="no context of order 3"):
        m.NGramCounts(vocab.encode("abc"), 3, 4)


def test_discounted_by_hand():
    counts = np.array([[2.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    lower = np.array([[0.5, 0.25, 0.25], [0.2, 0.3, 0.5]])
    # row 0: N = 3, T = 2: (2 - .5)/3 + (.5 * 2/3) * .5, (1 - .5)/3 + 1/3 * .25, 0 + 1/3 * .25
    np.testing.assert_allclose(m.discounted(counts, lower, 0.5),
                               [[2 / 3, 1 / 4, 1 / 12], [0.2, 0.3, 0.5]])


def direct_probs(train: str, history: str, order: int, alphabet: list, delta: float) -> dict:
    """P_order(. | history) by the recursion, counting with Counter on the raw text."""
    if order < 0:
        return {c: 1 / len(alphabet) for c in alphabet}
    lower = direct_probs(train, history, order - 1, alphabet, delta)
    if len(history) < order:
        return lower
    h = history[len(history) - order:]
    first = 1 if order == 0 else 0  # a pair is (context, next): the first character follows none
    after = Counter(train[i + order] for i in range(first, len(train) - order)
                    if train[i:i + order] == h)
    n, t = sum(after.values()), len(after)
    if n == 0:
        return lower
    return {c: max(after[c] - delta, 0) / n + delta * t / n * lower[c] for c in alphabet}


def test_ngram_model_equals_a_direct_count():
    train, val = "the cat sat on the mat and the rat ate the hat", "that rat sat"
    vocab = data.Vocab(train + val)
    model = m.NGram(vocab.encode(train), 3, len(vocab), discount=0.6)
    log_p = model.log_probs(vocab.encode(val)[None], 3)[0]  # (len(val), V)
    for t in range(len(val)):
        expected = direct_probs(train, val[:t + 1], 3, vocab.chars, 0.6)
        np.testing.assert_allclose(np.exp(log_p[t]), [expected[c] for c in vocab.chars],
                                   rtol=1e-12, err_msg=f"position {t}, history {val[:t + 1]!r}")
    assert np.allclose(np.exp(log_p).sum(-1), 1)
    with pytest.raises(ValueError, match="max_order"):
        model.log_probs(vocab.encode(val)[None], 4)


def test_ngram_validation_loss_is_the_course_score():
    text = "to be, or not to be: that is the question.\n" * 30
    vocab = data.Vocab(text)
    ids = vocab.encode(text)
    corpus = data.Corpus(text, vocab, ids[:800], ids[800:])
    loss = m.ngram_validation_loss(corpus, 2)
    model = m.NGram(corpus.train, 2, len(vocab))
    X, Y = lm.validation_windows(corpus.val)
    by_hand = np.mean([-math.log(p) for p in np.take_along_axis(
        np.exp(model.log_probs(X, 2)), Y[..., None], -1).reshape(-1)])
    assert loss == pytest.approx(by_hand, rel=1e-12)
    assert loss < math.log(len(vocab))


def test_ngram_samples_through_lm_sample():
    vocab = data.Vocab("abab cd")
    model = m.NGram(vocab.encode("abab cd abab"), 2, len(vocab))
    text = lm.sample(m.ngram_step_fn(model, 2), vocab, "ab", 20, rng=np.random.default_rng(0))
    assert text.startswith("ab") and len(text) == 22


# --- loss by position ----------------------------------------------------------------------------

def test_char_losses_by_hand():
    logits = np.array([[[0.0, 0.0], [math.log(3), 0.0]]])  # (1, 2, 2)
    np.testing.assert_allclose(m.char_losses(logits, np.array([[0, 1]])),
                               [[math.log(2), math.log(4)]])
    big = np.array([[[1000.0, 0.0]]])
    assert m.char_losses(big, np.array([[1]]))[0, 0] == pytest.approx(1000)


def test_window_losses_average_to_the_validation_loss():
    rng = np.random.default_rng(0)
    val = rng.integers(0, 5, 3000)
    table = rng.standard_normal((5, 5))

    def logits_fn(X):
        return table[X]  # (batch, window, 5): depends on the current character only

    per_char = m.window_losses(logits_fn, val, max_windows=100, batch_size=4)
    assert per_char.shape == ((3000 - 1) // lm.WINDOW, lm.WINDOW)
    assert per_char.mean() == pytest.approx(lm.validation_loss(logits_fn, val, max_windows=100))


def test_binned_by_hand():
    ends, means = m.binned(np.arange(1.0, 9.0))  # positions 1..8 hold the values 1..8
    assert ends.tolist() == [1, 2, 4, 8]
    assert means.tolist() == [1.0, 2.0, 3.5, 6.5]


@pytest.fixture(scope="module")
def small_lstm():
    torch.manual_seed(0)
    return m.char_model("LSTM", 7, hidden=6, embed=3).eval()


def test_carried_losses_run_each_stream_from_zero_once(small_lstm):
    ids = np.random.default_rng(1).integers(0, 7, 41)
    carried = m.carried_losses(small_lstm, ids, streams=2)  # two streams of 20 characters
    assert carried.shape == (2, 20)
    for s, part in enumerate((ids[:21], ids[20:41])):       # each stream alone, from zero
        logits = m.model_logits_fn(small_lstm)(part[None, :-1])
        np.testing.assert_allclose(carried[s], m.char_losses(logits, part[None, 1:])[0],
                                   rtol=1e-5)


# --- the adding problem --------------------------------------------------------------------------

def test_adding_batch_structure():
    X, y = m.adding_batch(np.random.default_rng(0), 5, 8)
    assert X.shape == (5, 8, 2) and y.shape == (5,) and X.dtype == np.float32
    for b in range(5):
        marked = np.flatnonzero(X[b, :, 1])
        assert marked[0] == 0 and len(marked) == 2 and 1 <= marked[1] <= 3
        assert y[b] == pytest.approx(X[b, marked, 0].sum())
    with pytest.raises(ValueError, match="at least 4"):
        m.adding_batch(np.random.default_rng(0), 2, 3)


@pytest.mark.parametrize("cell", ["RNN", "GRU", "LSTM"])
def test_adding_params_counts_what_pytorch_allocates(cell):
    for hidden in (1, 7, 16, 34):
        assert m.adding_params(cell, hidden) == m.num_params(m.AddingModel(cell, hidden))
    target = m.adding_params("LSTM", 16)
    width = m.matched_hidden(cell, target)
    assert all(abs(m.adding_params(cell, width) - target)
               <= abs(m.adding_params(cell, h) - target) for h in range(1, 100))


def test_breaking_length_by_hand():
    assert m.breaking_length([10, 20, 40], [0.9, 0.6, 0.3]) == 40
    assert m.breaking_length([10, 20, 40], [0.9, 0.5, 0.3]) == 40  # 0.5 still holds
    assert m.breaking_length([10, 20], [0.9, 0.8]) is None


def test_train_adding_runs_on_the_clock():
    model = m.AddingModel("LSTM", 4)
    history = m.train_adding(model, 0.3, [10, 20])
    assert history.num_steps >= 1
    assert 0 <= m.adding_accuracy(model, 10, n=50) <= 1


# --- inside the cell -----------------------------------------------------------------------------

def test_lstm_internals_equal_nn_lstm(small_lstm):
    X = np.random.default_rng(2).integers(0, 7, (3, 9))
    inside = m.lstm_internals(small_lstm, X)
    with torch.no_grad():
        H, (h_n, c_n) = small_lstm.core(small_lstm.embed(torch.as_tensor(X)))
    np.testing.assert_allclose(inside["H"], H.numpy(), atol=1e-6)
    np.testing.assert_allclose(inside["C"][:, -1], c_n[0].numpy(), atol=1e-6)
    for gate in "IFO":
        assert inside[gate].min() >= 0 and inside[gate].max() <= 1
    assert inside["G"].shape == (3, 9, 6)


def test_saturation_by_hand():
    gate = np.array([[0.05, 0.5], [0.95, 0.1], [0.9, 0.99]])  # 3 steps, 2 units
    left, right = m.saturation(gate)
    assert left.tolist() == [1 / 3, 0.0]   # 0.1 is not below 0.1
    assert right.tolist() == [1 / 3, 1 / 3]  # 0.9 is not above 0.9


def test_most_correlated_by_hand():
    f = np.array([0.0, 1.0, 2.0, 3.0])
    A = np.stack([f + np.array([0.5, -0.5, 0.5, -0.5]), -f, np.full(4, 2.0)], axis=1)
    unit, r = m.most_correlated(A, f)
    assert unit == 1 and r == pytest.approx(-1.0)


def test_text_features_by_hand():
    features = m.text_features("ROMEO:\nYes, sir.\n")
    assert features["position in the line"].tolist() == [0, 1, 2, 3, 4, 5, 6,
                                                         0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
    assert features["inside a speaker's name"].tolist() == [1] * 5 + [0] * 12
    assert features["after punctuation"].tolist() == [0] * 5 + [1, 1] + [0, 0, 0, 1, 1, 0, 0, 0,
                                                                          1, 1]


def test_silence_unit_zeroes_one_hidden_state_and_nothing_else(small_lstm):
    X = np.random.default_rng(3).integers(0, 7, (2, 12))
    silenced = m.silence_unit(small_lstm, 4)
    H = m.lstm_internals(silenced, X)["H"]
    assert np.all(H[..., 4] == 0) and np.any(H[..., :4] != 0)
    assert small_lstm.core.bias_ih_l0[3 * 6 + 4] > -100  # the original is untouched


def test_colored_text_is_offline_html():
    out = m.colored_text("a<b\n", np.array([1.0, -0.5, 0.0, 2.0]))
    assert out.count("<span") == 4 and "&lt;" in out and "↵" in out
    assert "http" not in out and "<script" not in out and "class=" not in out
    assert "rgba(220, 50, 47, 0.50)" in out and "rgba(38, 139, 210, 0.25)" in out


# --- the checks ----------------------------------------------------------------------------------

def placeholder(number):
    def answer(*args, **kwargs):
        raise NotImplementedError(f"Exercise {number}: a hint")
    return answer


CHECKS = [(check.discounted, m.discounted, "7.1"), (check.char_losses, m.char_losses, "7.2"),
          (check.adding_batch, m.adding_batch, "7.3"), (check.saturation, m.saturation, "7.4"),
          (check.most_correlated, m.most_correlated, "7.5")]


@pytest.mark.parametrize("run, answer, number", CHECKS, ids=[c[2] for c in CHECKS])
def test_check_accepts_the_lesson_answer(run, answer, number, capsys):
    run(answer)
    assert f"Exercise {number} passed" in capsys.readouterr().out


@pytest.mark.parametrize("run, answer, number", CHECKS, ids=[c[2] for c in CHECKS])
def test_check_rejects_the_placeholder(run, answer, number):
    with pytest.raises(ExerciseNotDone, match=f"{number}.*not implemented yet"):
        run(placeholder(number))


def no_lower_order(counts, lower, discount=0.75):
    N = counts.sum(1, keepdims=True)
    return np.where(N > 0, np.maximum(counts - discount, 0) / np.maximum(N, 1), lower)


def maximum_likelihood(counts, lower, discount=0.75):
    N = counts.sum(1, keepdims=True)
    return np.where(N > 0, counts / np.maximum(N, 1), lower)


def divides_by_zero(counts, lower, discount=0.75):
    N = counts.sum(1, keepdims=True)
    T = (counts > 0).sum(1, keepdims=True)
    with np.errstate(all="ignore"):
        return np.maximum(counts - discount, 0) / N + discount * T / N * lower


def weight_delta(counts, lower, discount=0.75):
    N = counts.sum(1, keepdims=True)
    P = np.maximum(counts - discount, 0) / np.maximum(N, 1) + discount * lower
    return np.where(N > 0, P, lower)


@pytest.mark.parametrize("wrong, message", [
    (no_lower_order, "sums to .*weight of the lower order"),
    (weight_delta, "sums to"),
    (maximum_likelihood, r"P\(\. \| 'at'\).*differs.*subtract the discount"),
    (divides_by_zero, "never seen.*N\\(h\\) = 0"),
])
def test_discounted_rejects(wrong, message):
    with pytest.raises(ExerciseFailed, match=message):
        check.discounted(wrong)


def log_softmax_unshifted(logits, targets):
    with np.errstate(all="ignore"):
        P = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
        return -np.log(np.take_along_axis(P, targets[..., None], -1)[..., 0])


@pytest.mark.parametrize("wrong, message", [
    (lambda z, y: m.char_losses(z, y).mean(), "one loss per character"),
    (log_softmax_unshifted, "NaN or inf.*largest logit"),
    (lambda z, y: -m.char_losses(z, y), "negative.*sign"),
    (lambda z, y: m.char_losses(z, np.zeros_like(y)), "differs from the reference"),
])
def test_char_losses_rejects(wrong, message):
    with pytest.raises(ExerciseFailed, match=message):
        check.char_losses(wrong)


def adding_variant(second_high=None, target=None, values=None, use_global=False, dtype=np.float32):
    def answer(rng, batch, length):
        draw = np.random if use_global else rng
        X = np.zeros((batch, length, 2), dtype)
        X[:, :, 0] = (values(draw, batch, length) if values
                      else draw.uniform(-1, 1, (batch, length)))
        second = draw.integers(1, second_high(length), size=batch) if not use_global else \
            draw.randint(1, length // 2, size=batch)
        rows = np.arange(batch)
        X[:, 0, 1] = X[rows, second, 1] = 1
        y = target(X) if target else X[:, 0, 0] + X[rows, second, 0]
        return X, y
    return answer


@pytest.mark.parametrize("wrong, message", [
    (adding_variant(second_high=lambda n: n), "first half"),
    (adding_variant(second_high=lambda n: n // 2, target=lambda X: X[:, 0, 0] + X[:, 1, 0]),
     "sum of the two marked values"),
    (adding_variant(second_high=lambda n: n // 2, values=lambda r, b, n: r.uniform(0, 1, (b, n))),
     "mean .* uniform in \\[-1, 1\\)"),
    (adding_variant(use_global=True), "rng"),
    (adding_variant(second_high=lambda n: n // 2, dtype=np.float64), "float32"),
])
def test_adding_batch_rejects(wrong, message):
    with pytest.raises(ExerciseFailed, match=message):
        check.adding_batch(wrong)


def at_or_beyond(gate, low=0.1, high=0.9):
    g = np.asarray(gate).reshape(-1, np.shape(gate)[-1])
    return (g <= low).mean(0), (g >= high).mean(0)


@pytest.mark.parametrize("wrong, message", [
    (at_or_beyond, "strictly"),
    (lambda g, low=0.1, high=0.9: tuple(x * g[..., 0].size for x in m.saturation(g, low, high)),
     "fractions.*not counts"),
    (lambda g, low=0.1, high=0.9: m.saturation(g, low, high)[::-1], "swapped"),
    (lambda g, low=0.1, high=0.9: ((g < low).mean(0), (g > high).mean(0)),
     "one fraction per unit"),
])
def test_saturation_rejects(wrong, message):
    with pytest.raises(ExerciseFailed, match=message):
        check.saturation(wrong)


def signed_argmax(A, f):
    unit, _ = m.most_correlated(A, f)
    r = [np.corrcoef(A[:, u], f)[0, 1] if np.ptp(A[:, u]) else 0 for u in range(A.shape[1])]
    best = int(np.argmax(r))
    return best, r[best]


def pearson_with_nan(A, f):
    A, f = A - A.mean(0), f - f.mean()
    with np.errstate(all="ignore"):
        r = (A * f[:, None]).sum(0) / np.sqrt((A ** 2).sum(0) * (f ** 2).sum())
    unit = int(np.argmax(np.abs(r)))
    return unit, r[unit]


@pytest.mark.parametrize("wrong, message", [
    (signed_argmax, "magnitude decides"),
    (lambda A, f: (m.most_correlated(A, f)[0], abs(m.most_correlated(A, f)[1])), "lost its sign"),
    (pearson_with_nan, "NaN.*0 / 0.*Count its correlation as 0"),
])
def test_most_correlated_rejects(wrong, message):
    with pytest.raises(ExerciseFailed, match=message):
        check.most_correlated(wrong)
