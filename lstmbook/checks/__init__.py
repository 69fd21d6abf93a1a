"""The exercise-check framework.

A check calls the student's answer on fixed inputs, compares it with an independent oracle
(PyTorch with copied weights, finite differences, fixed values) and then either prints
"Exercise N.M passed" or raises an error that says what differs and hints at the usual mistake.
Each lesson's checks live in a submodule named like the lesson: ``lstmbook.checks.rnn_theory``.

Whatever the student's code raises while a check runs it (a shape error in a matrix product, a
bad unpack, a name from a cell not run yet...) comes back as an ``ExerciseError``: the exercise,
the error, the student's own file and line, and a hint chosen by the error (``HINTS``). The
original exception stays chained (``__cause__``). In a notebook the course's errors show their
message alone, without the checker's frames (IPython calls ``_render_traceback_``); set
``lstmbook.checks.FULL_TRACEBACK = True`` to see the full chained traceback instead.
"""
import functools
import linecache
import os
import sys
import sysconfig
import traceback

import numpy as np

FULL_TRACEBACK = False  # True: notebooks show the full traceback of the course's errors

_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # .../lstmbook
_LIBRARIES = tuple(sorted({os.path.realpath(sysconfig.get_paths()[key]) + os.sep
                           for key in ("stdlib", "platstdlib", "purelib", "platlib")}))


class _CourseMessage:
    """In IPython, show the course's message alone: no frames of the checker."""

    def _message_lines(self) -> list:
        first, *rest = str(self).split(" Hint: ", 1)
        lines = [f"{type(self).__name__}: {first}"]
        return lines + [f"Hint: {rest[0]}"] if rest else lines

    def _render_traceback_(self) -> list:
        if FULL_TRACEBACK:
            try:
                from IPython import get_ipython
                return get_ipython().InteractiveTB.structured_traceback(
                    type(self), self, self.__traceback__)
            except Exception:  # noqa: BLE001 - IPython must always get lines to show
                pass
        return self._message_lines()


class ExerciseNotDone(_CourseMessage, NotImplementedError):
    """The answer still holds its placeholder."""


class ExerciseFailed(_CourseMessage, AssertionError):
    """The answer runs but differs from the oracle."""


class ExerciseError(ExerciseFailed):
    """The student's code raised an error while the check ran it.

    ``error`` is the original exception (also ``__cause__``); ``where`` names the student's
    innermost frame ("Cell In[5], line 7, in step" or '"/path/file.py", line 7, in step') and
    ``line`` holds its source, both empty when no frame of the traceback lies outside lstmbook,
    the standard library and site-packages; ``hint`` is chosen by the error.
    """

    def __init__(self, message: str, *, heading: str = "", error: BaseException = None,
                 where: str = "", line: str = "", hint: str = ""):
        super().__init__(message)
        self.heading, self.error, self.where, self.line, self.hint = (heading or message, error,
                                                                      where, line, hint)

    @classmethod
    def about(cls, heading: str, error: BaseException, where: str, line: str, hint: str):
        """The error whose message is ``heading``, then where, the line and the hint."""
        at = f" at {where}" + (f": `{line}`" if line else "") if where else ""
        return cls(f"{heading.rstrip('.')}{at}. Hint: {hint}", heading=heading, error=error,
                   where=where, line=line, hint=hint)

    def _message_lines(self) -> list:
        if not self.hint:
            return super()._message_lines()
        lines = [f"{type(self).__name__}: {self.heading}"]
        if self.where:
            label = ("File " if self.where.startswith('"') else "") + self.where
            lines += [f"  {label}"] + ([f"    {self.line}"] if self.line else [])
        return lines + [f"Hint: {self.hint}",
                        "(The full traceback: lstmbook.checks.FULL_TRACEBACK = True, then run "
                        "the check again.)"]


