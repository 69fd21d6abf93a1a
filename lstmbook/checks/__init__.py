"""The exercise-check framework.

A check calls the student's answer on fixed inputs, compares it with an independent oracle
(PyTorch with copied weights, finite differences, fixed values) and then either prints
"Exercise N.M passed" or raises an error that says what differs and hints at the usual mistake.
Each lesson's checks live in a submodule named like the lesson: ``lstmbook.checks.rnn_theory``.
"""
import functools

import numpy as np


class ExerciseNotDone(NotImplementedError):
    """The answer still holds its placeholder."""


class ExerciseFailed(AssertionError):
    """The answer runs but differs from the oracle."""


def exercise(number: str, title: str):
    """Turn ``check(answer)`` into an exercise check that reports in the course's words."""
    def decorate(check):
        @functools.wraps(check)
        def run(*args, **kwargs):
            try:
                check(*args, **kwargs)
            except ExerciseFailed as err:
                raise ExerciseFailed(f"Exercise {number} ({title}): {err}") from None
            except NotImplementedError:
                raise ExerciseNotDone(
                    f"Exercise {number} ({title}) is not implemented yet: replace the "
                    "`raise NotImplementedError(...)` line with your code, run that cell, "
                    "then run this check again.") from None
            print(f"Exercise {number} passed")
        run.number, run.title = number, title
        return run
    return decorate


def as_array(value, name: str) -> np.ndarray:
    """Convert an answer to a float64 array (accepts NumPy arrays, torch tensors, lists)."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ExerciseFailed(f"{name} should be an array, got {type(value).__name__}") from None


def expect_close(name: str, got, expected, *, atol: float = 1e-8, rtol: float = 1e-6,
                 hint: str = "") -> None:
    """Raise ExerciseFailed naming ``name``, the shapes or the largest difference, and a hint."""
    got, expected = as_array(got, name), as_array(expected, name)
    if got.shape != expected.shape:
        raise ExerciseFailed(f"{name} has shape {got.shape}, expected {expected.shape}."
                             + (f" Hint: {hint}" if hint else ""))
    if not np.all(np.isfinite(got)):
        raise ExerciseFailed(f"{name} contains NaN or inf." + (f" Hint: {hint}" if hint else ""))
    if not np.allclose(got, expected, atol=atol, rtol=rtol):
        err = np.abs(got - expected)
        where = np.unravel_index(np.argmax(err), err.shape)
        raise ExerciseFailed(
            f"{name} differs from the reference: max abs error {err.max():.3g} at index "
            f"{tuple(int(i) for i in where)} (got {got[where]:.6g}, "
            f"expected {expected[where]:.6g})."
            + (f" Hint: {hint}" if hint else ""))


def numeric_grad(f, x, eps: float = 1e-6) -> np.ndarray:
    """Central differences of the scalar function f at x, in float64: the finite-difference
    oracle of the checks (and of the tests of the lessons' engines)."""
    x = np.array(x, dtype=np.float64)
    grad = np.zeros_like(x)
    for j in np.ndindex(x.shape):
        old = x[j]
        x[j] = old + eps
        up = f(x)
        x[j] = old - eps
        down = f(x)
        x[j] = old
        grad[j] = (up - down) / (2 * eps)
    return grad
