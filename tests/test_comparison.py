"""Lesson 6: the comparison harness trains every contender and reports them; the saved report is
complete; the exercise checks accept right answers and reject the placeholder and wrong ones."""
import json
import math

import pytest

from lstmbook import bench, compare
from lstmbook.checks import ExerciseFailed, ExerciseNotDone
from lstmbook.checks import comparison as check
from lstmbook.data import load_shakespeare
from lstmbook.training import NonFiniteLossError


@pytest.fixture(scope="module")
def corpus():
    return load_shakespeare()


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    """The lesson's fallback: no saved report, so everything is measured now (quick mode)."""
    missing = tmp_path_factory.mktemp("results") / "bench.json"
    return compare.load_or_measure(missing)


# --- the harness ---------------------------------------------------------------------------------

def test_fallback_measures_every_contender_and_says_so(measured):
    results, source = measured
    assert "measured just now" in source and "make bench" in source
    assert [r["name"] for r in results["runs"]] == list(compare.CONTENDERS)
    for run in results["runs"]:
        assert run["steps"] >= 1 and run["curve"], run["name"]
        assert math.isfinite(run["val_loss"]) and 0 < run["val_loss"] < 10, run["name"]
        assert run["sample"].startswith(compare.PROMPT), run["name"]
        assert len(run["sample"]) == len(compare.PROMPT) + compare.SAMPLE_LENGTH, run["name"]
        assert run["lines"] > 0 and run["params"] > 0


def test_the_fallback_leaves_the_throughput_columns_to_make_bench(measured):
    results, _ = measured
    assert results["throughput"] == []
    assert all(row["tokens_per_s"] is None for row in compare.rows(results))
    assert all(line.count("–") == 2 for line in compare.table(results).splitlines()[2:])


def test_every_contender_names_a_bench_row():
    """compare cannot import bench (bench imports compare): the join is by row name."""
    assert {c.bench_row for c in compare.CONTENDERS.values()} <= set(bench.ROWS)


def test_parameter_counts_match_the_models(corpus):
    """Independent counts: PyTorch's modules, and the formulas of lessons 2, 3 and 5."""
    import torch
    V, E, H = 65, 64, 256
    torch_lstm = (V * E + sum(p.numel() for p in torch.nn.LSTM(E, H).parameters()) + H * V + V)
    assert len(corpus.vocab) == V
    counts = {name: c.build(V, c.hp).num_params for name, c in compare.CONTENDERS.items()
              if name != "Keras"}
    assert counts["torch.nn.LSTM"] == counts["PyTorch fused"] == torch_lstm
    assert counts["PyTorch naive"] == torch_lstm - 4 * H  # one bias per gate (nn.Linear's)
    assert counts["Autograd engine"] == counts["HIPS autograd"] == torch_lstm - 4 * H
    assert counts["NumPy, by hand"] == 4 * H * (V + H + 1) + H * V + V  # one-hot input


def test_table_has_a_row_per_contender_and_gpu_columns_only_when_measured(measured):
    results, _ = measured
    text = compare.table(results)
    lines = text.splitlines()
    assert len(lines) == 2 + len(compare.CONTENDERS)
    assert "GPU" not in lines[0]
    baseline = {"name": bench.BASELINE, "device": "cuda", "tokens_per_s": 1e6,
                "ratio_to_nn_lstm": 1.0}
    gpu = dict(results, throughput=results["throughput"] + [baseline])
    assert "GPU × nn.LSTM" in compare.table(gpu).splitlines()[0]


def test_load_or_measure_reads_a_saved_report(tmp_path, measured):
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(measured[0]))
    results, source = compare.load_or_measure(path)
    assert source == f"saved by make bench in {tmp_path.name}/bench.json"
    assert results == measured[0]


def test_the_committed_report_covers_every_contender():
    """results/bench.json (from make bench) is what the book shows: complete and full-length."""
    results = json.loads(compare.RESULTS.read_text())
    assert not results["quick"] and results["train_seconds"] >= 30
    assert [r["name"] for r in results["runs"]] == list(compare.CONTENDERS)
    assert all(r["tokens_per_s"] for r in compare.rows(results))


