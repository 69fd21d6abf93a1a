"""Checks for lesson 7 (book/07_memory.md).

Every oracle is computed here from the raw definition, independently of the lesson's code:

- 7.1 counts a short text with ``collections.Counter`` and evaluates interpolated absolute
  discounting with exact fractions (``fractions.Fraction``);
- 7.2 computes each character's cross-entropy one at a time with ``math``;
- 7.3 inspects the arrays of the adding problem directly (markers, ranges, sums, spread);
- 7.4 counts saturated entries one at a time, with values exactly at the thresholds;
- 7.5 compares with NumPy's ``corrcoef`` on activations built so the answer is known.
"""
import math
from collections import Counter
from fractions import Fraction

import numpy as np

from . import ExerciseFailed, as_array, exercise, expect_close

# --- 7.1 -----------------------------------------------------------------------------------------

TEXT = "the cat sat on the mat. that hat? the rat ran at that cat!"
ORDER = 2


def count_rows(text: str, order: int, contexts: list[str], alphabet: list[str]) -> np.ndarray:
    """N(h, c) for each context h (rows) and character c (columns), counted directly."""
    pairs = Counter((text[i - order:i], text[i]) for i in range(order, len(text)))
    return np.array([[pairs[(h, c)] for c in alphabet] for h in contexts], dtype=np.float64)


def discounted_oracle(counts: np.ndarray, lower: list[list[Fraction]], discount: Fraction):
    """The definition, row by row, in exact arithmetic."""
    rows = []
    for row, low in zip(counts, lower):
        n = sum(Fraction(int(x)) for x in row)
        if n == 0:
            rows.append([float(p) for p in low])
            continue
        t = sum(1 for x in row if x > 0)
        rows.append([float(max(Fraction(int(x)) - discount, 0) / n + discount * t / n * p)
                     for x, p in zip(row, low)])
    return np.array(rows)


def _lower(alphabet: list[str], rows: int) -> list[list[Fraction]]:
    """Fixed, different lower-order distributions (exact) for each row."""
    out = []
    for r in range(rows):
        weights = [Fraction(1 + (i * (r + 3)) % 7) for i in range(len(alphabet))]
        total = sum(weights)
        out.append([w / total for w in weights])
    return out


@exercise("7.1", "Interpolated absolute discounting")
def discounted(fn):
    alphabet = sorted(set(TEXT))
    contexts = ["at", "th", "he", "an", "zq"]             # "zq" never occurs
    counts = count_rows(TEXT, ORDER, contexts, alphabet)
    lower = _lower(alphabet, len(contexts))
    lower_f = np.array([[float(p) for p in row] for row in lower])
    for discount in (Fraction(3, 4), Fraction(1, 2)):
        got = as_array(fn(counts.copy(), lower_f.copy(), float(discount)), "discounted(...)")
        if got.shape != counts.shape:
            raise ExerciseFailed(f"discounted returned shape {got.shape}, expected "
                                 f"{counts.shape}: one row of probabilities per context")
        unseen = got[-1]
        if not np.all(np.isfinite(unseen)):
            raise ExerciseFailed(
                f"the row of a context never seen ({contexts[-1]!r}, N(h) = 0) holds NaN or inf:"
                " that is a division by N(h) = 0. Such a row should be `lower` itself.")
        if not np.allclose(unseen, lower_f[-1], atol=1e-12):
            raise ExerciseFailed(f"the row of a context never seen ({contexts[-1]!r}, "
                                 "N(h) = 0) should be `lower` itself, the estimate of the "
                                 "shorter context")
        sums = got.sum(axis=1)
        if not np.allclose(sums, 1.0, atol=1e-9):
            i = int(np.argmax(np.abs(sums - 1)))
            raise ExerciseFailed(
                f"the row of context {contexts[i]!r} sums to {sums[i]:.6f}, not 1. Hint: each "
                "seen character gives up the discount, delta * T(h) / N(h) in all, and that is "
                "exactly the weight of the lower order.")
        expected = discounted_oracle(counts, lower, discount)
        for i, h in enumerate(contexts):
            expect_close(f"P(. | {h!r}) with discount {float(discount)}", got[i], expected[i],
                         atol=1e-12, rtol=1e-9,
                         hint="subtract the discount from every seen count (not below 0), "
                              "divide by N(h), and add delta * T(h) / N(h) times the lower "
                              "order, T(h) being the number of distinct characters seen")


# --- 7.2 -----------------------------------------------------------------------------------------

