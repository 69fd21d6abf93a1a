"""Lesson 4: the scratch LSTMs equal torch.nn.LSTM, bad input is refused clearly, the checks
accept right answers and reject wrong ones, and make train / the sampler work end to end."""
import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from lstmbook import bench, checks
from lstmbook import best_model as best
from lstmbook.checks import pytorch_lstm as check
from lstmbook.data import load_shakespeare
from lstmbook.lessons import pytorch_lstm as lesson

D, H, T, B = 5, 6, 7, 3
GATES = 4
SCRATCH = [lesson.NaiveLSTM, lesson.FusedLSTM, lesson.FastLSTM, lesson.ScriptedLSTM,
           lesson.CppLSTM]
TOL = {torch.float64: 1e-10, torch.float32: 1e-5}


# --- an independent weight mapping (not the exercise's answer) -----------------------------------

def load_from_torch(module, ref):
    """Give ``module`` the weights of the nn.LSTM ``ref``."""
    if not isinstance(module, lesson.NaiveLSTM):
        module.load_state_dict(ref.state_dict())
        return module
    with torch.no_grad():
        for layer, cell in enumerate(module.cells):
            W = torch.cat([getattr(ref, f"weight_ih_l{layer}"),
                           getattr(ref, f"weight_hh_l{layer}")], 1)
            b = getattr(ref, f"bias_ih_l{layer}") + getattr(ref, f"bias_hh_l{layer}")
            for k, linear in enumerate((cell.W_i, cell.W_f, cell.W_g, cell.W_o)):
                linear.weight.copy_(W[k * H:(k + 1) * H])
                linear.bias.copy_(b[k * H:(k + 1) * H])
    return module


def torch_named_grads(module):
    """Parameter gradients under nn.LSTM's names; the naive module's are re-assembled."""
    if not isinstance(module, lesson.NaiveLSTM):
        return {n: p.grad for n, p in module.named_parameters()}
    grads = {}
    for layer, cell in enumerate(module.cells):
        linears = (cell.W_i, cell.W_f, cell.W_g, cell.W_o)
        n_in = cell.input_size
        grads[f"weight_ih_l{layer}"] = torch.cat([l.weight.grad[:, :n_in] for l in linears])
        grads[f"weight_hh_l{layer}"] = torch.cat([l.weight.grad[:, n_in:] for l in linears])
        grads[f"bias_ih_l{layer}"] = grads[f"bias_hh_l{layer}"] = torch.cat(
            [l.bias.grad for l in linears])
    return grads


def run_and_differentiate(module, X, state):
    out, (h, c) = module(X, state)
    weights = torch.linspace(-1.0, 1.0, out.numel(), dtype=out.dtype).view(out.shape)
    loss = (out * weights).sum() + (h ** 2).sum() + (c * h).sum()
    module.zero_grad()
    inputs = [X] + ([s for s in state] if state is not None else [])
    input_grads = torch.autograd.grad(loss, inputs, retain_graph=True)
    loss.backward()
    return out, h, c, input_grads, torch_named_grads(module)


@pytest.mark.parametrize("cls", SCRATCH, ids=lambda c: c.__name__)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("batch_first", [False, True], ids=["time_first", "batch_first"])
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("given_state", [False, True], ids=["zero_state", "given_state"])
def test_equals_torch_lstm(cls, dtype, batch_first, num_layers, given_state):
    torch.manual_seed(0)
    sizes = dict(input_size=D, hidden_size=H, num_layers=num_layers, batch_first=batch_first)
    ref = nn.LSTM(**sizes).to(dtype)
    module = load_from_torch(cls(**sizes).to(dtype), ref)
    X = torch.randn((B, T, D) if batch_first else (T, B, D), dtype=dtype, requires_grad=True)
    state = tuple(torch.randn(num_layers, B, H, dtype=dtype, requires_grad=True)
                  for _ in range(2)) if given_state else None
    got, want = run_and_differentiate(module, X, state), run_and_differentiate(ref, X, state)
    tol = TOL[dtype]
    for name, g, w in zip(("output", "h_n", "c_n"), got[:3], want[:3]):
        assert g.shape == w.shape, name
        assert (g - w).abs().max().item() <= tol, name
    for g, w in zip(got[3], want[3]):
        assert (g - w).abs().max().item() <= tol, "input gradient"
    assert set(got[4]) == set(want[4]) == {n for n, _ in ref.named_parameters()}
    for name in want[4]:
        assert (got[4][name] - want[4][name]).abs().max().item() <= tol, name


