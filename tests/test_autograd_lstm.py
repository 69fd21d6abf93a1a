"""Lesson 3: the autograd engine and the HIPS-autograd models against finite differences and
PyTorch (float64), the engine's error messages, and the exercise checks.

The oracles here are written independently of the lesson: our own central differences, and
PyTorch modules with the weights copied in.
"""
import autograd.numpy as anp
import numpy as np
import pytest
import torch
from autograd import grad

from lstmbook import checks, training
from lstmbook.checks import autograd_lstm as check
from lstmbook.checks import numeric_grad
from lstmbook.lessons import autograd_lstm as L

Tensor = L.Tensor
TOL = 1e-7  # relative error allowed against the references in float64


def rel_err(got, expected):
    got, expected = np.asarray(got, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    assert got.shape == expected.shape, (got.shape, expected.shape)
    return np.abs(got - expected).max() / max(np.abs(expected).max(), 1e-30)


# ---- every operation's backward rule against central differences ---------------------------

rng0 = np.random.default_rng(0)
IDS = np.array([[3, 0], [3, 1]])
TARGETS = np.array([2, 0, 4])
OPS = {
    # name: (engine function of Tensors, the same in NumPy, input arrays)
    "add": (lambda a, b: a + b, lambda a, b: a + b, [(3, 4), (3, 4)]),
    "add broadcast": (lambda a, b: a + b, lambda a, b: a + b, [(3, 4), (4,)]),
    "add broadcast keepdims": (lambda a, b: b + a, lambda a, b: b + a, [(3, 4), (3, 1)]),
    "mul": (lambda a, b: a * b, lambda a, b: a * b, [(3, 4), (3, 4)]),
    "mul broadcast": (lambda a, b: a * b, lambda a, b: a * b, [(2, 3, 4), (3, 1)]),
    "matmul": (lambda a, b: a @ b, lambda a, b: a @ b, [(3, 4), (4, 5)]),
    "sigmoid": (L.sigmoid, lambda a: 1 / (1 + np.exp(-a)), [(3, 4)]),
    "tanh": (L.tanh, np.tanh, [(3, 4)]),
    "sum": (lambda a: a.sum(), np.sum, [(3, 4)]),
    "getitem": (lambda a: a[:, 1:3], lambda a: a[:, 1:3], [(3, 4)]),
    "getitem int": (lambda a: a[1], lambda a: a[1], [(3, 4)]),
    "reshape": (lambda a: a.reshape(4, 3), lambda a: a.reshape(4, 3), [(3, 4)]),
    "stack": (lambda a, b: L.stack([a, b, a], axis=1), lambda a, b: np.stack([a, b, a], axis=1),
              [(3, 4), (3, 4)]),
    "embedding": (lambda w: L.embedding(w, IDS), lambda w: w[IDS], [(5, 3)]),
    "cross_entropy": (lambda z: L.cross_entropy(z, TARGETS),
                      lambda z: -np.mean((z - np.log(np.exp(z).sum(1, keepdims=True)))[
                          np.arange(3), TARGETS]), [(3, 5)]),
}


@pytest.mark.parametrize("name", list(OPS))
def test_backward_rule_matches_finite_differences(name):
    engine_fn, numpy_fn, shapes = OPS[name]
    rng = np.random.default_rng(abs(hash(name)) % 2**32)
    arrays = [rng.uniform(-2, 2, s) for s in shapes]
    leaves = [Tensor(a.copy(), requires_grad=True) for a in arrays]
    out = engine_fn(*leaves)
    np.testing.assert_allclose(out.data, numpy_fn(*arrays), rtol=1e-12, atol=1e-12)
    G = rng.standard_normal(np.shape(out.data))
    out.backward(G)
    for i, leaf in enumerate(leaves):
        def f(x, i=i):
            args = list(arrays)
            args[i] = x
            return np.sum(G * numpy_fn(*args))
        assert rel_err(leaf.grad, numeric_grad(f, arrays[i])) < 1e-7, (name, i)


def test_gradient_accumulates_over_every_use():
    a = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    ((a * a) + a).sum().backward()  # d/da (a^2 + a) = 2a + 1
    np.testing.assert_allclose(a.grad, [3.0, 5.0])


def test_gradcheck_helper_flags_a_wrong_rule():
    def wrong_square(a):
        return Tensor(a.data ** 2, (a,), lambda g: (g * a.data,), "square")  # should be 2a
    assert L.gradcheck(lambda a: a * a, np.arange(1.0, 4.0)) < 1e-8
    assert L.gradcheck(wrong_square, np.arange(1.0, 4.0)) > 0.1


def test_no_grad_records_nothing_and_float32_stays_float32():
    w = Tensor(np.ones((2, 2), np.float32), requires_grad=True)
    with L.no_grad():
        y = L.sigmoid(w @ w) * 2.0 + 1
    assert y.parents == () and not y.requires_grad
    assert (L.sigmoid(w @ w) * 2.0 + 1).dtype == np.float32


# ---- the models' gradients equal PyTorch's (float64) -----------------------------------------

def torch_reference(params, X, Y, state):
    """nn.Embedding + nn.LSTM + nn.Linear holding our weights; our names for the gradients."""
    D, n = params["W_x"].shape[0], params["W_h"].shape[0]
    emb = torch.nn.Embedding(*params["E"].shape, dtype=torch.float64)
    lstm = torch.nn.LSTM(D, n, batch_first=True, dtype=torch.float64)
    out = torch.nn.Linear(n, params["W_hq"].shape[1], dtype=torch.float64)
    with torch.no_grad():
        emb.weight.copy_(torch.tensor(params["E"]))
        lstm.weight_ih_l0.copy_(torch.tensor(params["W_x"]).T)
        lstm.weight_hh_l0.copy_(torch.tensor(params["W_h"]).T)
        lstm.bias_ih_l0.copy_(torch.tensor(params["b"]))
        lstm.bias_hh_l0.zero_()
        out.weight.copy_(torch.tensor(params["W_hq"]).T)
        out.bias.copy_(torch.tensor(params["b_q"]))
    h0 = tuple(torch.tensor(s)[None] for s in state)
    hidden, _ = lstm(emb(torch.tensor(X)), h0)
    logits = out(hidden)
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                             torch.tensor(Y).reshape(-1))
    loss.backward()
    return loss.item(), {"E": emb.weight.grad, "W_x": lstm.weight_ih_l0.grad.T,
                         "W_h": lstm.weight_hh_l0.grad.T, "b": lstm.bias_ih_l0.grad,
                         "W_hq": out.weight.grad.T, "b_q": out.bias.grad}