def char_losses_oracle(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    out = np.zeros(targets.shape)
    for b in range(targets.shape[0]):
        for t in range(targets.shape[1]):
            z = [float(v) for v in logits[b, t]]
            top = max(z)
            log_sum = top + math.log(math.fsum(math.exp(v - top) for v in z))
            out[b, t] = log_sum - z[int(targets[b, t])]
    return out


@exercise("7.2", "The loss of every character")
def char_losses(fn):
    rng = np.random.default_rng(7)
    cases = [("small logits", rng.standard_normal((2, 5, 7)), rng.integers(0, 7, (2, 5))),
             ("logits of size 1000", 1000 * rng.standard_normal((3, 4, 6)),
              rng.integers(0, 6, (3, 4)))]
    for name, logits, targets in cases:
        got = as_array(fn(logits.copy(), targets.copy()), "char_losses(...)")
        if got.shape != targets.shape:
            raise ExerciseFailed(
                f"with {name} of shape {logits.shape}, char_losses returned shape {got.shape}; "
                f"expected {targets.shape}, one loss per character (no mean)")
        if not np.all(np.isfinite(got)):
            raise ExerciseFailed(
                f"with {name}, the losses hold NaN or inf: exp overflows. Subtract each row's "
                "largest logit before exponentiating.")
        if np.any(got < -1e-9):
            raise ExerciseFailed(
                f"with {name}, some losses are negative ({got.min():.3g}): the cross-entropy "
                "is -log p, never below 0. Check the sign.")
        expect_close(f"char_losses with {name}", got, char_losses_oracle(logits, targets),
                     atol=1e-9, rtol=1e-9,
                     hint="the loss of position (b, t) is -log softmax(logits[b, t])"
                          "[targets[b, t]]: pick the target along the last axis")


# --- 7.3 -----------------------------------------------------------------------------------------

def _adding_arrays(fn, seed: int, batch: int, length: int):
    answer = fn(np.random.default_rng(seed), batch, length)
    if not isinstance(answer, tuple) or len(answer) != 2:
        raise ExerciseFailed(f"adding_batch should return (X, y); got {type(answer).__name__}")
    X, y = answer
    if np.shape(X) != (batch, length, 2) or np.shape(y) != (batch,):
        raise ExerciseFailed(f"adding_batch(rng, {batch}, {length}) returned X of shape "
                             f"{np.shape(X)} and y of shape {np.shape(y)}; expected "
                             f"({batch}, {length}, 2) and ({batch},)")
    if np.asarray(X).dtype != np.float32:
        raise ExerciseFailed(f"X has dtype {np.asarray(X).dtype}; make it float32, the dtype "
                             "of the models' weights")
    return np.asarray(X, dtype=np.float64), np.asarray(y, dtype=np.float64)


@exercise("7.3", "Sequences for the adding problem")
def adding_batch(fn):
    batch, length = 64, 20
    X, y = _adding_arrays(fn, 0, batch, length)
    values, markers = X[:, :, 0], X[:, :, 1]
    if values.min() < -1 or values.max() > 1:
        raise ExerciseFailed(f"values range from {values.min():.3f} to {values.max():.3f}; "
                             "they should lie in [-1, 1)")
    if not np.isin(markers, (0.0, 1.0)).all():
        raise ExerciseFailed("X[:, :, 1] should hold markers, 0 or 1 only")
    for b in range(batch):
        marked = [t for t in range(length) if markers[b, t] == 1.0]
        if len(marked) != 2:
            raise ExerciseFailed(f"sequence {b} has {len(marked)} markers at steps {marked}; "
                                 "each sequence needs exactly two")
        if marked[0] != 0:
            raise ExerciseFailed(f"sequence {b} has its markers at steps {marked}; the first "
                                 "marker belongs at step 0")
        if not 1 <= marked[1] <= length // 2 - 1:
            raise ExerciseFailed(
                f"sequence {b} has its second marker at step {marked[1]} of {length}; it must "
                f"fall in the first half, steps 1 to {length // 2 - 1} (length // 2 - 1)")
        total = values[b, marked[0]] + values[b, marked[1]]
        if abs(y[b] - total) > 1e-6:
            raise ExerciseFailed(
                f"y[{b}] = {y[b]:.6f}, but the values at its marked steps {marked} sum to "
                f"{total:.6f}: the target is the sum of the two marked values")
    X_again, _ = _adding_arrays(fn, 0, batch, length)
    X_other, _ = _adding_arrays(fn, 1, batch, length)
    if not np.array_equal(X, X_again) or np.array_equal(X, X_other):
        raise ExerciseFailed("draw everything from the `rng` passed in (rng.uniform, "
                             "rng.integers), not from np.random, so a seed reproduces a batch")
    X, _ = _adding_arrays(fn, 2, 4000, 40)
    values, second = X[:, :, 0], X[:, 1:, 1].argmax(axis=1) + 1
    if abs(values.mean()) > 0.03 or abs(values.std() - 1 / math.sqrt(3)) > 0.03:
        raise ExerciseFailed(f"the values have mean {values.mean():.3f} and standard deviation "
                             f"{values.std():.3f}; uniform in [-1, 1) gives 0 and 0.577")
    seen = Counter(second.tolist())
    if set(seen) != set(range(1, 20)) or min(seen.values()) < 100:
        raise ExerciseFailed(
            "over 4000 sequences of length 40 the second marker should fall on every step "
            f"from 1 to 19, about equally often; it fell on steps {sorted(seen)}")


# --- 7.4 -----------------------------------------------------------------------------------------

def saturation_case():
    rng = np.random.default_rng(3)
    gate = rng.uniform(0, 1, (3, 4, 5))
    gate[0, 0, :] = 0.1                                   # exactly at the thresholds
    gate[1, 1, :] = 0.9
    gate[2, :, 0] = 0.02                                  # unit 0 often closed
    gate[:, 2, 4] = 0.98                                  # unit 4 often open
    return gate


def saturation_oracle(gate: np.ndarray, low: float, high: float):
    units = gate.shape[-1]
    entries = gate.reshape(-1, units)
    left = [sum(1 for row in entries if row[u] < low) / len(entries) for u in range(units)]
    right = [sum(1 for row in entries if row[u] > high) / len(entries) for u in range(units)]
    return np.array(left), np.array(right)


@exercise("7.4", "Gate saturation")
def saturation(fn):
    gate = saturation_case()
    for low, high in ((0.1, 0.9), (0.2, 0.7)):
        answer = fn(gate.copy(), low, high) if (low, high) != (0.1, 0.9) else fn(gate.copy())
        if not isinstance(answer, tuple) or len(answer) != 2:
            raise ExerciseFailed("saturation should return two arrays, (left, right)")
        left, right = (as_array(a, name) for a, name in zip(answer, ("left", "right")))
        expected_left, expected_right = saturation_oracle(gate, low, high)
        for name, got in (("left", left), ("right", right)):
            if got.shape != (gate.shape[-1],):
                raise ExerciseFailed(
                    f"{name} has shape {got.shape} for a gate of shape {gate.shape}; expected "
                    f"({gate.shape[-1]},): one fraction per unit (the last axis), over all "
                    "other axes")
            if got.max() > 1:
                raise ExerciseFailed(f"{name} holds {got.max():g}: return fractions of the "
                                     "steps (between 0 and 1), not counts")
        if np.allclose(left, expected_right) and np.allclose(right, expected_left):
            raise ExerciseFailed("left and right are swapped: left-saturated means below low")
        strict = {"left": (low, "<"), "right": (high, ">")}
        for name, got, expected in (("left", left, expected_left),
                                    ("right", right, expected_right)):
            bound, sign = strict[name]
            expect_close(f"{name} (low={low}, high={high})", got, expected, atol=1e-12,
                         hint=f"count a value as saturated only when it is strictly {sign} "
                              f"{bound}: values exactly at a threshold are not")


# --- 7.5 -----------------------------------------------------------------------------------------

def correlation_case(binary: bool):
    rng = np.random.default_rng(11)
    n = 400
    f = (rng.uniform(size=n) < 0.3).astype(float) if binary else rng.standard_normal(n)
    A = rng.standard_normal((n, 6))
    A[:, 1] = 0.5 * f + rng.standard_normal(n)            # weakly positive
    A[:, 2] = -2.0 * f + 0.1 * rng.standard_normal(n)     # strongly negative: the answer
    A[:, 3] = 0.5                                         # constant: no correlation
    A[:, 5] = f + 0.5 * rng.standard_normal(n)            # strongly positive, but weaker
    return A, f


def correlations(A: np.ndarray, f: np.ndarray) -> np.ndarray:
    r = np.zeros(A.shape[1])
    for u in range(A.shape[1]):
        if np.ptp(A[:, u]) > 0:
            r[u] = np.corrcoef(A[:, u], f)[0, 1]
    return r


@exercise("7.5", "The unit that tracks a feature")
def most_correlated(fn):
    for binary in (False, True):
        A, f = correlation_case(binary)
        r = correlations(A, f)
        expected = int(np.argmax(np.abs(r)))
        answer = fn(A.copy(), f.copy())
        if not isinstance(answer, tuple) or len(answer) != 2:
            raise ExerciseFailed("most_correlated should return (unit, r)")
        unit, got_r = answer
        got_r = float(got_r)
        if math.isnan(got_r):
            raise ExerciseFailed(
                f"r is NaN (unit {unit}): a unit that never changes makes 0 / 0. Count its "
                "correlation as 0 before choosing the largest.")
        if int(unit) == int(np.argmax(r)) and int(unit) != expected:
            raise ExerciseFailed(
                f"you chose unit {int(unit)} (r = {r[int(unit)]:+.3f}), but unit {expected} has "
                f"r = {r[expected]:+.3f}: the magnitude decides, whatever the sign")
        if int(unit) != expected:
            raise ExerciseFailed(f"you chose unit {int(unit)}, expected unit {expected} "
                                 f"(r = {r[expected]:+.3f}; your unit's r is "
                                 f"{r[int(unit)]:+.3f})")
        if abs(got_r + r[expected]) < 1e-6 or (got_r > 0 > r[expected]):
            raise ExerciseFailed(f"r = {got_r:+.4f} has lost its sign: unit {expected} falls as "
                                 f"the feature rises, r = {r[expected]:+.4f}")
        expect_close(f"r of unit {expected}", got_r, r[expected], atol=1e-9,
                     hint="Pearson's r: centre both, divide the sum of products by the square "
                          "root of the product of the sums of squares")