@pytest.mark.parametrize("cls", SCRATCH[:3], ids=lambda c: c.__name__)
def test_unbatched_input_like_torch(cls):
    torch.manual_seed(1)
    ref = nn.LSTM(D, H, num_layers=2).double()
    module = load_from_torch(cls(D, H, num_layers=2).double(), ref)
    X = torch.randn(T, D, dtype=torch.float64)
    state = tuple(torch.randn(2, H, dtype=torch.float64) for _ in range(2))
    (out, (h, c)), (out0, (h0, c0)) = module(X, state), ref(X, state)
    assert out.shape == out0.shape == (T, H) and h.shape == h0.shape == (2, H)
    assert torch.allclose(out, out0, atol=1e-12) and torch.allclose(c, c0, atol=1e-12)


@pytest.mark.parametrize("cls", SCRATCH[:3], ids=lambda c: c.__name__)
def test_dropout_between_layers_only_in_training(cls):
    torch.manual_seed(2)
    ref = nn.LSTM(D, H, num_layers=2, dropout=0.5).double()
    module = load_from_torch(cls(D, H, num_layers=2, dropout=0.5).double(), ref)
    X = torch.randn(T, B, D, dtype=torch.float64)
    module.eval()
    ref.eval()
    assert torch.allclose(module(X)[0], ref(X)[0], atol=1e-12)  # no dropout in eval mode
    module.train()
    torch.manual_seed(3)
    first = module(X)[0]
    torch.manual_seed(4)
    second = module(X)[0]
    assert not torch.allclose(first, second)  # dropout is active while training
    # One layer: nothing lies between layers, so dropout changes nothing (as in nn.LSTM).
    single = load_from_torch(cls(D, H, dropout=0.5).double(), nn.LSTM(D, H).double())
    single.train()
    assert torch.allclose(single(X)[0], single.eval()(X)[0], atol=1e-12)


@pytest.mark.parametrize("cls", SCRATCH[:3], ids=lambda c: c.__name__)
def test_bad_input_names_the_expected_shape(cls):
    with pytest.raises(ValueError,
                       match=r"expected input of shape \(seq_len, batch, input_size\).*4-D"):
        cls(D, H)(torch.randn(2, T, B, D))
    with pytest.raises(ValueError, match=r"\(batch, seq_len, input_size\)"):
        cls(D, H, batch_first=True)(torch.randn(D))
    with pytest.raises(ValueError, match=r"input_size\. Expected 5, got 4"):
        cls(D, H)(torch.randn(T, B, 4))
    with pytest.raises(ValueError,
                       match=r"h_0 of shape \(num_layers, batch, hidden_size\) = \(2, 3, 6\)"):
        cls(D, H, num_layers=2)(torch.randn(T, B, D), (torch.zeros(1, B, H), torch.zeros(2, B, H)))


def test_cpp_lstm_trains_like_torch_on_the_benchmark_layout():
    """CppLSTM on a batch of odd size and a long sequence: same loss curve as nn.LSTM."""
    torch.manual_seed(5)
    ref = nn.LSTM(D, H, batch_first=True).double()
    module = load_from_torch(lesson.CppLSTM(D, H, batch_first=True).double(), ref)
    X, target = torch.randn(5, 40, D, dtype=torch.float64), torch.randn(5, 40, H).double()
    losses = []
    for m in (module, ref):
        optimizer = torch.optim.SGD(m.parameters(), lr=0.5)
        for _ in range(3):
            loss = ((m(X)[0] - target) ** 2).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        losses.append(loss.item())
    assert abs(losses[0] - losses[1]) < 1e-10


