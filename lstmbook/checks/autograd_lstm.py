"""Checks for lesson 3 (book/03_autograd_lstm.md): the engine's backward rules, the LSTM cell,
truncated BPTT, the character model's read-out (the debugging clinic) and the GRU cell.

The oracles are independent of the lesson's code: central differences in float64 for the
backward rules, and PyTorch (``nn.LSTMCell``, ``nn.LSTM``, ``nn.GRUCell``) in float64 with the
same weights for the cells and truncated BPTT. A check receives what it tests as arguments (the
student's functions, and the ``Tensor`` class to build inputs from); it never imports the lesson.
"""
import itertools

import numpy as np

from . import ExerciseFailed, exercise, expect_close, numeric_grad, student_error


def _run(what, action, hint):
    """Run the student's code; turn anything but NotImplementedError into ExerciseFailed."""
    try:
        return action()
    except NotImplementedError:
        raise
    except ExerciseFailed:
        raise
    except Exception as err:  # noqa: BLE001 - any failure of the answer is reported, with a hint
        raise student_error(err, what, hint) from err  # keeps the student's file and line


def _leaf_grad(leaf, name, hint):
    if leaf.grad is None:
        raise ExerciseFailed(f"no gradient reached {name} (its .grad is None). Hint: {hint}")
    return leaf.grad


def _check_binary(op_name, op, Tensor, a, b, hint, rng):
    """Compare op's gradients for a and b with central differences of sum(G * forward)."""
    forward = {"mul": lambda x, y: x * y, "matmul": lambda x, y: x @ y}[op_name]
    ta, tb = Tensor(a.copy(), requires_grad=True), Tensor(b.copy(), requires_grad=True)
    what = f"{op_name} with shapes {a.shape} and {b.shape}"
    out = _run(what, lambda: op(ta, tb), hint)
    expected_out = forward(a, b)
    expect_close(f"the output of {what}", out.data, expected_out)
    G = rng.standard_normal(expected_out.shape)
    _run(f"the backward of {what}", lambda: out.backward(G), hint)
    grad_a = numeric_grad(lambda x: np.sum(G * forward(x, b)), a)
    grad_b = numeric_grad(lambda y: np.sum(G * forward(a, y)), b)
    expect_close(f"dL/da of {what}", _leaf_grad(ta, f"a of {what}", hint), grad_a,
                 atol=1e-7, rtol=1e-6, hint=hint)
    expect_close(f"dL/db of {what}", _leaf_grad(tb, f"b of {what}", hint), grad_b,
                 atol=1e-7, rtol=1e-6, hint=hint)


@exercise("3.1", "backward of mul and matmul")
def mul_matmul_backward(mul, matmul, Tensor):
    rng = np.random.default_rng(31)
    mul_hint = ("for Y = A * B the rule is dL/dA = g * B and dL/dB = g * A (elementwise, each "
                "times the *other* input); the engine sums over broadcast axes for you")
    matmul_hint = ("for Y = A @ B the rule is dL/dA = g @ B.T, of A's shape, and dL/dB = A.T @ g, "
                   "of B's shape: check the shapes, (n, m) @ (m, k) -> (n, k)")
    _check_binary("mul", mul, Tensor, rng.standard_normal((3, 4)), rng.standard_normal((3, 4)),
                  mul_hint, rng)
    _check_binary("mul", mul, Tensor, rng.standard_normal((3, 4)), rng.standard_normal(4),
                  mul_hint, rng)
    _check_binary("matmul", matmul, Tensor, rng.standard_normal((3, 4)),
                  rng.standard_normal((4, 5)), matmul_hint, rng)


def _check_unary(name, op, forward, Tensor, hint, rng):
    x = rng.uniform(-3, 3, (4, 5))
    tx = Tensor(x.copy(), requires_grad=True)
    out = _run(name, lambda: op(tx), hint)
    expect_close(f"the output of {name}", out.data, forward(x))
    G = rng.standard_normal(x.shape)
    _run(f"the backward of {name}", lambda: out.backward(G), hint)
    expected = numeric_grad(lambda z: np.sum(G * forward(z)), x)
    expect_close(f"dL/dx of {name}", _leaf_grad(tx, f"the input of {name}", hint), expected,
                 atol=1e-7, rtol=1e-6, hint=hint)