@pytest.fixture(scope="module")
def lstm_case():
    rng = np.random.default_rng(7)
    V, D, n, B, T = 11, 5, 6, 3, 9
    model = L.CharLSTM(V, D, n, seed=7, dtype=np.float64)
    for leaf in model.parameters().values():
        leaf.data[...] = rng.uniform(-0.7, 0.7, leaf.data.shape)
    params = {k: leaf.data.copy() for k, leaf in model.parameters().items()}
    X, Y = rng.integers(0, V, (B, T)), rng.integers(0, V, (B, T))
    state = tuple(rng.uniform(-0.8, 0.8, (B, n)) for _ in range(2))
    return model, params, X, Y, state, torch_reference(params, X, Y, state)


def test_engine_lstm_gradients_equal_torch(lstm_case):
    model, params, X, Y, state, (ref_loss, ref_grads) = lstm_case
    for leaf in model.parameters().values():
        leaf.grad = None
    logits, _ = model(X, tuple(Tensor(s) for s in state))
    loss = L.cross_entropy(logits, Y)
    loss.backward()
    assert abs(float(loss.data) - ref_loss) <= TOL * abs(ref_loss)
    for name, leaf in model.parameters().items():
        assert rel_err(leaf.grad, ref_grads[name].numpy()) <= TOL, name


def test_hips_lstm_gradients_equal_torch(lstm_case):
    _, params, X, Y, state, (ref_loss, ref_grads) = lstm_case
    grads, (loss, final_state) = L.loss_grad(L.lstm_cell, params, X, Y, state)
    assert abs(float(loss) - ref_loss) <= TOL * abs(ref_loss)
    assert set(grads) == set(ref_grads)
    for name in ref_grads:
        assert rel_err(grads[name], ref_grads[name].numpy()) <= TOL, name
    assert all(type(s) is np.ndarray for s in final_state)  # carried state is detached


