"""The course's one training clock, and what every training run shares.

- ``Clock``: seconds of training against a budget; it can pause (for evaluations that should
  not count). Every timed run of the course reads it: ``run_for`` below (the lessons' timed
  runs, lesson 6's comparison, ``make train``) and lesson 5's Keras callback.
- ``cosine_lr``: the one learning-rate schedule, a function of the fraction of the budget spent.
- ``check_finite``: the guard that stops a run on a NaN or infinite loss, with one hint.
- ``progress``: a tqdm bar, plain text in the book and tests, a widget in JupyterLab.
- Two loops over one recorder: ``train_loop`` runs a number of steps (the lessons' small
  experiments); ``run_for`` runs for a number of seconds.
- ``throughput``: tokens per second of a forward+backward step on the course's benchmark
  shape ``SHAPE`` (what ``make bench`` and the lessons' speed sections report).
"""
import math
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

from .plots import LossPlot
from .runtime import text_progress

NAN_HINT = ("Lower the learning rate, keep the gradient norm clipped (e.g. at 1.0), and check "
            "that the inputs hold no NaN or inf.")


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN or infinite loss."""


def check_finite(loss: float, step: int, context: str = "") -> None:
    """Stop with the course's hint when ``loss`` is NaN or infinite; ``context`` names the run
    (and the options that set the learning rate and clipping, where they have names)."""
    if not math.isfinite(loss):
        where = f" ({context})" if context else ""
        raise NonFiniteLossError(f"The loss became {loss} at step {step}{where}; training "
                                 f"stopped. {NAN_HINT}")


def cosine_lr(progress: float, peak: float, low: float | None = None,
              warmup: float = 0.0) -> float:
    """The learning rate at ``progress`` (0 to 1, the fraction of the budget spent): a linear
    warm-up over the first ``warmup`` of the budget, then a cosine from ``peak`` down to ``low``
    (default ``peak / 10``), which it reaches when the budget is spent and keeps afterwards."""
    low = peak / 10 if low is None else low
    if progress < warmup:
        return peak * max(progress / warmup, 0.02)
    t = min(1.0, (progress - warmup) / (1.0 - warmup))
    return low + 0.5 * (peak - low) * (1.0 + math.cos(math.pi * t))


class Clock:
    """Seconds of training, started when made; ``seconds`` is the budget (none by default)."""

    def __init__(self, seconds: float = math.inf):
        self.seconds = seconds
        self._banked, self._since = 0.0, time.perf_counter()

    @property
    def elapsed(self) -> float:
        running = 0.0 if self._since is None else time.perf_counter() - self._since
        return self._banked + running

    @property
    def progress(self) -> float:
        """The fraction of the budget spent, 0 to 1."""
        return min(1.0, self.elapsed / self.seconds) if self.seconds > 0 else 1.0

    @property
    def done(self) -> bool:
        return self.elapsed >= self.seconds

    @contextmanager
    def paused(self, pause: bool = True):
        """Time spent inside does not count (when ``pause``)."""
        if not pause or self._since is None:
            yield
            return
        self._banked += time.perf_counter() - self._since
        self._since = None
        try:
            yield
        finally:
            self._since = time.perf_counter()


@dataclass(frozen=True)
class Shape:
    """The course's benchmark shape: a batch of sequences through one recurrent layer."""
    batch: int = 32
    steps: int = 64
    inputs: int = 64
    hiddens: int = 256

    @property
    def tokens(self) -> int:
        return self.batch * self.steps


SHAPE = Shape()


def _synchronize(device: str) -> None:
    if device.startswith("cuda"):
        import torch
        torch.cuda.synchronize()


def throughput(step, device: str = "cpu", seconds: float = 2.0, warmup: int = 3,
               shape: Shape = SHAPE) -> float:
    """Tokens per second of ``step()``, one forward+backward pass of ``shape``: a few untimed
    calls first (one-off costs), then calls until ``seconds`` have passed (three at least)."""
    for _ in range(warmup):
        step()
    _synchronize(device)
    clock, calls = Clock(seconds), 0
    while calls < 3 or not clock.done:
        step()
        calls += 1
        _synchronize(device)
    return shape.tokens * calls / clock.elapsed


def progress(iterable, desc: str = "", total=None, **options):
    """A tqdm bar: plain text in the book and tests, a widget in JupyterLab. ``options`` go to
    tqdm (``unit``, ``bar_format``, ...)."""
    if text_progress():
        from tqdm import tqdm
        return tqdm(iterable, desc=desc, total=total, file=sys.stdout, mininterval=5.0,
                    ncols=90, **options)
    from tqdm.auto import tqdm
    return tqdm(iterable, desc=desc, total=total, **options)


@dataclass
class History:
    steps: list = field(default_factory=list)
    losses: list = field(default_factory=list)       # training loss at every step
    smoothed: list = field(default_factory=list)     # its exponential moving average
    times: list = field(default_factory=list)        # seconds on the clock, at every step
    val_steps: list = field(default_factory=list)
    val_losses: list = field(default_factory=list)
    val_times: list = field(default_factory=list)
    num_steps: int = 0                               # steps run (also those with no loss read)
    seconds: float = 0.0                             # on the clock at the end