def test_bench_main_trains_only_the_chosen_contender(tmp_path, capsys):
    out = tmp_path / "bench.json"
    bench.main(["--seconds", "0.05", "--device", "cpu", "--train-seconds", "0.3",
                "--only", "torch.nn.LSTM", "--out", str(out)])
    report = json.loads(out.read_text())
    assert [r["name"] for r in report["runs"]] == ["torch.nn.LSTM"]
    printed = capsys.readouterr().out
    assert "val loss" in printed
    # lesson 7's counting baseline: a loss, no throughput
    baseline = report["baselines"][0]
    assert baseline["lesson"] == 7 and baseline["name"] == f"{baseline['order']}-gram counts"
    assert baseline["val_loss"] == round(min(baseline["losses_by_order"].values()), 4)
    assert f"{baseline['name']} (7)" in printed


def test_a_change_reaches_the_model(corpus):
    run = compare.train("torch.nn.LSTM", corpus, 0.2, evals=1, sample=False,
                        changes={"hidden": 32})
    assert run["hparams"]["hidden"] == 32
    assert run["params"] == 65 * 64 + 4 * 32 * (64 + 32 + 2) + 32 * 65 + 65


def test_unknown_change_is_refused(corpus):
    with pytest.raises(ValueError, match="unknown hyper-parameter.*hiden.*choose from"):
        compare.train("torch.nn.LSTM", corpus, 0.1, changes={"hiden": 32})


def test_a_change_the_model_cannot_use_is_refused(corpus):
    with pytest.raises(ValueError, match="'NumPy, by hand' has no use for 'embed'.*one-hot"):
        compare.train("NumPy, by hand", corpus, 0.1, changes={"embed": 64})


def test_non_finite_loss_stops_with_a_hint(corpus, monkeypatch):
    def broken(vocab_size, hp):
        return compare.Model(lambda X, Y, lr: float("nan"), lambda val: 0.0,
                             lambda *a: "", 1)
    entry = compare.CONTENDERS["torch.nn.LSTM"]
    monkeypatch.setitem(compare.CONTENDERS, "broken", compare.Contender(
        "broken", 0, broken, entry.hp, entry.bench_row, entry.code))
    with pytest.raises(NonFiniteLossError, match="contender 'broken'.*Lower the learning rate"):
        compare.train("broken", corpus, 1.0)


def test_code_lines_skips_blanks_comments_and_docstrings():
    def model(x):
        """A docstring
        over two lines."""
        # a comment

        y = x + 1  # an inline comment still counts the line
        return y
    assert compare.code_lines(model) == 3  # def, y = ..., return


# --- exercise 6.1 --------------------------------------------------------------------------------

def count(cell, vocab_size, embed_size, hidden_size):
    """An independent count: PyTorch's formula per weight matrix and bias vector."""
    k = {"rnn": 1, "lstm": 4, "gru": 3}[cell] * hidden_size
    return (vocab_size * embed_size + k * embed_size + k * hidden_size + 2 * k
            + hidden_size * vocab_size + vocab_size)


def test_num_params_passes(capsys):
    check.num_params(count)
    assert "Exercise 6.1 passed" in capsys.readouterr().out


def test_num_params_placeholder():
    def placeholder(*args):
        raise NotImplementedError("Exercise 6.1: a hint")
    with pytest.raises(ExerciseNotDone, match="6.1.*not implemented yet"):
        check.num_params(placeholder)


def test_num_params_one_bias_per_gate_is_named():
    def keras_style(cell, v, e, h):
        k = {"rnn": 1, "lstm": 4, "gru": 3}[cell] * h
        return count(cell, v, e, h) - k
    with pytest.raises(ExerciseFailed, match="one bias vector per gate.*bias_ih and bias_hh"):
        check.num_params(keras_style)


BLOCKS = {"rnn": 1, "lstm": 4, "gru": 3}