def test_torch_char_lstm_helper_agrees_with_independent_reference(lstm_case):
    _, params, X, Y, state, (ref_loss, ref_grads) = lstm_case
    loss, grads, _ = L.torch_char_lstm(params, X, Y, state)
    assert abs(loss - ref_loss) <= 1e-12
    for name in ref_grads:
        assert rel_err(grads[name], ref_grads[name].numpy()) <= 1e-12, name


@pytest.mark.parametrize("kind", ["rnn", "gru"])
def test_hips_rnn_and_gru_cells_equal_torch(kind):
    rng = np.random.default_rng(8)
    D, n, B, T = 4, 5, 2, 6
    module = {"rnn": torch.nn.RNN, "gru": torch.nn.GRU}[kind](D, n, batch_first=True,
                                                             dtype=torch.float64)
    with torch.no_grad():
        for w in module.parameters():
            w.copy_(torch.tensor(rng.uniform(-0.7, 0.7, tuple(w.shape))))
    p = {"W_x": module.weight_ih_l0.detach().numpy().T.copy(),
         "W_h": module.weight_hh_l0.detach().numpy().T.copy()}
    if kind == "gru":
        p["b_x"], p["b_h"] = module.bias_ih_l0.detach().numpy(), module.bias_hh_l0.detach().numpy()
    else:
        p["b"] = (module.bias_ih_l0 + module.bias_hh_l0).detach().numpy()
    cell = {"rnn": L.rnn_cell, "gru": L.gru_cell}[kind]
    X, H0, G = (rng.standard_normal((B, T, D)), rng.standard_normal((B, n)),
                rng.standard_normal((B, T, n)))

    def unrolled(p):
        state, outs = (H0,), []
        for t in range(T):
            state = cell(p, X[:, t], state)
            outs.append(state[0])
        return anp.sum(G * anp.stack(outs, axis=1))
    hips = grad(unrolled)(p)
    out, _ = module(torch.tensor(X), torch.tensor(H0)[None])
    (out * torch.tensor(G)).sum().backward()
    assert rel_err(unrolled(p), (out * torch.tensor(G)).sum().item()) <= TOL
    assert rel_err(hips["W_x"], module.weight_ih_l0.grad.T.numpy()) <= TOL
    assert rel_err(hips["W_h"], module.weight_hh_l0.grad.T.numpy()) <= TOL


def test_truncated_bptt_graph_stays_bounded():
    model = L.CharLSTM(7, 3, 4, seed=1)
    rng = np.random.default_rng(1)
    state, sizes = model.begin_state(2), []
    for _ in range(3):
        X, Y = rng.integers(0, 7, (2, 5)), rng.integers(0, 7, (2, 5))
        logits, state = model(X, state)
        sizes.append(L.graph_size(L.cross_entropy(logits, Y)))
        state = tuple(s.detach() for s in state)
    assert sizes[0] == sizes[1] == sizes[2]


# ---- bad input ----------------------------------------------------------------------------

def test_mismatched_shapes_name_the_op_and_both_shapes():
    a, b = Tensor(np.ones((2, 3))), Tensor(np.ones((4, 5)))
    with pytest.raises(ValueError, match=r"matmul: shapes \(2, 3\) and \(4, 5\)"):
        a @ b
    with pytest.raises(ValueError, match=r"add: shapes \(2, 3\) and \(4, 5\)"):
        a + b
    with pytest.raises(ValueError, match=r"mul: shapes \(2, 3\) and \(4, 5\)"):
        a * b
    with pytest.raises(ValueError, match=r"cross_entropy: logits of shape \(2, 3\)"):
        L.cross_entropy(a, np.zeros(3, int))


def test_backward_twice_is_a_clear_error():
    w = Tensor(np.ones(3), requires_grad=True)
    loss = (w * w).sum()
    loss.backward()
    with pytest.raises(RuntimeError, match="already used and freed.*forward pass again"):
        loss.backward()