@exercise("3.2", "backward of sigmoid and tanh")
def sigmoid_tanh_backward(sigmoid, tanh, Tensor):
    rng = np.random.default_rng(32)
    _check_unary("sigmoid", sigmoid, lambda z: 1 / (1 + np.exp(-z)), Tensor,
                 "sigma'(x) = s * (1 - s) with s = sigma(x), the saved output, so return "
                 "(g * s * (1 - s),)", rng)
    _check_unary("tanh", tanh, np.tanh, Tensor,
                 "tanh'(x) = 1 - t**2 with t = tanh(x), the saved output (not the input), so "
                 "return (g * (1 - t * t),)", rng)


def _torch():
    import torch
    return torch


@exercise("3.3", "the LSTM cell forward")
def lstm_cell(LSTMCell, Tensor):
    torch = _torch()
    D, n, B = 3, 4, 2
    rng = np.random.default_rng(33)
    cell = _run("LSTMCell(3, 4, dtype=np.float64)",
                lambda: LSTMCell(D, n, dtype=np.float64), "keep the constructor as given")
    W_x, W_h, b = (rng.uniform(-0.8, 0.8, shape) for shape in ((D, 4 * n), (n, 4 * n), (4 * n,)))
    cell.W_x.data, cell.W_h.data, cell.b.data = W_x.copy(), W_h.copy(), b.copy()
    X, H0, C0 = (rng.standard_normal((B, D)), rng.standard_normal((B, n)),
                 rng.standard_normal((B, n)))
    tX, tH0, tC0 = (Tensor(a.copy(), requires_grad=True) for a in (X, H0, C0))
    hint = ("gates = X @ W_x + H_prev @ W_h + b has 4n columns: [0:n] input gate i (sigmoid), "
            "[n:2n] forget gate f (sigmoid), [2n:3n] candidate g (tanh), [3n:4n] output gate o "
            "(sigmoid); C = f * C_prev + i * g; H = o * tanh(C)")
    result = _run("LSTMCell.__call__", lambda: cell(tX, (tH0, tC0)), hint)
    if not (isinstance(result, tuple) and len(result) == 2):
        raise ExerciseFailed(f"the cell should return a tuple (H, C), got {type(result).__name__}")
    H, C = result
    for name, t in (("H", H), ("C", C)):
        if not isinstance(t, Tensor):
            raise ExerciseFailed(f"{name} should be a Tensor built from engine operations, got "
                                 f"{type(t).__name__}. Hint: do not take .data of a result")

    # The oracle: torch.nn.LSTMCell in float64 with the same weights (gate order i, f, g, o).
    ref = torch.nn.LSTMCell(D, n, dtype=torch.float64)
    with torch.no_grad():
        ref.weight_ih.copy_(torch.tensor(W_x.T)), ref.weight_hh.copy_(torch.tensor(W_h.T))
        ref.bias_ih.copy_(torch.tensor(b)), ref.bias_hh.zero_()
    x, h0, c0 = (torch.tensor(a, requires_grad=True) for a in (X, H0, C0))
    h, c = ref(x, (h0, c0))
    c_ok = C.shape == tuple(c.shape) and np.allclose(C.data, c.detach().numpy(), atol=1e-10)
    h_ok = H.shape == tuple(h.shape) and np.allclose(H.data, h.detach().numpy(), atol=1e-10)
    diagnosis = None if c_ok and h_ok else _diagnose_lstm(H.data, C.data, X, H0, C0, W_x, W_h, b)
    expect_close("C (the new memory cell)", C.data, c.detach().numpy(), atol=1e-10,
                 hint=diagnosis or hint)
    expect_close("H (the new hidden state)", H.data, h.detach().numpy(), atol=1e-10,
                 hint=diagnosis or ("C is right, so look at H = o * tanh(C), with o from "
                                    "columns [3n:4n]" if c_ok else hint))

    GH, GC = rng.standard_normal((B, n)), rng.standard_normal((B, n))
    loss = _run("the backward through your cell",
                lambda: (H * Tensor(GH)).sum() + (C * Tensor(GC)).sum(), hint)
    _run("the backward through your cell", loss.backward, hint)
    (h * torch.tensor(GH)).sum().add((c * torch.tensor(GC)).sum()).backward()
    no_graph = ("build the cell only from Tensor operations (@, +, *, slicing, sigmoid, tanh); "
                "anything computed from .data or with np.* on tensors cuts the graph")
    pairs = {"W_x": (cell.W_x, ref.weight_ih.grad.T), "W_h": (cell.W_h, ref.weight_hh.grad.T),
             "b": (cell.b, ref.bias_ih.grad), "X": (tX, x.grad), "H_prev": (tH0, h0.grad),
             "C_prev": (tC0, c0.grad)}
    for name, (leaf, expected) in pairs.items():
        expect_close(f"the gradient of {name}", _leaf_grad(leaf, name, no_graph),
                     expected.numpy(), atol=1e-10, rtol=1e-7, hint=no_graph)