def test_cpp_lstm_without_a_compiler_says_what_to_install(monkeypatch):
    real_which = lesson.shutil.which
    monkeypatch.setattr(lesson.shutil, "which",
                        lambda tool: None if tool == "ninja" else real_which(tool))
    lesson.lstm_extension.cache_clear()
    try:
        with pytest.raises(RuntimeError, match=r"needs 'ninja'.*pip install ninja.*FastLSTM"):
            lesson.CppLSTM(D, H)(torch.randn(T, B, D))
    finally:
        lesson.lstm_extension.cache_clear()  # the next test loads the built extension again


def test_loading_the_cpp_extension_keeps_subnormal_numbers():
    """-ffast-math compiles the kernels only: a library linked with it would switch the whole
    process to flushing subnormal numbers to zero."""
    lesson.lstm_extension()
    assert (torch.tensor([1e-39]) * 0.5).item() > 0
    assert np.float32(1e-39) * np.float32(0.5) > 0


def test_cpp_lstm_rejects_a_dtype_it_has_no_loop_for():
    with pytest.raises(RuntimeError, match="BFloat16"):
        lesson.CppLSTM(D, H).to(torch.bfloat16)(torch.randn(T, B, D, dtype=torch.bfloat16))


def test_no_forget_gate_as_infinite_bias_has_finite_gradients():
    lstm = lesson.init_forget_bias(lesson.FastLSTM(D, H).double(), math.inf)
    X = torch.randn(T, B, D, dtype=torch.float64, requires_grad=True)
    out, _ = lstm(X)
    out.sum().backward()
    assert torch.isfinite(X.grad).all()


def test_nonfinite_loss_in_lesson_training_stops_with_hint():
    corpus = load_shakespeare()

    class Broken(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.zeros(1))

        def forward(self, X, state=None):
            return torch.full((*X.shape, 65), math.nan) + self.w, state

    with pytest.raises(lesson.training.NonFiniteLossError, match="learning rate"):
        lesson.train_char_model(Broken(), corpus, 0.5, batch_size=2, seq_len=4)


# --- checks: pass, placeholder, wrong answers ---------------------------------------------------

def placeholder(number):
    def answer(*args, **kwargs):
        raise NotImplementedError(f"Exercise {number}: ...")
    return answer


def test_checks_pass_on_the_lesson_answers(capsys):
    check.naive_cell_step(lesson.naive_cell_step)
    check.fused_step(lesson.fused_step)
    check.copy_lstm_weights(lesson.copy_lstm_weights, lesson.NaiveLSTM)
    check.init_forget_bias(lesson.init_forget_bias, lesson.FusedLSTM)
    check.initial_state_gradient(clinic_functions()["initial_state_gradient"])
    printed = capsys.readouterr().out
    for number in ("4.1", "4.2", "4.3", "4.4", "4.5"):
        assert f"Exercise {number} passed" in printed


@pytest.mark.parametrize("number, run", [
    ("4.1", lambda a: check.naive_cell_step(a)),
    ("4.2", lambda a: check.fused_step(a)),
    ("4.3", lambda a: check.copy_lstm_weights(a, lesson.NaiveLSTM)),
    ("4.4", lambda a: check.init_forget_bias(a, lesson.FusedLSTM)),
    ("4.5", lambda a: check.initial_state_gradient(a)),
])
def test_checks_reject_the_placeholder(number, run):
    with pytest.raises(checks.ExerciseNotDone, match=rf"Exercise {number} .* not implemented yet"):
        run(placeholder(number))


def naive_variant(gates):
    """A naive_cell_step whose gates are computed by ``gates(cell, XH) -> (I, F, G, O)``."""
    def step(cell, X, state):
        H0, C0 = state
        I, F, G, O = gates(cell, torch.cat([X, H0], dim=1))
        C = F * C0 + I * G
        return O * torch.tanh(C), C
    return step


S, Tanh = torch.sigmoid, torch.tanh