def test_backward_on_non_scalar_needs_a_gradient():
    w = Tensor(np.ones((2, 3)), requires_grad=True)
    with pytest.raises(ValueError, match=r"needs a scalar.*shape \(2, 3\).*grad="):
        (w * w).backward()
    (w * w).backward(np.ones((2, 3)))  # with a gradient it works
    np.testing.assert_allclose(w.grad, 2 * np.ones((2, 3)))


def test_a_backward_rule_must_return_one_gradient_per_input():
    a = Tensor(np.ones(3), requires_grad=True)
    doubled = Tensor(a.data * 2, (a,), lambda g: g * 2, "double")  # forgot the 1-tuple
    with pytest.raises(TypeError, match=r"backward of double must return a tuple .* \(1\)"):
        doubled.sum().backward()


def test_undetached_state_stops_the_next_chunk_with_advice():
    model = L.CharLSTM(7, 3, 4, seed=2)
    X = np.zeros((2, 3), int)
    logits, state = model(X)
    L.cross_entropy(logits, X).backward()
    logits, state = model(X, state)
    with pytest.raises(RuntimeError, match="detach"):
        L.cross_entropy(logits, X).backward()


def test_non_finite_loss_stops_training_with_a_hint():
    model = L.CharLSTM(7, 3, 4, seed=3)
    model.W_hq.data[...] = np.nan
    X = np.zeros((2, 3), int)

    def step(i):
        loss, _ = L.tbptt_step(model, X, X, model.begin_state(2))
        return float(loss.data)
    with pytest.raises(training.NonFiniteLossError, match="at step 0.*learning rate"):
        training.train_loop(step, 3, plot=False)


# ---- the exercise checks --------------------------------------------------------------------

def test_checks_pass_on_the_lesson_answers(capsys):
    check.mul_matmul_backward(L.mul, L.matmul, Tensor)
    check.sigmoid_tanh_backward(L.sigmoid, L.tanh, Tensor)
    check.lstm_cell(L.LSTMCell, Tensor)
    check.tbptt_step(L.tbptt_step, L.CharLSTM)
    check.char_model(L.char_model)
    check.gru_cell(L.gru_cell)
    out = capsys.readouterr().out
    assert all(f"Exercise 3.{i} passed" in out for i in range(1, 7)), out


# plausible wrong answers, one exercise at a time

def make_mul(backward):
    def mul(a, b):
        return Tensor(a.data * b.data, (a, b), lambda g: backward(g, a.data, b.data), "mul")
    return mul


def make_matmul(backward):
    def matmul(a, b):
        return Tensor(a.data @ b.data, (a, b), lambda g: backward(g, a.data, b.data), "matmul")
    return matmul


@pytest.mark.parametrize("mul, matmul, message", [
    (make_mul(lambda g, a, b: (g * a, g * b)), L.matmul, "dL/da of mul"),     # inputs swapped
    (make_mul(lambda g, a, b: (b, a)), L.matmul, "dL/da of mul"),             # forgot g
    (L.mul, make_matmul(lambda g, a, b: (g @ b, a @ g)), "matmul.*raised"),    # no transpose
    (L.mul, make_matmul(lambda g, a, b: (b.T @ g.T, g.T @ a.T)), "matmul"),    # transposed result
], ids=["mul-swapped", "mul-no-g", "matmul-no-transpose", "matmul-transposed"])
def test_check_3_1_rejects_wrong_rules(mul, matmul, message):
    with pytest.raises(checks.ExerciseFailed, match=message):
        check.mul_matmul_backward(mul, matmul, Tensor)


def make_unary(forward, backward, name):
    def op(a):
        out = forward(a.data)
        return Tensor(out, (a,), lambda g: (backward(g, a.data, out),), name)
    return op


SIG = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731


