"""Lesson 6's comparison: every implementation of the course on the common task, same budget.

Each contender is a factory registered with ``@contender``; it builds one character model and
returns a ``Model`` with three callables, the only things the harness needs:

- ``step(X, Y, lr) -> loss``: one optimiser update on a batch of windows (ids ``X``, targets
  ``Y``, both (batch, seq_len)), every window started from a zero state;
- ``val_loss(val_ids) -> nats/char``: the course's ``lm.validation_loss``;
- ``sample(vocab, prompt, length, temperature, seed) -> text``: the course's ``lm.sample``.

``train`` gives every contender the same wall-clock budget of *training* time (evaluations
pause the clock), the same random windows and a cosine learning-rate decay keyed to that clock.
``make bench`` runs them all after the throughput rows and saves one JSON report, which lesson 6
loads (``load_or_measure``).
"""
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable
import ast
import inspect
import json
import math
import textwrap
import time

import numpy as np

from . import lm
from .data import load_shakespeare, random_batches
from .runtime import QUICK, import_tensorflow, quick, seed_everything
from .training import NAN_HINT, check_finite, progress

RESULTS = Path(__file__).resolve().parent.parent / "results" / "bench.json"


@dataclass(frozen=True)
class HParams:
    hidden: int = 256        # units in the recurrent layer
    embed: int = 64          # embedding size (0: one-hot input, as in lesson 2)
    batch: int = 32          # windows per update
    seq_len: int = 128       # characters per training window
    lr: float = 3e-3         # peak learning rate; cosine decay to lr / 10 over the budget
    clip: float = 1.0        # global gradient-norm clip


# Hyper-parameters that lesson 6's experiment may change, and the values that make sense.
TUNABLE = {"hidden": (16, 2048), "embed": (0, 512), "batch": (1, 512), "seq_len": (8, 1024),
           "lr": (1e-5, 1.0)}


@dataclass
class Model:
    step: Callable
    val_loss: Callable
    sample: Callable
    num_params: int


@dataclass(frozen=True)
class Contender:
    name: str
    lesson: int
    build: Callable           # (vocab_size, hp) -> Model
    hp: HParams
    bench_row: str            # its row in lstmbook.bench (forward+backward tokens/s)
    code: Callable            # () -> the functions and classes that define the model
    note: str = ""
    fixed: tuple = ()         # hyper-parameters this model has no use for (NumPy: embed)


CONTENDERS: dict[str, Contender] = {}


def lm_model(step, logits_fn, make_step_fn, num_params) -> Model:
    """A Model scored by ``lm.validation_loss(logits_fn)`` and sampled by ``lm.sample`` with
    the step function ``make_step_fn()`` returns (made when sampling, after training)."""
    return Model(step, lambda val: lm.validation_loss(logits_fn, val),
                 lambda vocab, prompt, n, t, seed: lm.sample(
                     make_step_fn(), vocab, prompt, n, t, np.random.default_rng(seed)),
                 num_params)


def contender(name, lesson, bench_row, code, note="", fixed=(), **hp):
    def register(build):
        CONTENDERS[name] = Contender(name, lesson, build, HParams(**hp), bench_row, code, note,
                                     fixed)
        return build
    return register


def cosine_lr(progress: float, peak: float) -> float:
    """From peak at progress 0 down to peak / 10 at progress 1."""
    low = peak / 10
    return low + 0.5 * (peak - low) * (1 + math.cos(math.pi * min(progress, 1.0)))


# --- lines of code -------------------------------------------------------------------------------

def code_lines(*objects) -> int:
    """Lines of code in the source of functions and classes: no blank lines, comments or
    docstrings, so a well-documented model is not penalised."""
    total = 0
    for obj in objects:
        source = textwrap.dedent(inspect.getsource(obj))
        docstrings = set()
        for node in ast.walk(ast.parse(source)):
            body = getattr(node, "body", None)
            if (isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef)) and body
                    and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                    and isinstance(body[0].value.value, str)):
                docstrings.update(range(body[0].lineno, body[0].end_lineno + 1))
        total += sum(1 for number, line in enumerate(source.splitlines(), 1)
                     if line.strip() and not line.strip().startswith("#")
                     and number not in docstrings)
    return total


# --- the contenders ------------------------------------------------------------------------------

def _numpy_code():
    from . import numpy_lstm as m
    return [m._sigmoid_, m.lstm_layer_forward_fast, m.lstm_layer_backward_fast, m.CharLSTM,
            m.char_lstm_forward, m.char_lstm_backward, m.softmax_cross_entropy]


@contender("NumPy, by hand", 2, "NumPy LSTM (lesson 2)", _numpy_code, embed=0, lr=1e-2,
           note="one-hot input; forward and backward written by hand", fixed=("embed",))