@pytest.mark.parametrize("wrong, message", [
    (naive_variant(lambda c, xh: (S(c.W_i(xh)), S(c.W_f(xh)), Tanh(c.W_g(xh)), Tanh(c.W_o(xh)))),
     "output gate"),
    (naive_variant(lambda c, xh: (S(c.W_f(xh)), S(c.W_i(xh)), Tanh(c.W_g(xh)), S(c.W_o(xh)))),
     r"wrong weights \(i <- rows of f, f <- rows of i\)"),
    (naive_variant(lambda c, xh: (S(c.W_i(xh)), S(c.W_f(xh)), S(c.W_g(xh)), S(c.W_o(xh)))),
     "candidate"),
    (naive_variant(lambda c, xh: (S(c.W_i(xh)), S(c.W_i(xh)), Tanh(c.W_g(xh)), S(c.W_o(xh)))),
     "forget gate"),
    (naive_variant(lambda c, xh: (Tanh(c.W_i(xh)), S(c.W_f(xh)), Tanh(c.W_g(xh)), S(c.W_o(xh)))),
     "input gate"),
    (naive_variant(lambda c, xh: tuple(act(xh @ W.weight.t()) for act, W in (
        (S, c.W_i), (S, c.W_f), (Tanh, c.W_g), (S, c.W_o)))),
     r"all four gates differ, because their pre-activation lacks the biases"),
    (naive_variant(lambda c, xh: tuple(x.detach() for x in (
        S(c.W_i(xh)), S(c.W_f(xh)), Tanh(c.W_g(xh)), S(c.W_o(xh))))), "autograd"),
])
def test_naive_gate_check_rejects_wrong_answers(wrong, message):
    with pytest.raises(checks.ExerciseFailed, match=message):
        check.naive_cell_step(wrong)


def fused_variant(order="ifgo", out_act=torch.sigmoid, transpose=True, pre=None):
    def step(XW_t, H0, C0, W_hh):
        gates = (pre(XW_t, H0, W_hh) if pre is not None
                 else torch.addmm(XW_t, H0, W_hh.t() if transpose else W_hh))
        blocks = dict(zip(order, gates.chunk(4, dim=1)))
        C = S(blocks["f"]) * C0 + S(blocks["i"]) * Tanh(blocks["g"])
        return out_act(blocks["o"]) * Tanh(C), C
    return step


@pytest.mark.parametrize("wrong, message", [
    (fused_variant(order="igfo"), r"wrong weights \(f <- rows of g, g <- rows of f\)"),
    (fused_variant(order="fiog"), "order i, f, g, o"),
    (fused_variant(out_act=torch.tanh), "output gate"),
    (fused_variant(transpose=False), r"raised RuntimeError.*W_hh\.t\(\)"),
    (fused_variant(pre=lambda XW_t, H0, W_hh: H0 @ W_hh.t()),
     r"all four gates differ, because their pre-activation lacks the input projection with "
     r"the biases.*XW_t \+ H @ W_hh\.t\(\)"),
    (fused_variant(pre=lambda XW_t, H0, W_hh: XW_t),
     r"all four gates differ, because their pre-activation lacks the recurrent term"),
])
def test_fused_step_check_rejects_wrong_answers(wrong, message):
    with pytest.raises(checks.ExerciseFailed, match=message):
        check.fused_step(wrong)


def copy_variant(order=(0, 1, 2, 3), bias="both", layers=None, swap_sides=False):
    @torch.no_grad()
    def copy(naive, lstm):
        h = lstm.hidden_size
        for layer, cell in enumerate(naive.cells[:layers]):
            W_ih, W_hh = getattr(lstm, f"weight_ih_l{layer}"), getattr(lstm, f"weight_hh_l{layer}")
            b_ih, b_hh = getattr(lstm, f"bias_ih_l{layer}"), getattr(lstm, f"bias_hh_l{layer}")
            for k, gate in zip(order, [cell.W_i, cell.W_f, cell.W_g, cell.W_o]):
                rows = slice(k * h, (k + 1) * h)
                parts = [W_hh[rows], W_ih[rows]] if swap_sides else [W_ih[rows], W_hh[rows]]
                if swap_sides and W_ih.shape[1] != h:
                    parts = [W_ih[rows], W_hh[rows]]
                gate.weight.copy_(torch.cat(parts, dim=1))
                gate.bias.copy_({"both": b_ih[rows] + b_hh[rows], "ih": b_ih[rows]}[bias])
        return naive
    return copy