def _sigmoid(z):
    return 1 / (1 + np.exp(-z))


def _lstm_variants(X, H0, C0, W_x, W_h, b):
    """Yield (what is wrong and how to fix it, (H, C)) for plausible wrong LSTM cells (NumPy)."""
    n = W_h.shape[0]
    terms = {"X @ W_x": X @ W_x, "H_prev @ W_h": H0 @ W_h, "b": b}
    full = terms["X @ W_x"] + terms["H_prev @ W_h"] + b

    def cell(pre, order=(0, 1, 2, 3), g_act=np.tanh, read_out=lambda C: np.tanh(C)):
        I, F, G, O = (pre[:, k * n:(k + 1) * n] for k in order)
        C = _sigmoid(F) * C0 + _sigmoid(I) * g_act(G)
        return _sigmoid(O) * read_out(C), C

    for name, term in terms.items():
        yield (f"all four gates differ, and your H and C are those of a cell whose "
               f"pre-activation has no `{name}`: gates = X @ W_x + H_prev @ W_h + b needs all "
               "three terms, summed into one (B, 4n) array before the four blocks are sliced "
               "from it"), cell(full - term)
    columns = ["[0:n]", "[n:2n]", "[2n:3n]", "[3n:4n]"]
    for order in itertools.permutations(range(4)):
        if order != (0, 1, 2, 3):
            wrong = ", ".join(f"{gate} from columns {columns[k]}" for gate, k in zip("ifgo", order)
                              if "ifgo".index(gate) != k)
            yield (f"your cell reads its gates from the wrong blocks ({wrong}). In the fused "
                   "layout, as in PyTorch, the blocks are i [0:n], f [n:2n], g [2n:3n], "
                   "o [3n:4n]"), cell(full, order)
    yield ("the candidate g goes through sigmoid: it takes tanh, so that the cell can write "
           "negative values as well as positive ones"), cell(full, g_act=_sigmoid)
    yield ("C is right, but H is computed from the old memory C_prev: H = o * tanh(C) reads the "
           "new C"), cell(full, read_out=lambda C: np.tanh(C0))
    yield ("C is right, so look at H = o * tanh(C), with o from columns [3n:4n]: the tanh of "
           "the new memory is missing"), cell(full, read_out=lambda C: C)


def _diagnose_lstm(H, C, X, H0, C0, W_x, W_h, b):
    """The message of the first wrong cell that computes the student's (H, C), else None."""
    for message, (H_wrong, C_wrong) in _lstm_variants(X, H0, C0, W_x, W_h, b):
        if (np.shape(H) == H_wrong.shape and np.shape(C) == C_wrong.shape
                and np.allclose(H, H_wrong, atol=1e-10) and np.allclose(C, C_wrong, atol=1e-10)):
            return message
    return None


def _torch_char_lstm(torch, params, D, n):
    """nn.Embedding + nn.LSTM + nn.Linear in float64 holding the given weights."""
    emb = torch.nn.Embedding(*params["E"].shape, dtype=torch.float64)
    lstm = torch.nn.LSTM(D, n, batch_first=True, dtype=torch.float64)
    out = torch.nn.Linear(n, params["W_hq"].shape[1], dtype=torch.float64)
    with torch.no_grad():
        emb.weight.copy_(torch.tensor(params["E"]))
        lstm.weight_ih_l0.copy_(torch.tensor(params["W_x"].T))
        lstm.weight_hh_l0.copy_(torch.tensor(params["W_h"].T))
        lstm.bias_ih_l0.copy_(torch.tensor(params["b"])), lstm.bias_hh_l0.zero_()
        out.weight.copy_(torch.tensor(params["W_hq"].T))
        out.bias.copy_(torch.tensor(params["b_q"]))
    return emb, lstm, out


