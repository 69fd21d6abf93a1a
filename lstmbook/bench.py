"""``make bench``: forward+backward throughput of every LSTM in the course, in one run.

All rows run the common benchmark shape (batch 32, 64 steps, input 64, hidden 256, float32);
each row's tokens/s is divided by ``torch.nn.LSTM``'s on the same device in the same run, so the
ratio survives a noisy machine better than the raw figure. CPU always; CUDA too when present.
A row is a factory decorated with ``@row("name")`` below; it takes a device name and returns a
no-argument ``step()`` that runs one forward and backward pass, or None when it cannot run on
that device. Rows hold the classes and functions they time, so a moved lesson module breaks the
import here at once, not a row at run time. After the rows, ``make bench`` trains lesson 6's
contenders (``compare``) and writes the whole report.
"""
import argparse
import functools
import json
import statistics
import time
from dataclasses import asdict
from pathlib import Path

import autograd.numpy as anp
import numpy as np
import torch
from autograd import grad
from torch import nn

from . import compare
from .data import load_shakespeare
from .lessons.autograd_lstm import LSTMCell, Tensor, init_params, lstm_cell, stack
from .lessons.memory import ngram_validation_loss
from .lessons.numpy_lstm import bench_step, lstm_layer_backward_fast, lstm_layer_forward_fast
from .lessons.pytorch_lstm import (
    CppLSTM,
    FastLSTM,
    FusedLSTM,
    NaiveLSTM,
    ScriptedLSTM,
    fwd_bwd,
    lstm_extension,
)
from .runtime import import_tensorflow, quick
from .training import SHAPE, Shape, throughput

BASELINE = "torch.nn.LSTM"
ROWS = {}


def row(name: str):
    def register(factory):
        ROWS[name] = factory
        return factory
    return register


def _module_step(cls, device: str, shape: Shape = SHAPE):
    """Lesson 4's fwd_bwd (what its speed section times) on a freshly seeded ``cls``."""
    torch.manual_seed(0)
    return fwd_bwd(cls(shape.inputs, shape.hiddens, batch_first=True), device, shape)


# Rows that differ only in the module. The lesson-4 classes: one nn.Linear per gate (naive); one
# product for the four gates with the input projection hoisted (fused); its time loop compiled by
# torch.jit.script (TorchScript); its hand-written BPTT as a torch.autograd.Function (own
# backward). nn.GRU and nn.RNN are lesson 6's baselines.
MODULE_ROWS = {
    BASELINE: nn.LSTM,
    "torch.nn.GRU": nn.GRU,
    "torch.nn.RNN": nn.RNN,
    "PyTorch naive LSTM (lesson 4)": NaiveLSTM,
    "PyTorch fused LSTM (lesson 4)": FusedLSTM,
    "PyTorch fused, TorchScript (lesson 4)": ScriptedLSTM,
    "PyTorch fused, own backward (lesson 4)": FastLSTM,
}
for _name, _cls in MODULE_ROWS.items():
    row(_name)(functools.partial(_module_step, _cls))


@row("PyTorch fused, C++ loops (lesson 4)")
def cpp_lstm(device: str, shape: Shape = SHAPE):
    """CppLSTM: both time loops in lesson 4's C++ extension (CPU only; built at first use)."""
    if device != "cpu":
        return None
    try:
        seconds = lstm_extension()[1]
    except Exception as err:  # no compiler or no ninja: the row is left out, with the reason
        print(f"skipping CppLSTM: {err}")
        return None
    print(f"CppLSTM's C++ extension built or loaded in {seconds:.1f} s")
    return _module_step(CppLSTM, device, shape)


@row("NumPy LSTM (lesson 2)")
def numpy_lstm(device: str, shape: Shape = SHAPE):
    if device != "cpu":
        return None
    return bench_step(shape, lstm_layer_forward_fast, lstm_layer_backward_fast)


@row("Keras LSTM layer (lesson 5)")
def keras_lstm(device: str, shape: Shape = SHAPE):
    """keras.layers.LSTM on TensorFlow (tensorflow-cpu: CPU only), fwd+bwd inside a tf.function."""
    if device != "cpu":
        return None
    tf = import_tensorflow()
    import keras

    layer = keras.layers.LSTM(shape.hiddens, return_sequences=True)
    X = tf.random.normal((shape.batch, shape.steps, shape.inputs))
    layer.build(X.shape)

    @tf.function
    def forward_backward(X):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(layer(X))
        return tape.gradient(loss, layer.trainable_variables)  # returned, so nothing is pruned

    def step():
        forward_backward(X)
    return step


@row("Autograd engine LSTM (lesson 3)")
def engine_lstm(device: str, shape: Shape = SHAPE):
    """Lesson 3's reverse-mode Tensor engine: LSTMCell unrolled, sum of outputs, backward()."""
    if device != "cpu":
        return None
    cell = LSTMCell(shape.inputs, shape.hiddens, seed=0, dtype=np.float32)
    X = np.random.default_rng(0).standard_normal(
        (shape.batch, shape.steps, shape.inputs)).astype(np.float32)
    zeros = np.zeros((shape.batch, shape.hiddens), np.float32)

    def step():
        for w in (cell.W_x, cell.W_h, cell.b):
            w.grad = None
        state, outputs = (Tensor(zeros), Tensor(zeros)), []
        for t in range(shape.steps):
            state = cell(Tensor(X[:, t]), state)
            outputs.append(state[0])
        stack(outputs, axis=1).sum().backward()
    return step