def _is_library(filename: str) -> bool:
    if filename.startswith(("<frozen ", "<__array_function__")):
        return True
    path = os.path.realpath(filename) if os.path.isabs(filename) else filename
    parts = path.split(os.sep)
    return (path.startswith(_PACKAGE + os.sep) or path.startswith(_LIBRARIES)
            or "site-packages" in parts or "dist-packages" in parts)


def student_frame(err: BaseException):
    """The innermost frame of ``err``'s traceback outside lstmbook, the standard library and
    site-packages, as (frame, line number), or None."""
    found = None
    for frame, lineno in traceback.walk_tb(err.__traceback__):
        if not _is_library(frame.f_code.co_filename):
            found = frame, lineno
    return found


def _where(found) -> tuple:
    """("Cell In[5], line 7, in step", "the source line") for a frame from student_frame."""
    if found is None:
        return "", ""
    frame, lineno = found
    filename, name = frame.f_code.co_filename, frame.f_code.co_name
    label = f'"{filename}"'
    shell = sys.modules.get("IPython") and sys.modules["IPython"].get_ipython()
    try:  # a notebook cell: IPython names it like its own tracebacks do, "Cell In[5]"
        kind, number = shell.compile.format_code_name(filename)
        label = f"{kind} {number}"
    except Exception:  # noqa: BLE001 - not IPython, or not a cell: keep the file name
        pass
    where = f"{label}, line {lineno}" + ("" if name == "<module>" else f", in {name}")
    return where, linecache.getline(filename, lineno, frame.f_globals).strip()


def _is_matmul(err, msg):
    return isinstance(err, (ValueError, RuntimeError)) and any(s in msg for s in (
        "matmul", "not aligned", "mat1 and mat2", "shapes cannot be multiplied",
        "size mismatch", "Expected size for first two dimensions of batch2",
        "inconsistent tensor size"))


def _is_unpack(err, msg):
    return isinstance(err, ValueError) and "values to unpack" in msg


def _is_broadcast(err, msg):
    return isinstance(err, (ValueError, RuntimeError)) and (
        "could not be broadcast" in msg
        or ("must match the size of tensor" in msg and "non-singleton dimension" in msg))


def _is_none(err, msg):
    return isinstance(err, (TypeError, AttributeError)) and "NoneType" in msg


# (test of the error, hint, whether the exercise's `shapes` note helps): the first match wins.
HINTS = [
    (_is_matmul,
     "the two sides of a matrix product do not fit: in A @ B the last size of A must equal the "
     "first size of B (the second-to-last for a stack of matrices). Print A.shape and B.shape "
     "just before that line: usually a weight needs transposing (W.T in NumPy, W.t() in "
     "PyTorch) or the operands are swapped (X @ W, not W @ X).", True),
    (_is_unpack,
     "the right-hand side gives a different number of pieces than there are names on the left: "
     "print len() of it. A.chunk(4) and np.split(A, 4) cut along axis 0 (the batch) unless "
     "given dim=1 / axis=1, so they do not return the four gates; and a function that returns "
     "(H, C) unpacks into two names.", True),
    (_is_broadcast,
     "an elementwise operation (+, -, *, /) got arrays whose shapes neither match nor "
     "broadcast: print the shape of each operand. Shapes are compared from the right and each "
     "pair of sizes must be equal or 1; the usual causes are a gate sliced along the wrong "
     "axis, a missing transpose, or a bias or state of the wrong length.", True),
    (lambda err, msg: isinstance(err, IndexError),
     "an index is past the end of an axis or of a list (the message says which axis and its "
     "size): check the axis you index (X[t] takes time step t only when time is axis 0) and "
     "the loop's range (range(T), not range(1, T + 1)).", True),
    (_is_none,
     "a value on that line is None: usually a function of yours ends without `return ...` (so "
     "it returns None), or the result of a method that works in place and returns None "
     "(list.append, list.sort) was kept.", False),
    (lambda err, msg: isinstance(err, NameError),
     "{name} is not defined in this kernel: it is made in a cell above that has not run since "
     "the kernel (re)started. Run the cells above (Run > Run All Above Selected Cell), then "
     "this one again; if you named it yourself, check the spelling.", False),
    (lambda err, msg: isinstance(err, RuntimeError) and "leaf Variable" in msg,
     "PyTorch refuses to change a parameter (a tensor that requires grad) in place: do the "
     "writes inside `with torch.no_grad():` (or decorate the function with @torch.no_grad()).",
     False),
    (lambda err, msg: isinstance(err, RuntimeError) and "modified by an inplace" in msg,
     "a tensor that the backward pass needs was changed in place after it was used (x += ..., "
     "x[...] = ..., a method ending in _): build a new tensor instead (x = x + ...).", False),
]
GENERIC_HINT = ("the error comes from the line shown: print the shapes and types of the values "
                "it uses (print(X.shape, type(W))) and compare them with what the exercise says "
                "its arguments are.")