@pytest.mark.parametrize("sigmoid, tanh, message", [
    (make_unary(SIG, lambda g, x, s: g * s, "sigmoid"), L.tanh, "dL/dx of sigmoid"),
    (make_unary(SIG, lambda g, x, s: g * x * (1 - x), "sigmoid"), L.tanh, "dL/dx of sigmoid"),
    (L.sigmoid, make_unary(np.tanh, lambda g, x, t: g * (1 - x * x), "tanh"), "dL/dx of tanh"),
    (L.sigmoid, make_unary(np.tanh, lambda g, x, t: g * (1 - t), "tanh"), "dL/dx of tanh"),
], ids=["sigmoid-s", "sigmoid-from-input", "tanh-from-input", "tanh-not-squared"])
def test_check_3_2_rejects_wrong_rules(sigmoid, tanh, message):
    with pytest.raises(checks.ExerciseFailed, match=message):
        check.sigmoid_tanh_backward(sigmoid, tanh, Tensor)


class SwappedGates(L.LSTMCell):  # reads f from [0:n] and i from [n:2n]
    def __call__(self, X, state):
        H_prev, C_prev = state
        n = self.num_hiddens
        gates = X @ self.W_x + H_prev @ self.W_h + self.b
        F, I = L.sigmoid(gates[:, :n]), L.sigmoid(gates[:, n:2 * n])
        G, O = L.tanh(gates[:, 2 * n:3 * n]), L.sigmoid(gates[:, 3 * n:])
        C = F * C_prev + I * G
        return O * L.tanh(C), C


class NoTanhOnOutput(L.LSTMCell):  # H = O * C
    def __call__(self, X, state):
        H_prev, C_prev = state
        n = self.num_hiddens
        gates = X @ self.W_x + H_prev @ self.W_h + self.b
        I, F = L.sigmoid(gates[:, :n]), L.sigmoid(gates[:, n:2 * n])
        G, O = L.tanh(gates[:, 2 * n:3 * n]), L.sigmoid(gates[:, 3 * n:])
        C = F * C_prev + I * G
        return O * C, C


class CutsTheGraph(L.LSTMCell):  # the recurrent product on .data: no gradient reaches W_h
    def __call__(self, X, state):
        H_prev, C_prev = state
        n = self.num_hiddens
        gates = X @ self.W_x + Tensor(H_prev.data @ self.W_h.data) + self.b
        I, F = L.sigmoid(gates[:, :n]), L.sigmoid(gates[:, n:2 * n])
        G, O = L.tanh(gates[:, 2 * n:3 * n]), L.sigmoid(gates[:, 3 * n:])
        C = F * C_prev + I * G
        return O * L.tanh(C), C


def make_cell(pre=lambda X, H, W_x, W_h, b: X @ W_x + H @ W_h + b, order=(0, 1, 2, 3),
              g=L.tanh, read_out=lambda C, C_prev: L.tanh(C)):
    """An LSTMCell with one piece changed: the pre-activation, the gate blocks, the candidate's
    nonlinearity, or what H is read from."""
    class Cell(L.LSTMCell):
        def __call__(self, X, state):
            H_prev, C_prev = state
            n = self.num_hiddens
            gates = pre(X, H_prev, self.W_x, self.W_h, self.b)
            I, F, G, O = (gates[:, k * n:(k + 1) * n] for k in order)
            C = L.sigmoid(F) * C_prev + L.sigmoid(I) * g(G)
            return L.sigmoid(O) * read_out(C, C_prev), C
    return Cell


@pytest.mark.parametrize("cell, message", [
    (SwappedGates, r"C \(the new memory cell\) differs.*wrong blocks \(i from columns \[n:2n\], "
                   r"f from columns \[0:n\]\).*i \[0:n\], f \[n:2n\]"),
    (make_cell(order=(0, 1, 3, 2)), r"wrong blocks \(g from columns \[3n:4n\], o from columns "
                                    r"\[2n:3n\]\)"),
    (NoTanhOnOutput, r"H \(the new hidden state\) differs.*o \* tanh\(C\)"),
    (make_cell(read_out=lambda C, C_prev: L.tanh(C_prev)), r"H .* differs.*old memory C_prev"),
    (make_cell(pre=lambda X, H, W_x, W_h, b: X @ W_x + H @ W_h),
     r"all four gates differ.*no `b`.*X @ W_x \+ H_prev @ W_h \+ b"),
    (make_cell(pre=lambda X, H, W_x, W_h, b: X @ W_x + b),
     r"all four gates differ.*no `H_prev @ W_h`"),
    (make_cell(pre=lambda X, H, W_x, W_h, b: H @ W_h + b), r"all four gates differ.*no `X @ W_x`"),
    (make_cell(g=L.sigmoid), r"candidate g goes through sigmoid: it takes tanh"),
    (CutsTheGraph, "no gradient reached W_h"),
], ids=["swapped-i-f", "swapped-g-o", "no-tanh", "H-from-old-C", "no-bias", "no-recurrent-term",
        "no-input-term", "sigmoid-candidate", "cuts-graph"])