@exercise("3.4", "one step of truncated BPTT")
def tbptt_step(tbptt_step, CharLSTM):
    torch = _torch()
    V, D, n, B, T, chunks = 7, 3, 5, 2, 4, 3
    rng = np.random.default_rng(34)
    model = CharLSTM(V, D, n, seed=34, dtype=np.float64)
    leaves = model.parameters()
    for leaf in leaves.values():  # weights large enough that the carried state matters
        leaf.data[...] = rng.uniform(-0.9, 0.9, leaf.data.shape)
    emb, lstm, out = _torch_char_lstm(torch, {k: v.data for k, v in leaves.items()}, D, n)
    ids = rng.integers(0, V, (B, chunks * T + 1))
    state, ref_state = model.begin_state(B), None
    hint = ("forward from the state you are given, loss = cross_entropy(logits, Y), "
            "loss.backward(), then return (loss, (H.detach(), C.detach())) with the chunk's "
            "final H and C")
    for k in range(chunks):
        X, Y = ids[:, k * T:(k + 1) * T], ids[:, k * T + 1:(k + 1) * T + 1]
        for leaf in leaves.values():
            leaf.grad = None
        result = _run(f"tbptt_step on chunk {k + 1}",
                      lambda X=X, Y=Y, state=state: tbptt_step(model, X, Y, state), hint)
        if not (isinstance(result, tuple) and len(result) == 2):
            raise ExerciseFailed("tbptt_step should return (loss, state)")
        loss, state = result
        # The oracle: PyTorch's truncated BPTT, the carried state detached between chunks.
        for module in (emb, lstm, out):
            module.zero_grad()
        hidden, ref_state = lstm(emb(torch.tensor(X)), ref_state)
        ref_loss = torch.nn.functional.cross_entropy(out(hidden).reshape(-1, V),
                                                     torch.tensor(Y).reshape(-1))
        ref_loss.backward()
        ref_state = tuple(s.detach() for s in ref_state)
        carried = " (chunk 1 was right, so the state did not carry over)" if k else ""
        expect_close(f"the loss of chunk {k + 1}", float(np.asarray(getattr(loss, "data", loss))),
                     ref_loss.item(), atol=1e-10,
                     hint="pass `state` to the model and return this chunk's final (H, C)"
                     + carried)
        if not (isinstance(state, tuple) and len(state) == 2):
            raise ExerciseFailed("the state to carry should be a tuple (H, C)")
        for name, s, ref in zip("HC", state, ref_state):
            expect_close(f"the carried {name} after chunk {k + 1}", getattr(s, "data", s),
                         ref[0].numpy(), atol=1e-10,
                         hint="carry the final state of the chunk, not a fresh zero state")
        ref_grads = {"E": emb.weight.grad, "W_x": lstm.weight_ih_l0.grad.T,
                     "W_h": lstm.weight_hh_l0.grad.T, "b": lstm.bias_ih_l0.grad,
                     "W_hq": out.weight.grad.T, "b_q": out.bias.grad}
        for name, expected in ref_grads.items():
            expect_close(f"the gradient of {name} after chunk {k + 1}",
                         _leaf_grad(leaves[name], name, "call loss.backward()"), expected.numpy(),
                         atol=1e-10, rtol=1e-7,
                         hint="the gradient of a chunk must stop at the chunk's start: detach the "
                         "state, and do not use retain_graph=True")


def _rnn_cell(p, X, state):
    """The check's own vanilla RNN step, to drive the student's character model (the oracle is
    torch.nn.RNN)."""
    import autograd.numpy as anp
    (H,) = state
    return (anp.tanh(X @ p["W_x"] + H @ p["W_h"] + p["b"]),)