class _Recorder:
    """What both loops do around a step: the bar, the history, the guard, the live plot."""

    def __init__(self, bar, desc, plot, ylabel, smoothing, context):
        self.bar, self.smoothing, self.context = bar, smoothing, context
        self.curves = LossPlot(title=desc, ylabel=ylabel) if plot else None
        self.history, self.ema = History(), None

    def step(self, step: int, loss, elapsed: float) -> None:
        h = self.history
        h.num_steps, h.seconds = step + 1, elapsed
        if loss is None:  # the step chose not to read its loss (a GPU sync): nothing to record
            return
        loss = float(loss)
        check_finite(loss, step, self.context)
        self.ema = loss if self.ema is None else (
            self.smoothing * self.ema + (1 - self.smoothing) * loss)
        h.steps.append(step)
        h.losses.append(loss)
        h.smoothed.append(self.ema)
        h.times.append(elapsed)
        if step % 10 == 0 and self.bar is not None:
            self.bar.set_postfix(loss=f"{self.ema:.3f}", refresh=False)
        if step % 10 == 0 and self.curves:
            self.curves.add("train (smoothed)", step, self.ema)

    def evaluate(self, step: int, eval_fn, clock: Clock, pause: bool) -> None:
        with clock.paused(pause):
            val = float(eval_fn())
        h = self.history
        h.val_steps.append(step)
        h.val_losses.append(val)
        h.val_times.append(clock.elapsed)
        if self.curves:
            self.curves.add("validation", step, val)

    def close(self) -> History:
        if self.bar is not None:
            if self.ema is not None:
                self.bar.set_postfix(loss=f"{self.ema:.3f}", refresh=False)
            self.bar.close()
        if self.curves:
            self.curves.show()
        return self.history


def train_loop(step_fn, num_steps: int, *, eval_fn=None, eval_every=None, desc="training",
               plot=True, context="", smoothing=0.95,
               ylabel="loss (nats/char)") -> History:
    """Call ``step_fn(step) -> loss`` ``num_steps`` times and record what happened.

    ``eval_fn() -> float`` (e.g. a validation loss) runs every ``eval_every`` steps and at the
    end. A NaN/inf loss raises NonFiniteLossError. For a wall-clock budget, use ``run_for``.
    """
    clock, eval_every = Clock(), eval_every or max(1, num_steps // 10)
    run = _Recorder(progress(None, desc=desc, total=num_steps), desc, plot, ylabel, smoothing,
                    context)
    for step in range(num_steps):
        run.step(step, step_fn(step), clock.elapsed)
        run.bar.update(1)
        if eval_fn is not None and ((step + 1) % eval_every == 0 or step == num_steps - 1):
            run.evaluate(step, eval_fn, clock, pause=False)
    return run.close()


def run_for(seconds: float, step_fn, *, max_steps=None, eval_fn=None, evals: int = 8,
            after_eval=None, pause_clock_for_eval: bool = False, desc="training", plot=True,
            bar=True, context="", smoothing=0.95, ylabel="loss (nats/char)") -> History:
    """Call ``step_fn(step, progress) -> loss`` until ``seconds`` of training have passed (or
    ``max_steps`` steps, whichever comes first); return the History.

    ``progress`` (0 to 1) is the fraction of the budget spent, for the learning-rate schedule
    (``cosine_lr``). A step may return None when reading its loss would cost a GPU sync.
    ``eval_fn() -> float`` runs ``evals`` times, evenly over the budget, and at the end;
    ``pause_clock_for_eval`` leaves its time out of the budget (lesson 6 compares training
    time), otherwise it counts (``make train``: the budget is wall-clock time).
    ``after_eval(history) -> bool`` runs after each evaluation; True stops the run (early
    stopping). ``bar=False`` leaves out the progress bar (``make train`` logs lines instead).
    """
    clock = Clock(seconds)
    limit = max_steps or math.inf
    bar_format = "{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total:g} s{postfix}"
    run = _Recorder(progress(None, desc=desc, total=seconds, unit="s", bar_format=bar_format)
                    if bar else None, desc, plot, ylabel, smoothing, context)
    due = [(k + 1) / evals for k in range(evals)]
    step, shown, last_eval = 0, 0.0, None
    while True:
        fraction = max(clock.progress, step / limit)
        run.step(step, step_fn(step, fraction), clock.elapsed)
        step += 1
        fraction = max(clock.progress, step / limit)
        finished = fraction >= 1.0
        if run.bar is not None:
            run.bar.update(min(clock.elapsed, seconds) - shown)
            shown = min(clock.elapsed, seconds)
        if eval_fn is not None and (finished or (due and fraction >= due[0])):
            while due and fraction >= due[0]:  # a slow evaluation skips the times it passed
                due.pop(0)
            run.evaluate(step - 1, eval_fn, clock, pause_clock_for_eval)
            last_eval = step
            if after_eval is not None and after_eval(run.history):
                break
        if finished or clock.done:
            break
    if eval_fn is not None and last_eval != step:
        run.evaluate(step - 1, eval_fn, clock, pause_clock_for_eval)
        if after_eval is not None:
            after_eval(run.history)
    run.history.seconds = clock.elapsed
    return run.close()