@pytest.mark.parametrize("wrong, message", [
    (lambda c, v, e, h: count(c, v, e, h) - h * v - v,
     "leaves out the read-out weights .* and the read-out bias"),
    (lambda c, v, e, h: count(c, v, e, h) - v, r"leaves out the read-out bias \(vocab_size\)\."),
    (lambda c, v, e, h: count(c, v, e, h) - v * e, "leaves out the embedding table"),
    (lambda c, v, e, h: count(c, v, e, h) - BLOCKS[c] * h * h, "leaves out the recurrent weights"),
    (lambda c, v, e, h: count(c, v, e, h) - 2 * BLOCKS[c] * h,
     "leaves out the biases: PyTorch keeps two per gate block"),
    (lambda c, v, e, h: count(c, v, e, h) - BLOCKS[c] * h * (h - e),
     "each block of it is hidden_size x hidden_size, not hidden_size x embed_size"),
    (lambda c, v, e, h: count("lstm", v, e, h),
     r"num_params\('rnn'.*the count of an LSTM, with 4 gate block\(s\); an RNN has 1"),
    (lambda c, v, e, h: count("lstm" if c == "gru" else c, v, e, h),
     r"num_params\('gru'.*the count of an LSTM.*a GRU has 3"),
    (lambda c, v, e, h: count(c, v, e, h) + 7, r"PyTorch allocates.*\(embed \+ hidden \+ 2\)"),
], ids=["no-readout", "no-readout-bias", "no-embedding", "no-W_hh", "no-biases", "W_hh-h-by-e",
        "lstm-for-rnn", "lstm-for-gru", "other"])
def test_num_params_names_the_mistake(wrong, message):
    with pytest.raises(ExerciseFailed, match=message):
        check.num_params(wrong)


def test_num_params_non_integer():
    with pytest.raises(ExerciseFailed, match="whole number"):
        check.num_params(lambda c, v, e, h: count(c, v, e, h) + 0.5)


# --- exercise 6.2 --------------------------------------------------------------------------------

def test_experiment_passes(capsys):
    check.experiment(lambda: ({"batch": 64}, {"speed": "higher", "loss": "about the same"}))
    assert "Exercise 6.2 passed" in capsys.readouterr().out


def test_experiment_placeholder():
    def placeholder():
        raise NotImplementedError("Exercise 6.2: a hint")
    with pytest.raises(ExerciseNotDone, match="6.2.*not implemented yet"):
        check.experiment(placeholder)


@pytest.mark.parametrize("answer, message", [
    (({"hidden": 512, "lr": 1e-2}, {"speed": "lower", "loss": "higher"}), "exactly one entry"),
    (({"layers": 2}, {"speed": "lower", "loss": "higher"}), "not a hyper-parameter"),
    (({"hidden": 256}, {"speed": "lower", "loss": "higher"}), "already use"),
    (({"hidden": 300.5}, {"speed": "lower", "loss": "higher"}), "whole number"),
    (({"lr": 5.0}, {"speed": "lower", "loss": "higher"}), "outside the sensible range"),
    (({"hidden": 512}, {"speed": "slower"}), "exactly the keys"),
    (({"hidden": 512}, {"speed": "slower", "loss": "higher"}), "write one of"),
    (({"hidden": 512}, {"speed": "slower", "loss": "higher"}), "a faster run has a higher "
                                                               "speed, so that is 'lower'"),
    (({"hidden": 512}, {"speed": "lower", "loss": "worse"}), "so that is 'higher'"),
    (({"hidden": 512}, {"speed": "lower", "loss": "much"}), r"write one of \[.*\]$"),
    (({"hidden": "512"}, {"speed": "lower", "loss": "higher"}), "is a str: give a number"),
    ({"hidden": 512}, "return two things"),
    (([("hidden", 512)], {"speed": "lower", "loss": "higher"}), "`changes` should be a dict"),
])
def test_experiment_rejects(answer, message):
    with pytest.raises(ExerciseFailed, match=message):
        check.experiment(lambda: answer)