def numpy_model(vocab_size, hp):
    from .numpy_lstm import Adam, CharLSTM, train_step
    model = CharLSTM(vocab_size, hp.hidden, seed=0)
    optimizer = Adam(model.params(), lr=hp.lr)

    def step(X, Y, lr):
        optimizer.lr = lr
        return train_step(model, optimizer, X, Y, max_norm=hp.clip)[0]

    return lm_model(step, model.logits_fn, lambda: model.step_fn,
                    sum(p.size for p in model.params()))


def _engine_code():
    from . import autograd_lstm as m
    return [m.LSTMCell, m.CharLSTM]


def engine_code():
    """The engine itself (lesson 3, part A): what the engine contender stands on."""
    from . import autograd_lstm as m
    return [m.Tensor, m.as_tensor, m.broadcast_shape, m.unbroadcast, m.topological_order,
            m.initial_adjoint, m.release, m.backward, m.add, m.no_grad, m.mul, m.matmul,
            m.sigmoid, m.tanh, m.tensor_sum, m.getitem, m.reshape, m.stack, m.embedding,
            m.cross_entropy]


@contender("Autograd engine", 3, "Autograd engine LSTM (lesson 3)", _engine_code,
           note="lesson 3's Tensor engine on NumPy")
def engine_model(vocab_size, hp):
    from .autograd_lstm import Adam, CharLSTM, tbptt_step
    model = CharLSTM(vocab_size, hp.embed, hp.hidden, seed=0)
    params = model.parameters()
    optimizer = Adam({k: p.data for k, p in params.items()}, lr=hp.lr, clip=hp.clip)

    def step(X, Y, lr):
        for p in params.values():
            p.grad = None
        loss, _ = tbptt_step(model, X, Y, None)
        optimizer.step({k: p.grad for k, p in params.items()}, lr=lr)
        return float(loss.data)

    return lm_model(step, model.logits, lambda: model.step,
                    sum(p.data.size for p in params.values()))


def _hips_code():
    from . import autograd_lstm as m
    return [m.anp_sigmoid, m.anp_tanh, m.lstm_cell, m.char_model, m.char_model_loss]


@contender("HIPS autograd", 3, "HIPS autograd LSTM (lesson 3)", _hips_code,
           note="a pure NumPy function, differentiated by the autograd package")
def hips_model(vocab_size, hp):
    from .autograd_lstm import Adam, char_model, init_params, loss_grad, lstm_cell
    p = init_params("lstm", vocab_size, hp.embed, hp.hidden, seed=0)
    optimizer = Adam(p, lr=hp.lr, clip=hp.clip)

    def zeros(batch):
        Z = np.zeros((batch, hp.hidden), np.float32)
        return Z, Z

    def step(X, Y, lr):
        grads, (loss, _) = loss_grad(lstm_cell, p, X, Y, zeros(len(X)))
        optimizer.step(grads, lr=lr)
        return float(loss)

    def step_fn(token, state):
        logits, state = char_model(lstm_cell, p, np.array([[token]]), state or zeros(1))
        return logits[0, 0], state

    return lm_model(step, lambda X: char_model(lstm_cell, p, X, zeros(len(X)))[0],
                    lambda: step_fn, sum(v.size for v in p.values()))


def _torch_model(core):
    """A CharModel (lesson 4) around a batch_first core, trained with AdamW as in lesson 4.
    ``core`` names torch.nn's class ("torch.nn.GRU") or lesson 4's ("FusedLSTM"); the three
    LSTMs start from the same weights, nn.LSTM's with a forget-gate bias of +1."""
    def build(vocab_size, hp):
        import torch
        from torch.nn import functional as F
        from . import pytorch_lstm
        from .pytorch_lstm import (CharModel, copy_lstm_weights, init_forget_bias, sample_text,
                                   validation_loss)
        name = core.rsplit(".", 1)[-1]
        module = torch.nn if core.startswith("torch.nn.") else pytorch_lstm
        recurrent = getattr(module, name)(hp.embed, hp.hidden, batch_first=True)
        if name.endswith("LSTM"):
            lstm = init_forget_bias(torch.nn.LSTM(hp.embed, hp.hidden, batch_first=True), 1.0)
            if name == "NaiveLSTM":
                copy_lstm_weights(recurrent, lstm)
            else:
                recurrent.load_state_dict(lstm.state_dict())
        model = CharModel(vocab_size, recurrent, hp.embed)
        optimizer = torch.optim.AdamW(model.parameters(), lr=hp.lr, weight_decay=0.01)

        def step(X, Y, lr):
            for group in optimizer.param_groups:
                group["lr"] = lr
            logits, _ = model(torch.as_tensor(X))
            loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)),
                                   torch.as_tensor(Y).reshape(-1))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), hp.clip)
            optimizer.step()
            return loss.item()

        return Model(step, lambda val: validation_loss(model, val),
                     lambda vocab, prompt, n, t, seed: sample_text(model, vocab, prompt, n, t, seed),
                     sum(p.numel() for p in model.parameters()))
    return build