def hint_for(err: BaseException, shapes: str = "") -> str:
    """The hint for an error raised by the student's code (``HINTS``, else ``GENERIC_HINT``);
    ``shapes``, the exercise's note on its arrays' shapes, follows hints about shapes."""
    msg = str(err)
    for test, hint, about_shapes in HINTS:
        if test(err, msg):
            name = getattr(err, "name", None)
            hint = hint.format(name=f"`{name}`" if name else "a name")
            return hint + (f" In this exercise: {shapes}" if about_shapes and shapes else "")
    return GENERIC_HINT


def exercise(number: str, title: str, *, shapes: str = ""):
    """Turn ``check(answer)`` into an exercise check that reports in the course's words.

    ``shapes`` (optional) states the exercise's shapes; it is added to the hint when the
    student's code raises a shape error.
    """
    def decorate(check):
        @functools.wraps(check)
        def run(*args, **kwargs):
            try:
                check(*args, **kwargs)
            except ExerciseError as err:  # from student_error in a lesson's own wrapper
                if err.heading.startswith(f"Exercise {number} "):
                    raise
                raise ExerciseError.about(f"Exercise {number} ({title}): {err.heading}",
                                          err.error, err.where, err.line, err.hint) from err.error
            except ExerciseFailed as err:
                raise ExerciseFailed(f"Exercise {number} ({title}): {err}") from None
            except NotImplementedError:
                raise ExerciseNotDone(
                    f"Exercise {number} ({title}) is not implemented yet: replace the "
                    "`raise NotImplementedError(...)` line with your code, run that cell, "
                    "then run this check again.") from None
            except Exception as err:  # noqa: BLE001 - whatever the answer raised, in our words
                raise _wrap(number, title, err, shapes) from err
            print(f"Exercise {number} passed")
        run.number, run.title = number, title
        return run
    return decorate


def _wrap(number: str, title: str, err: Exception, shapes: str) -> ExerciseError:
    return student_error(err, hint=hint_for(err, shapes), exercise=f"Exercise {number} ({title})")


def student_error(err: Exception, what: str = "", hint: str = "", *,
                  exercise: str = "") -> ExerciseError:
    """The ExerciseError for ``err``, raised by the student's code: "<what> raised <Type>:
    <message>", the student's file, line and source, and ``hint`` (default: chosen by the
    error). For a lesson's own wrapper that knows a better hint than ``HINTS``:
    ``raise student_error(err, "the matmul backward", "transpose ...") from err``; @exercise
    then puts the exercise's number and title in front."""
    found = student_frame(err)
    where, line = _where(found)
    error = " ".join(f"{type(err).__name__}: {err}".split()) if str(err) else type(err).__name__
    who = what or ("your code" if found else "checking what your code returned")
    heading = f"{exercise}: {who} raised {error}" if exercise else f"{who} raised {error}"
    return ExerciseError.about(heading, err, where, line, hint or hint_for(err))


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