def _torch_char_rnn(torch, rng, V, D, n):
    """nn.Embedding + nn.RNN + nn.Linear in float64 with random weights, and the same weights in
    the lesson's naming (one bias b for the RNN's two)."""
    emb = torch.nn.Embedding(V, D, dtype=torch.float64)
    rnn = torch.nn.RNN(D, n, batch_first=True, dtype=torch.float64)
    out = torch.nn.Linear(n, V, dtype=torch.float64)
    with torch.no_grad():
        for module in (emb, rnn, out):
            for w in module.parameters():
                w.copy_(torch.tensor(rng.uniform(-0.9, 0.9, tuple(w.shape))))
    p = {"E": emb.weight, "W_x": rnn.weight_ih_l0.T, "W_h": rnn.weight_hh_l0.T,
         "b": rnn.bias_ih_l0 + rnn.bias_hh_l0, "W_hq": out.weight.T, "b_q": out.bias}
    return (emb, rnn, out), {k: v.detach().numpy().copy() for k, v in p.items()}


def _diagnose_read_out(got, X, H0, p, hidden, read_out):
    """Why the logits differ, for the usual slips of a character model's loop."""
    late = read_out(np.concatenate([H0[:, None], hidden[:, :-1]], axis=1))
    if np.allclose(got, late, atol=1e-10):
        return ("the logits at step t are the read-out of H_(t-1), the state from *before* the "
                "cell read character t (step 1's come from the starting state alone): each "
                "prediction is one step late and never sees the character it is meant to "
                "continue. Read each step's logits out of the state the cell returns after "
                "reading character t: call the cell, then keep the new state it returned")
    first = np.tanh(p["E"][X] @ p["W_x"] + (H0 @ p["W_h"])[:, None] + p["b"])  # (B, T, n)
    if np.allclose(got, read_out(first), atol=1e-10):
        return ("only step 1 is right: every step starts again from the state you were given, "
                "so the model remembers one character at most. Pass the state each step "
                "returns on to the next step")
    return ("the logits at step t are the read-out H_t @ W_hq + b_q of the state H_t that the "
            "cell returns after reading character t, carried from step to step")


@exercise("3.5", "debugging clinic: what the prediction reads")
def char_model(char_model):
    torch = _torch()
    import autograd.numpy as anp
    from autograd import grad

    V, D, n, B, T = 7, 3, 5, 2, 6
    rng = np.random.default_rng(36)
    (emb, rnn, out), p = _torch_char_rnn(torch, rng, V, D, n)
    X, H0, G = (rng.integers(0, V, (B, T)), rng.uniform(-0.9, 0.9, (B, n)),
                rng.standard_normal((B, T, V)))
    hidden, h_n = rnn(emb(torch.tensor(X)), torch.tensor(H0)[None])
    logits = out(hidden)
    hint = ("the logits at step t are the read-out of the state after the cell has read "
            "character t")
    result = _run("char_model(cell, p, X, (H0,))",
                  lambda: char_model(_rnn_cell, p, X, (H0,)), hint)
    if not (isinstance(result, tuple) and len(result) == 2):
        raise ExerciseFailed("char_model should return (logits, state), got "
                             f"{type(result).__name__}")
    got, state = result
    expected = logits.detach().numpy()
    if np.shape(got) == expected.shape and not np.allclose(got, expected, atol=1e-10):
        hint = _diagnose_read_out(np.asarray(got), X, H0, p, hidden.detach().numpy(),
                                  lambda H: H @ p["W_hq"] + p["b_q"])
    expect_close("the array of logits (B, T, V)", got, expected, atol=1e-10, hint=hint)
    if not (isinstance(state, tuple) and len(state) == 1):
        raise ExerciseFailed("the state char_model returns should be a tuple like the one it "
                             "was given, here (H,)")
    expect_close("the final state H", state[0], h_n[0].detach().numpy(), atol=1e-10,
                 hint="return the state after the last step: truncated BPTT carries it into "
                      "the next chunk")

    def objective(p):
        return anp.sum(G * char_model(_rnn_cell, p, X, (H0,))[0])
    grads = _run("HIPS autograd's gradient of your char_model", lambda: grad(objective)(p),
                 "write the model with anp functions (anp.stack, not np.stack) and no "
                 "assignment into arrays, so that HIPS autograd can trace it")
    (logits * torch.tensor(G)).sum().backward()
    reference = {"E": emb.weight.grad, "W_x": rnn.weight_ih_l0.grad.T,
                 "W_h": rnn.weight_hh_l0.grad.T, "b": rnn.bias_ih_l0.grad,
                 "W_hq": out.weight.grad.T, "b_q": out.bias.grad}
    for name, expected in reference.items():
        expect_close(f"the gradient of {name}", grads[name], expected.numpy(), atol=1e-10,
                     rtol=1e-7, hint="write the model with anp functions and no assignment "
                     "into arrays, so that HIPS autograd can trace it")