def _lesson4(*names):
    def code():
        from . import pytorch_lstm as m
        return [getattr(m, name) for name in names]
    return code


contender("PyTorch naive", 4, "PyTorch naive LSTM (lesson 4)",
          _lesson4("NaiveLSTMCell", "naive_cell_step", "lstm_input", "lstm_output", "NaiveLSTM",
                   "CharModel"),
          note="one nn.Linear per gate, autograd")(_torch_model("NaiveLSTM"))
contender("PyTorch fused", 4, "PyTorch fused LSTM (lesson 4)",
          _lesson4("fused_step", "fused_layer", "lstm_input", "lstm_output", "FusedLSTM",
                   "CharModel"),
          note="one product for the four gates, input projection hoisted")(_torch_model("FusedLSTM"))
contender("torch.nn.LSTM", 4, "torch.nn.LSTM", _lesson4("CharModel"),
          note="the library's fused kernels")(_torch_model("torch.nn.LSTM"))


def _keras_code():
    from .keras_word_lstm import build_word_lm
    return [build_word_lm]


@contender("Keras", 5, "Keras LSTM layer (lesson 5)", _keras_code,
           note="keras.layers.LSTM on TensorFlow, train_on_batch")
def keras_model(vocab_size, hp):
    import_tensorflow()
    import keras
    from .keras_word_lstm import build_word_lm, generation_model, keras_step_fn
    keras.utils.set_random_seed(0)
    model = build_word_lm(vocab_size, hp.embed, hp.hidden, dropout=0.0)
    # Keras starts embeddings near zero (uniform in ±0.05); the other contenders draw them from
    # N(0, 1), as nn.Embedding does. Same start for all, so the table compares implementations.
    table = model.get_layer("embedding").embeddings
    table.assign(np.random.default_rng(0).standard_normal(table.shape).astype(np.float32))
    # global_clipnorm clips the norm of all gradients together, like the others; Keras'
    # clipnorm would clip each weight's gradient on its own.
    model.compile(optimizer=keras.optimizers.Adam(hp.lr, global_clipnorm=hp.clip),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))

    def step(X, Y, lr):
        model.optimizer.learning_rate.assign(lr)
        return float(model.train_on_batch(X.astype(np.int32), Y.astype(np.int32)))

    return lm_model(step, lambda X: model.predict_on_batch(X.astype(np.int32)),
                    lambda: keras_step_fn(generation_model(model)), model.count_params())


contender("RNN (baseline)", 4, "torch.nn.RNN", _lesson4("CharModel"),
          note="torch.nn.RNN, tanh: no gates")(_torch_model("torch.nn.RNN"))
contender("GRU (baseline)", 4, "torch.nn.GRU", _lesson4("CharModel"),
          note="torch.nn.GRU: three gates, no cell state")(_torch_model("torch.nn.GRU"))


# --- the harness ---------------------------------------------------------------------------------

PROMPT, SAMPLE_LENGTH, TEMPERATURE = "ROMEO:\n", 200, 0.8