@row("HIPS autograd LSTM (lesson 3)")
def hips_lstm(device: str, shape: Shape = SHAPE):
    """Lesson 3's LSTM as a pure NumPy function, differentiated by HIPS autograd."""
    if device != "cpu":
        return None
    p = {k: v for k, v in init_params("lstm", 1, shape.inputs, shape.hiddens).items()
         if k in ("W_x", "W_h", "b")}
    X = np.random.default_rng(0).standard_normal(
        (shape.batch, shape.steps, shape.inputs)).astype(np.float32)
    zeros = np.zeros((shape.batch, shape.hiddens), np.float32)

    def loss(p):
        q = {k: p[k] for k in p}  # index the traced dict once, not at every step
        state, outputs = (zeros, zeros), []
        for t in range(shape.steps):
            state = lstm_cell(q, X[:, t], state)
            outputs.append(state[0])
        return anp.sum(anp.stack(outputs, axis=1))
    gradient = grad(loss)

    def step():
        gradient(p)
    return step


def devices() -> list[str]:
    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def run(names=None, seconds: float = 2.0, device_list=None, rounds: int = 5) -> list[dict]:
    """Every row on every device, interleaved: ``rounds`` rounds in which each row runs for
    ``seconds / rounds``, in an order that rotates from round to round. Each round's ratio to
    nn.LSTM compares two measurements made moments apart, so a machine that gets busier or
    quieter during the run moves both; the median of the rounds is the row's figure, and the
    lowest and highest round show how far a single measurement could be trusted."""
    names = [BASELINE] + [n for n in (names or ROWS) if n != BASELINE]
    results = []
    for device in device_list or devices():
        steps = {name: ROWS[name](device) for name in names}
        steps = {name: step for name, step in steps.items() if step is not None}
        samples = {name: [] for name in steps}
        for k in range(rounds):
            order = list(steps)[k % len(steps):] + list(steps)[:k % len(steps)]
            for name in order:
                samples[name].append(throughput(steps[name], device, seconds / rounds,
                                                warmup=3 if k == 0 else 1))
        for name, tps in samples.items():
            ratios = [t / b for t, b in zip(tps, samples[BASELINE])]
            results.append({"name": name, "device": device, "rounds": rounds,
                            "tokens_per_s": statistics.median(tps),
                            "ratio_to_nn_lstm": statistics.median(ratios),
                            "ratio_low": min(ratios), "ratio_high": max(ratios)})
    return results


def table(results: list[dict]) -> str:
    width = max([len("implementation")] + [len(r["name"]) for r in results])
    lines = [f"{'implementation':<{width}} {'device':<6} {'tokens/s':>12} "
             f"{'x nn.LSTM (lowest-highest round)':>33}"]
    for r in results:
        lines.append(f"{r['name']:<{width}} {r['device']:<6} {r['tokens_per_s']:>12,.0f} "
                     f"{compare.ratio_text(r):>33}")
    return "\n".join(lines)


NGRAM_ORDERS = range(2, 8)  # lesson 7: the loss falls up to order 4 or so, then sparsity wins


def ngram_baseline(corpus=None) -> dict:
    """Lesson 7's counting baseline at its best order: a row with a loss and nothing else
    (counting has no throughput on the benchmark shape, nor lines of model code)."""
    corpus = corpus or load_shakespeare()
    losses = {k: ngram_validation_loss(corpus, k) for k in quick(NGRAM_ORDERS, (3, 4))}
    best = min(losses, key=losses.get)
    return {"name": f"{best}-gram counts", "lesson": 7, "order": best,
            "val_loss": round(losses[best], 4), "losses_by_order": losses,
            "note": "interpolated absolute discounting, counted on the training split"}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description="Benchmark the course's LSTMs: forward+backward tokens/s of every "
                    "implementation, then lesson 6's comparison (each trained on the common task "
                    "for the same budget). Writes one JSON report.")
    parser.add_argument("--seconds", type=float, default=3.0,
                        help="timing per row and device, over all rounds (default 3)")
    parser.add_argument("--rounds", type=int, default=5,
                        help="interleaved rounds; the table gives their median (default 5)")
    parser.add_argument("--device", action="append", choices=["cpu", "cuda"],
                        help="device to measure (default: cpu, and cuda when available)")
    parser.add_argument("--train-seconds", type=float, default=60.0,
                        help="training budget per implementation (default 60; 0 skips training)")
    parser.add_argument("--only", action="append", choices=list(compare.CONTENDERS),
                        metavar="NAME", help="train only this implementation (repeatable): "
                        + "; ".join(repr(name) for name in compare.CONTENDERS))
    parser.add_argument("--out", type=Path, default=compare.RESULTS)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    results = run(seconds=args.seconds, device_list=args.device, rounds=args.rounds)
    print(f"Forward+backward, batch {SHAPE.batch} x {SHAPE.steps} steps, input {SHAPE.inputs}, "
          f"hidden {SHAPE.hiddens}, float32; median of {args.rounds} interleaved rounds\n")
    print(table(results))
    runs, corpus = [], None
    if args.train_seconds > 0:
        corpus = load_shakespeare()  # one load for the contenders and the n-gram baseline
        print(f"\nTraining each implementation for {args.train_seconds:g} s on the common task\n",
              flush=True)
        runs = compare.run_all(args.train_seconds, args.only, corpus)
    report = {**compare.report(runs, args.train_seconds, results), "shape": asdict(SHAPE)}
    if runs:
        report["baselines"] = [ngram_baseline(corpus)]
        print("\n" + compare.table(report, fmt="simple"))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"\nwrote {args.out} in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