@pytest.mark.parametrize("wrong, message", [
    (copy_variant(order=(0, 2, 1, 3)),
     r"W_f holds the rows of the candidate g .* order i, f, g, o"),
    (copy_variant(order=(3, 1, 2, 0)), r"W_i holds the rows of the output gate o"),
    (copy_variant(bias="ih"), "holds bias_ih only; nn.LSTM adds both biases"),
    (copy_variant(layers=1), r"layer 1: .*(unchanged|copy every layer)"),
])
def test_copy_check_rejects_wrong_answers(wrong, message):
    with pytest.raises(checks.ExerciseFailed, match=message):
        check.copy_lstm_weights(wrong, lesson.NaiveLSTM)


def forget_variant(block=1, both=False, zero_hh=True, layers=None):
    @torch.no_grad()
    def init(lstm, value=1.0):
        h = lstm.hidden_size
        for layer in range(lstm.num_layers)[:layers]:
            rows = slice(block * h, (block + 1) * h)
            getattr(lstm, f"bias_ih_l{layer}")[rows] = value
            if both:
                getattr(lstm, f"bias_hh_l{layer}")[rows] = value
            elif zero_hh:
                getattr(lstm, f"bias_hh_l{layer}")[rows] = 0.0
        return lstm
    return init


@pytest.mark.parametrize("wrong, message", [
    (forget_variant(block=0), r"forget block is unchanged in layer 0.*second block"),
    (forget_variant(block=2), r"forget block is unchanged"),
    (forget_variant(both=True), "twice the value"),
    (forget_variant(zero_hh=False), "bias_hh's forget block still holds its random values"),
    (forget_variant(layers=1), r"layer 1.*set every layer"),
])
def test_forget_bias_check_rejects_wrong_answers(wrong, message):
    with pytest.raises(checks.ExerciseFailed, match=message):
        check.init_forget_bias(wrong, lesson.FusedLSTM)


# --- 4.5, the debugging clinic: the functions are the lesson's own cells -----------------------

def clinic_functions():
    """seed_style_state_gradient and initial_state_gradient, executed from the lesson's cells."""
    import jupytext
    notebook = jupytext.read(lesson_path())
    namespace = {"torch": torch, "nn": nn}
    for cell in notebook.cells:
        if cell.cell_type == "code" and ("def seed_style_state_gradient(" in cell.source
                                         or "def initial_state_gradient(" in cell.source):
            exec(cell.source, namespace)  # noqa: S102 - the lesson's own code
    return namespace


def lesson_path():
    from lstmbook.data import REPO_ROOT
    return REPO_ROOT / "book" / "04_pytorch_lstm.md"


def test_clinic_4_5_buggy_function_fails_with_the_leaf_message():
    with pytest.warns(UserWarning, match="not a leaf"):
        with pytest.raises(checks.ExerciseFailed,
                           match=r"dtype=float64 your function returned None.*\(with float32 it "
                                 r"returned one\).*not a leaf.*requires_grad=True\)"):
            check.initial_state_gradient(clinic_functions()["seed_style_state_gradient"])


def state_gradient_variant(loss="last", dtype_of_grad=None):
    def answer(lstm, X, dtype):
        shape = (lstm.num_layers, X.shape[1], lstm.hidden_size)
        h_0 = torch.zeros(shape, dtype=dtype, requires_grad=True)
        out, _ = lstm.to(dtype)(X.to(dtype), (h_0, torch.zeros(shape, dtype=dtype)))
        (out[-1] if loss == "last" else out).sum().backward()
        return h_0.grad if dtype_of_grad is None else h_0.grad.to(dtype_of_grad)
    return answer


@pytest.mark.parametrize("wrong, message", [
    (state_gradient_variant(loss="all"), r"gradient with respect to h_0.*out\[-1\]\.sum\(\)"),
    (state_gradient_variant(dtype_of_grad=torch.float32),
     r"gradient is float32, expected float64"),
    (lambda lstm, X, dtype: torch.zeros(X.shape[1], lstm.hidden_size, dtype=dtype),
     r"shape \(3, 4\), expected h_0's shape"),
    (lambda lstm, X, dtype: 0.0, "as a torch.Tensor"),
])
def test_state_gradient_check_rejects_wrong_answers(wrong, message):
    with pytest.raises(checks.ExerciseFailed, match=message):
        check.initial_state_gradient(wrong)