def test_check_3_3_rejects_wrong_cells(cell, message):
    with pytest.raises(checks.ExerciseFailed, match=message):
        check.lstm_cell(cell, Tensor)


def no_detach(model, X, Y, state):
    logits, state = model(X, state)
    loss = L.cross_entropy(logits, Y)
    loss.backward()
    return loss, state


def no_detach_retain(model, X, Y, state):  # silences the error; the graph grows instead
    logits, state = model(X, state)
    loss = L.cross_entropy(logits, Y)
    loss.backward(retain_graph=True)
    return loss, state


def resets_state(model, X, Y, state):
    logits, _ = model(X, state)
    loss = L.cross_entropy(logits, Y)
    loss.backward()
    return loss, model.begin_state(X.shape[0])


def detach_first(model, X, Y, state):  # correct too: cut the graph before the forward pass
    state = tuple(s.detach() for s in state)
    logits, state = model(X, state)
    loss = L.cross_entropy(logits, Y)
    loss.backward()
    return loss, state


@pytest.mark.parametrize("answer, message", [
    (no_detach, "chunk 2 raised RuntimeError.*detach"),
    (no_detach_retain, "gradient of .* after chunk 2.*detach"),
    (resets_state, "carried H after chunk 1.*fresh zero state"),
], ids=["no-detach", "no-detach-retain-graph", "resets-state"])
def test_check_3_4_rejects_wrong_steps(answer, message):
    with pytest.raises(checks.ExerciseFailed, match=message):
        check.tbptt_step(answer, L.CharLSTM)


def test_check_3_4_accepts_detaching_before_the_forward_pass(capsys):
    check.tbptt_step(detach_first, L.CharLSTM)
    assert "Exercise 3.4 passed" in capsys.readouterr().out


def gru_parts(p, X, H):
    r_x, z_x, n_x = anp.split(X @ p["W_x"] + p["b_x"], 3, axis=1)
    r_h, z_h, n_h = anp.split(H @ p["W_h"] + p["b_h"], 3, axis=1)
    return L.anp_sigmoid(r_x + r_h), L.anp_sigmoid(z_x + z_h), n_x, n_h


def gru_update_swapped(p, X, state):
    (H,) = state
    R, Z, n_x, n_h = gru_parts(p, X, H)
    N = anp.tanh(n_x + R * n_h)
    return (Z * N + (1 - Z) * H,)


def gru_reset_before_product(p, X, state):  # Cho et al.'s variant, not torch's
    (H,) = state
    R, Z, n_x, _ = gru_parts(p, X, H)
    n = H.shape[1]
    N = anp.tanh(n_x + (R * H) @ p["W_h"][:, 2 * n:] + p["b_h"][2 * n:])
    return ((1 - Z) * N + Z * H,)


def gru_assigns_into_an_array(p, X, state):  # the traced value is lost: HIPS cannot follow
    (H,) = state
    R, Z, n_x, n_h = gru_parts(p, X, H)
    N = np.zeros(H.shape)
    N[:] = anp.tanh(n_x + R * n_h)
    return ((1 - Z) * N + Z * H,)


# 3.5, the debugging clinic: the buggy function is the one the lesson gives the student


def clinic_function():
    """hips_style_char_model, executed from the lesson's own cell."""
    import jupytext

    from conftest import ROOT
    notebook = jupytext.read(ROOT / "book" / "03_autograd_lstm.md", fmt="md:myst")
    source = next(c.source for c in notebook.cells
                  if c.cell_type == "code" and "def hips_style_char_model(" in c.source)
    namespace = {"anp": anp, "np": np}
    exec(source, namespace)
    return namespace["hips_style_char_model"]


