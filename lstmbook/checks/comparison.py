"""Checks for lesson 6 (book/06_comparison.md).

6.1 compares the student's parameter count with the number of parameters PyTorch allocates for
the same model (an nn.Embedding, nn.RNN / nn.LSTM / nn.GRU and an nn.Linear read-out), so the
oracle is the library, not a formula. 6.2 checks the method of an experiment: one
hyper-parameter changed to a new, sensible value, and a prediction for both measures.
"""
from . import ExerciseFailed, exercise

CELLS = {"rnn": "RNN", "lstm": "LSTM", "gru": "GRU"}
# (vocab_size, embed_size, hidden_size): the lesson's size, a small odd one, a wide one
SIZES = [(65, 64, 256), (7, 3, 5), (100, 32, 512)]
DIRECTIONS = ("higher", "lower", "about the same")
MEASURES = ("speed", "loss")


def torch_count(cell: str, vocab_size: int, embed_size: int, hidden_size: int) -> int:
    """Parameters PyTorch allocates for embedding -> one recurrent layer -> linear read-out."""
    from torch import nn
    layers = [nn.Embedding(vocab_size, embed_size),
              getattr(nn, CELLS[cell])(embed_size, hidden_size, batch_first=True),
              nn.Linear(hidden_size, vocab_size)]
    return sum(p.numel() for layer in layers for p in layer.parameters())


def _blocks(cell, v, e, h, got):
    """A hint for the usual mistakes, found by comparing with the parts of the true count."""
    from torch import nn
    recurrent = getattr(nn, CELLS[cell])(e, h)
    biases = sum(p.numel() for n, p in recurrent.named_parameters() if n.startswith("bias"))
    total = torch_count(cell, v, e, h)
    if got == total - biases // 2:
        return ("that is one bias vector per gate block; PyTorch keeps two (bias_ih and "
                "bias_hh), as lesson 4 showed. Keras keeps one, which is why its row in the table "
                "differs.")
    if got == total - v * e or got == total - (h * v + v):
        return "remember the embedding table and the read-out layer (weights and bias)."
    k = {"rnn": 1, "lstm": 4, "gru": 3}[cell]
    return (f"a {CELLS[cell]} has {k} block(s) of hidden_size rows in each weight matrix "
            "and bias: count (embed + hidden + 2) * hidden per block.")


@exercise("6.1", "Count the parameters")
def num_params(fn):
    for cell in CELLS:
        for v, e, h in SIZES:
            got = fn(cell, v, e, h)
            expected = torch_count(cell, v, e, h)
            if not isinstance(got, int) or isinstance(got, bool):
                try:
                    if float(got) != int(got):
                        raise ValueError
                    got = int(got)
                except (TypeError, ValueError):
                    raise ExerciseFailed(
                        f"num_params({cell!r}, {v}, {e}, {h}) returned {got!r}; it should return "
                        "a whole number") from None
            if got != expected:
                raise ExerciseFailed(
                    f"num_params({cell!r}, vocab_size={v}, embed_size={e}, hidden_size={h}) "
                    f"returned {got:,}, PyTorch allocates {expected:,}. Hint: "
                    + _blocks(cell, v, e, h, got))


@exercise("6.2", "Change one thing, predict, then measure")
def experiment(fn, contender="torch.nn.LSTM"):
    """``fn() -> (changes, prediction)``: changes is {name: value} with exactly one tunable
    hyper-parameter of the run; prediction is {"speed": direction, "loss": direction}."""
    from dataclasses import asdict

    from lstmbook.compare import CONTENDERS
    from lstmbook.compare import TUNABLE as tunable
    defaults = asdict(CONTENDERS[contender].hp)
    answer = fn()
    if not isinstance(answer, tuple) or len(answer) != 2:
        raise ExerciseFailed(f"return two things, (changes, prediction); got {answer!r}")
    changes, prediction = answer
    if not isinstance(changes, dict) or len(changes) != 1:
        raise ExerciseFailed(
            f"`experiment` should be a dict with exactly one entry, like {{'hidden': 512}}; got "
            f"{changes!r}. Change one thing at a time, or you cannot tell which change caused "
            "what you measure.")
    (name, value), = changes.items()
    if name not in tunable:
        raise ExerciseFailed(f"{name!r} is not a hyper-parameter of the runs; choose one of "
                             f"{sorted(tunable)}")
    low, high = tunable[name]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise ExerciseFailed(f"{name} = {value!r} is outside the sensible range [{low}, {high}]")
    if isinstance(defaults[name], int) and not float(value).is_integer():
        raise ExerciseFailed(f"{name} counts something: it needs a whole number, got {value!r}")
    if value == defaults[name]:
        raise ExerciseFailed(f"{name} = {value!r} is the value the runs already use: change it")
    if not isinstance(prediction, dict) or set(prediction) != set(MEASURES):
        raise ExerciseFailed(
            f"`prediction` should have exactly the keys {list(MEASURES)}, got {prediction!r}")
    for measure, direction in prediction.items():
        if direction not in DIRECTIONS:
            raise ExerciseFailed(f"prediction[{measure!r}] = {direction!r}: write one of "
                                 f"{list(DIRECTIONS)}")