@exercise("3.6", "a GRU cell for HIPS autograd")
def gru_cell(gru_cell):
    torch = _torch()
    import autograd.numpy as anp
    from autograd import grad

    D, n, B = 3, 4, 2
    rng = np.random.default_rng(35)
    ref = torch.nn.GRUCell(D, n, dtype=torch.float64)
    with torch.no_grad():
        for w in ref.parameters():
            w.copy_(torch.tensor(rng.uniform(-0.8, 0.8, tuple(w.shape))))
    p = {"W_x": ref.weight_ih.detach().numpy().T.copy(),
         "W_h": ref.weight_hh.detach().numpy().T.copy(),
         "b_x": ref.bias_ih.detach().numpy().copy(), "b_h": ref.bias_hh.detach().numpy().copy()}
    X, H0 = rng.standard_normal((B, D)), rng.standard_normal((B, n))
    G = rng.standard_normal((B, n))
    x, h0 = torch.tensor(X, requires_grad=True), torch.tensor(H0, requires_grad=True)
    h = ref(x, h0)
    hint = ("r_x, z_x, n_x = anp.split(X @ W_x + b_x, 3, axis=1) and the same for H @ W_h + b_h; "
            "R = sigmoid(r_x + r_h), Z = sigmoid(z_x + z_h), N = tanh(n_x + R * n_h), "
            "H = (1 - Z) * N + Z * H_prev")

    def first(result):
        return result[0] if isinstance(result, (tuple, list)) else result

    got = _run("gru_cell", lambda: first(gru_cell(p, X, (H0,))), hint)
    expected = h.detach().numpy()
    if np.shape(got) == expected.shape and not np.allclose(got, expected, atol=1e-10):
        # Diagnose the two usual slips with PyTorch's own gates.
        with torch.no_grad():
            gx, gh = x @ ref.weight_ih.T + ref.bias_ih, h0 @ ref.weight_hh.T + ref.bias_hh
            r = torch.sigmoid(gx[:, :n] + gh[:, :n])
            z = torch.sigmoid(gx[:, n:2 * n] + gh[:, n:2 * n])
            cand = torch.tanh(gx[:, 2 * n:] + r * gh[:, 2 * n:])
            swapped = (z * cand + (1 - z) * h0).numpy()
        if np.allclose(got, swapped, atol=1e-10):
            hint = ("the update gate is applied the wrong way round: "
                    "H = (1 - Z) * N + Z * H_prev, so that Z = 1 keeps the old state")
        else:
            hint = ("in PyTorch's form the reset gate multiplies the hidden part after the "
                    "product, N = tanh(n_x + R * (H_prev @ W_hn + b_hn)); " + hint)
    expect_close("H from gru_cell", got, expected, atol=1e-10, hint=hint)

    def objective(p, H0):
        return anp.sum(G * first(gru_cell(p, X, (H0,))))
    grads = _run("HIPS autograd's gradient of your gru_cell",
                 lambda: grad(objective, argnum=(0, 1))(p, H0),
                 "write the cell with anp functions (not np.*) and no assignment into arrays")
    (h * torch.tensor(G)).sum().backward()
    ref_grads = {"W_x": ref.weight_ih.grad.T, "W_h": ref.weight_hh.grad.T,
                 "b_x": ref.bias_ih.grad, "b_h": ref.bias_hh.grad}
    for name, expected in ref_grads.items():
        expect_close(f"the gradient of {name}", grads[0][name], expected.numpy(), atol=1e-10,
                     rtol=1e-7, hint=hint)
    expect_close("the gradient of H_prev", grads[1], h0.grad.numpy(), atol=1e-10, rtol=1e-7,
                 hint=hint)