def char_model_with(loop):
    """A character model whose loop body is `loop(cell, q, x_t, state0, state) -> (state,
    hidden state to read out)`; the rest as in the lesson."""
    def model(cell, p, X, state):
        q, outputs, state0 = {name: p[name] for name in p}, [], state
        for t in range(X.shape[1]):
            state, H = loop(cell, q, q["E"][X[:, t]], state0, state)
            outputs.append(H)
        return anp.stack(outputs, axis=1) @ q["W_hq"] + q["b_q"], state
    return model


def np_stack_model(cell, p, X, state):  # np.stack cannot hold HIPS autograd's boxes
    outputs = []
    for t in range(X.shape[1]):
        state = cell(p, p["E"][X[:, t]], state)
        outputs.append(state[0])
    return np.stack(outputs, axis=1) @ p["W_hq"] + p["b_q"], state


def returns_first_state(cell, p, X, state):
    logits, _ = L.char_model(cell, p, X, state)
    return logits, state


def test_check_3_5_rejects_the_clinic_bug_and_accepts_the_fix(capsys):
    with pytest.raises(checks.ExerciseFailed,
                       match=r"Exercise 3\.5 .*logits .* differs.*read-out of H_\(t-1\).*before"
                             r".*never sees the character.*call the cell, then keep"):
        check.char_model(clinic_function())
    check.char_model(L.char_model)
    assert "Exercise 3.5 passed" in capsys.readouterr().out


@pytest.mark.parametrize("answer, message", [
    (char_model_with(lambda cell, q, x, s0, s: (s, cell(q, x, s)[0])),  # never carries the state
     r"only step 1 is right.*Pass the state each step returns on"),
    (char_model_with(lambda cell, q, x, s0, s: (cell(q, x, s0), cell(q, x, s0)[0])),
     r"only step 1 is right"),
    (returns_first_state, r"the final state H differs.*after the last step"),
    (np_stack_model, r"HIPS autograd's gradient .* raised .*anp\.stack, not np\.stack"),
], ids=["state-not-carried", "always-from-start", "returns-first-state", "np-stack"])
def test_check_3_5_rejects_other_slips(answer, message):
    with pytest.raises(checks.ExerciseFailed, match=message):
        check.char_model(answer)


@pytest.mark.parametrize("answer, message", [
    (gru_update_swapped, "update gate is applied the wrong way round"),
    (gru_reset_before_product, "reset gate multiplies the hidden part after the product"),
    (gru_assigns_into_an_array, "HIPS autograd's gradient .* raised .*no assignment"),
], ids=["update-swapped", "reset-before-product", "assigns-into-array"])
def test_check_3_6_rejects_wrong_cells(answer, message):
    with pytest.raises(checks.ExerciseFailed, match=message):
        check.gru_cell(answer)


# ---- the placeholders of the practice notebook --------------------------------------------

def placeholder(number):
    def answer(*args, **kwargs):
        raise NotImplementedError(f"Exercise {number}: ...")
    return answer


class PlaceholderCell(L.LSTMCell):
    def __call__(self, X, state):
        raise NotImplementedError("Exercise 3.3: ...")


@pytest.mark.parametrize("run", [
    # 3.1 and 3.2: the forward passes are given; only the backward rules are placeholders
    lambda: check.mul_matmul_backward(make_mul(placeholder("3.1")),
                                      make_matmul(placeholder("3.1")), Tensor),
    lambda: check.sigmoid_tanh_backward(make_unary(SIG, placeholder("3.2"), "sigmoid"),
                                        make_unary(np.tanh, placeholder("3.2"), "tanh"), Tensor),
    lambda: check.lstm_cell(PlaceholderCell, Tensor),
    lambda: check.tbptt_step(placeholder("3.4"), L.CharLSTM),
    lambda: check.char_model(char_model_with(placeholder("3.5"))),
    lambda: check.gru_cell(placeholder("3.6")),
], ids=["3.1", "3.2", "3.3", "3.4", "3.5", "3.6"])
def test_checks_reject_the_placeholder(run):
    with pytest.raises(checks.ExerciseNotDone, match=r"Exercise 3\.\d .* not implemented yet"):
        run()