def test_forget_bias_check_rejects_changed_gates():
    @torch.no_grad()
    def also_input_gate(lstm, value=1.0):
        lesson.init_forget_bias(lstm, value)
        for layer in range(lstm.num_layers):
            getattr(lstm, f"bias_ih_l{layer}")[:lstm.hidden_size] = 0.0
        return lstm
    with pytest.raises(checks.ExerciseFailed, match="input gate i's bias changed"):
        check.init_forget_bias(also_input_gate)


# --- make train and the sampler ------------------------------------------------------------------

TINY = ["--hidden", "16", "--embed", "8", "--batch", "8", "--seq-len", "16", "--evals", "2",
        "--eval-windows", "4", "--threads", "1"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    out = tmp_path_factory.mktemp("ckpt") / "best.pt"
    assert best.main(["--minutes", "0.02", "--device", "cpu", "--out", str(out), *TINY]) == 0
    return out


def test_train_writes_checkpoint_and_curve(checkpoint):
    assert checkpoint.is_file()
    report = json.loads(best.curve_path(checkpoint).read_text())
    assert report["curve"] and report["budget_s"] == pytest.approx(1.2)
    assert all(math.isfinite(p["val_loss"]) and p["time_s"] > 0 for p in report["curve"])
    assert report["best_val_loss"] == min(p["val_loss"] for p in report["curve"])
    ckpt = torch.load(checkpoint, weights_only=True)
    assert ckpt["config"]["hidden"] == 16 and len(ckpt["vocab"]) == 65


def test_sampler_loads_the_checkpoint(checkpoint, capsys):
    from lstmbook import sample  # noqa: F401  (the module behind python -m lstmbook.sample)
    assert best.sample_main(["--checkpoint", str(checkpoint), "--prompt", "ROMEO:",
                             "--length", "40", "--temperature", "0.8"]) == 0
    text = capsys.readouterr().out.rstrip("\n")
    assert text.startswith("ROMEO:") and len(text) == len("ROMEO:") + 40


def test_loading_a_checkpoint_with_another_vocabulary_says_which(checkpoint, tmp_path):
    other = tmp_path / "other.txt"
    other.write_text(load_shakespeare().text + "é")
    assert best.sample_main(["--checkpoint", str(checkpoint), "--text", str(other)]) == 1
    from lstmbook.data import Vocab
    with pytest.raises(ValueError,
                       match=r"vocabulary differs.*65 symbols.*66.*only in the text: 'é'"):
        best.load_model(checkpoint, Vocab(other.read_text()))


def test_loading_a_checkpoint_of_another_size_says_which(checkpoint, tmp_path):
    with pytest.raises(ValueError,
                       match=r"size differs: the checkpoint has hidden=16, expected hidden=32"):
        best.load_model(checkpoint, hidden=32)
    ckpt = torch.load(checkpoint, weights_only=True)
    ckpt["config"]["hidden"] = 24  # weights of one size, a config of another
    bad = tmp_path / "bad.pt"
    torch.save(ckpt, bad)
    with pytest.raises(ValueError,
                       match=r"size differs: parameter core\.weight_ih_l0 has shape \(64, 8\)"):
        best.load_model(bad)
    with pytest.raises(FileNotFoundError, match="make train"):
        best.load_model(tmp_path / "missing.pt")


def test_train_stops_on_nonfinite_loss_with_hint(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(best, "char_model_step", lambda *args, **kwargs: torch.tensor(math.nan))
    assert best.main(["--minutes", "0.02", "--out", str(tmp_path / "x.pt"), *TINY]) == 1
    err = capsys.readouterr().err
    assert "make train: lower --lr" in err and "Lower the learning rate" in err


# --- benchmark rows ------------------------------------------------------------------------------

def test_bench_rows_run_on_cpu():
    names = [n for n in bench.ROWS if "(lesson 4)" in n]
    assert {"PyTorch naive LSTM (lesson 4)", "PyTorch fused LSTM (lesson 4)"} <= set(names)
    for name in names:
        step = bench.ROWS[name]("cpu")
        step()