def train(name: str, corpus, seconds: float, *, evals: int = 4, seed: int = 0,
          changes: dict | None = None, sample: bool = True) -> dict:
    """Train contender ``name`` for ``seconds`` of training time; return its run record.

    ``changes`` overrides hyper-parameters (``{"hidden": 512}``). The validation loss is
    measured ``evals`` times, evenly over the budget; the last one is the run's result.
    """
    entry = CONTENDERS[name]
    unknown = set(changes or {}) - set(TUNABLE)
    if unknown:
        raise ValueError(f"unknown hyper-parameter(s) {sorted(unknown)}; choose from {list(TUNABLE)}")
    for key in set(changes or {}) & set(entry.fixed):
        raise ValueError(f"{name!r} has no use for {key!r} (it is {getattr(entry.hp, key)!r} "
                         f"by construction: {entry.note}); change another hyper-parameter")
    hp = replace(entry.hp, **(changes or {}))
    seed_everything(seed)
    model = entry.build(len(corpus.vocab), hp)
    batches = random_batches(corpus.train, hp.batch, hp.seq_len, np.random.default_rng(seed))
    eval_at = [seconds * (k + 1) / evals for k in range(evals)]
    curve, clock, steps, ema = [], 0.0, 0, None
    bar = progress(None, desc=name, total=seconds, unit="s",
                   bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total:g} s{postfix}")
    while eval_at:
        X, Y = next(batches)
        start = time.perf_counter()
        loss = float(model.step(X, Y, cosine_lr(clock / seconds, hp.lr)))
        elapsed = time.perf_counter() - start
        check_finite(loss, steps, f"{NAN_HINT} (contender {name!r}, lr {hp.lr})")
        clock, steps = clock + elapsed, steps + 1
        ema = loss if ema is None else 0.95 * ema + 0.05 * loss
        bar.update(min(elapsed, seconds - bar.n))
        if clock >= eval_at[0]:
            while eval_at and clock >= eval_at[0]:
                eval_at.pop(0)
            bar.set_postfix(loss=f"{ema:.3f}", refresh=False)
            curve.append({"time_s": round(clock, 2), "step": steps, "train_loss": round(ema, 4),
                          "val_loss": round(float(model.val_loss(corpus.val)), 4)})
    bar.close()
    tokens = steps * hp.batch * hp.seq_len
    record = {"name": name, "lesson": entry.lesson, "note": entry.note, "hparams": asdict(hp),
              "params": int(model.num_params), "lines": code_lines(*entry.code()),
              "steps": steps, "train_seconds": round(clock, 2),
              "train_chars_per_s": round(tokens / clock), "curve": curve,
              "val_loss": curve[-1]["val_loss"], "bench_row": entry.bench_row}
    if sample:
        record["sample"] = model.sample(corpus.vocab, PROMPT, SAMPLE_LENGTH, TEMPERATURE, seed)
    return record


def run_all(seconds: float, names=None, corpus=None, **kwargs) -> list[dict]:
    corpus = corpus or load_shakespeare()
    return [train(name, corpus, seconds, **kwargs) for name in names or CONTENDERS]


def report(throughput: list[dict], runs: list[dict], seconds: float) -> dict:
    from . import bench
    return {"measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": bench.machine(),
            "quick": QUICK, "train_seconds": seconds, "shape": asdict(bench.SHAPE),
            "throughput": throughput, "runs": runs}


def measure(seconds: float, bench_seconds: float, names=None) -> dict:
    """Throughput rows, then every contender trained for ``seconds``: the full report."""
    from . import bench
    throughput = bench.run(seconds=bench_seconds)
    return report(throughput, run_all(seconds, names), seconds)


def load_or_measure(path: Path = RESULTS) -> tuple[dict, str]:
    """The saved report of ``make bench``, or a short measurement made now; and which it is."""
    path = Path(path)
    if path.is_file():
        return (json.loads(path.read_text()),
                f"saved by make bench in {path.parent.name}/{path.name}")
    seconds = quick(20, 1)
    return (measure(seconds, bench_seconds=quick(1.0, 0.1)),
            f"measured just now with {seconds} s per model, because {path} does not exist "
            "(run make bench for the full measurement)")


def rows(results: dict, device: str = "cpu") -> list[dict]:
    """One row per contender: its run joined with its throughput on ``device`` (if measured)."""
    speed = {r["name"]: r for r in results["throughput"] if r["device"] == device}
    out = []
    for run in results["runs"]:
        row = dict(run)
        measured = speed.get(run["bench_row"])
        row["tokens_per_s"] = measured["tokens_per_s"] if measured else None
        row["ratio"] = measured["ratio_to_nn_lstm"] if measured else None
        out.append(row)
    return out


def table(results: dict, fmt: str = "github") -> str:
    """The comparison table (Markdown by default); GPU columns when the report has them."""
    from tabulate import tabulate
    gpu = {r["name"]: r for r in results["throughput"] if r["device"] == "cuda"}
    headers = ["implementation (lesson)", "val loss", "train chars/s", "fwd+bwd tokens/s",
               "× nn.LSTM", "params", "lines"]
    if gpu:
        headers += ["GPU tokens/s", "GPU × nn.LSTM"]
    body = []
    for r in rows(results):
        line = [f"{r['name']} ({r['lesson']})", f"{r['val_loss']:.3f}",
                f"{r['train_chars_per_s']:,}",
                "–" if r["tokens_per_s"] is None else f"{r['tokens_per_s']:,.0f}",
                "–" if r["ratio"] is None else f"{r['ratio']:.2f}",
                f"{r['params']:,}", r["lines"]]
        if gpu:
            g = gpu.get(r["bench_row"])
            line += ["–", "–"] if g is None else [f"{g['tokens_per_s']:,.0f}",
                                                 f"{g['ratio_to_nn_lstm']:.2f}"]
        body.append(line)
    return tabulate(body, headers, tablefmt=fmt, disable_numparse=True,
                    colalign=["left"] + ["right"] * (len(headers) - 1))
