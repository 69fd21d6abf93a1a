"""Lesson 2, the NumPy LSTM: implementations against oracles, the checks, bad input.

Oracles: torch.nn.LSTMCell / nn.LSTM / nn.Linear in float64 with copied weights, autograd,
torch.optim, torch.nn.utils.clip_grad_norm_, and central differences in float64.
"""
import subprocess
import sys

import jupytext
import numpy as np
import pytest
import torch

from conftest import ROOT
from lstmbook import bench, checks, data, lm, training
from lstmbook.checks import numpy_lstm as check
from lstmbook.lessons import numpy_lstm as nl


def copy_layer(module, W, b, num_inputs, suffix=""):
    with torch.no_grad():
        getattr(module, "weight_ih" + suffix).copy_(torch.from_numpy(W[:num_inputs].T.copy()))
        getattr(module, "weight_hh" + suffix).copy_(torch.from_numpy(W[num_inputs:].T.copy()))
        getattr(module, "bias_ih" + suffix).copy_(torch.from_numpy(b.copy()))
        getattr(module, "bias_hh" + suffix).zero_()


def random_stack(rng, num_inputs, h, num_layers):
    return [(rng.standard_normal(((num_inputs if l == 0 else h) + h, 4 * h)) * 0.5,
             rng.standard_normal(4 * h) * 0.5) for l in range(num_layers)]


def torch_stack(params, num_inputs, h):
    lstm = torch.nn.LSTM(num_inputs, h, len(params), batch_first=True, dtype=torch.float64)
    for l, (W, b) in enumerate(params):
        copy_layer(lstm, W, b, W.shape[0] - h, suffix=f"_l{l}")
    return lstm


# ------------------------------------------------------------------ forward vs torch
def test_step_forward_equals_lstm_cell():
    rng = np.random.default_rng(0)
    X, H, C = rng.standard_normal((6, 4)), rng.standard_normal((6, 3)), rng.standard_normal((6, 3))
    W, b = rng.standard_normal((7, 12)), rng.standard_normal(12)
    H1, C1, _ = nl.lstm_step_forward(X, H, C, W, b)
    cell = torch.nn.LSTMCell(4, 3, dtype=torch.float64)
    copy_layer(cell, W, b, 4)
    with torch.no_grad():
        H_ref, C_ref = cell(torch.from_numpy(X), (torch.from_numpy(H), torch.from_numpy(C)))
    assert np.abs(H1 - H_ref.numpy()).max() <= 1e-10
    assert np.abs(C1 - C_ref.numpy()).max() <= 1e-10


@pytest.mark.parametrize("layer_forward", [nl.lstm_layer_forward, nl.lstm_layer_forward_fast])
@pytest.mark.parametrize("num_layers", [1, 3])
def test_stacked_layers_equal_nn_lstm(layer_forward, num_layers):
    rng = np.random.default_rng(num_layers)
    batch, num_steps, num_inputs, h = 3, 11, 4, 6
    params = random_stack(rng, num_inputs, h, num_layers)
    X = rng.standard_normal((batch, num_steps, num_inputs))
    H0, C0 = rng.standard_normal((2, num_layers, batch, h))
    Hs, finals = X, []
    for l, (W, b) in enumerate(params):
        Hs, state, _ = layer_forward(Hs, (H0[l], C0[l]), W, b)
        finals.append(state)
    with torch.no_grad():
        out, (Hn, Cn) = torch_stack(params, num_inputs, h)(
            torch.from_numpy(X), (torch.from_numpy(H0), torch.from_numpy(C0)))
    assert np.abs(Hs - out.numpy()).max() <= 1e-10
    for l, (H, C) in enumerate(finals):
        assert np.abs(H - Hn[l].numpy()).max() <= 1e-10
        assert np.abs(C - Cn[l].numpy()).max() <= 1e-10


@pytest.mark.parametrize("fast", [True, False])
def test_char_model_equals_nn_lstm_and_linear(fast):
    model = nl.CharLSTM(11, 8, 2, seed=3, dtype=np.float64, fast=fast)
    ids = np.random.default_rng(0).integers(0, 11, size=(4, 13))
    lstm = torch_stack(model.layers, 11, 8)
    head = torch.nn.Linear(8, 11, dtype=torch.float64)
    with torch.no_grad():
        head.weight.copy_(torch.from_numpy(model.W_hq.T.copy()))
        head.bias.copy_(torch.from_numpy(model.b_q))
        one_hot = torch.nn.functional.one_hot(torch.from_numpy(ids), 11).double()
        expected = head(lstm(one_hot)[0]).numpy()
    assert np.abs(model.logits_fn(ids) - expected).max() <= 1e-10


def test_step_fn_continues_the_sequence():
    model = nl.CharLSTM(9, 7, 2, seed=4, dtype=np.float64)
    ids = np.array([[1, 5, 2, 8, 0]])
    state, per_step = None, []
    for token in ids[0]:
        logits, state = model.step_fn(int(token), state)
        per_step.append(logits)
    np.testing.assert_allclose(np.array(per_step), model.logits_fn(ids)[0], atol=1e-12)


# ------------------------------------------------------------------ gradients
def test_fast_layer_gradients_equal_autograd():
    rng = np.random.default_rng(5)
    batch, num_steps, num_inputs, h = 3, 9, 4, 5
    (W, b), = random_stack(rng, num_inputs, h, 1)
    X = rng.standard_normal((batch, num_steps, num_inputs))
    H0, C0 = rng.standard_normal((2, batch, h))
    dHs = rng.standard_normal((batch, num_steps, h))
    lstm = torch_stack([(W, b)], num_inputs, h)
    Xt = torch.from_numpy(X).requires_grad_()
    H0t, C0t = (torch.from_numpy(a[None].copy()).requires_grad_() for a in (H0, C0))
    out, _ = lstm(Xt, (H0t, C0t))
    (out * torch.from_numpy(dHs)).sum().backward()
    dW_ref = np.concatenate([lstm.weight_ih_l0.grad.numpy().T, lstm.weight_hh_l0.grad.numpy().T])
    expected = [Xt.grad.numpy(), H0t.grad.numpy()[0], C0t.grad.numpy()[0], dW_ref,
                lstm.bias_ih_l0.grad.numpy()]
    for forward, backward in [(nl.lstm_layer_forward, nl.lstm_layer_backward),
                              (nl.lstm_layer_forward_fast, nl.lstm_layer_backward_fast)]:
        _, _, cache = forward(X, (H0, C0), W, b)
        for got, ref in zip(backward(dHs, cache, W), expected):
            assert np.abs(got - ref).max() <= 1e-10


@pytest.mark.parametrize("fast", [True, False])
def test_numerical_gradient_of_every_parameter(fast):
    """Central differences in float64 through time and two stacked layers, from a carried state."""
    rng = np.random.default_rng(6)
    model = nl.CharLSTM(6, 4, 2, seed=7, dtype=np.float64, fast=fast)
    ids, targets = rng.integers(0, 6, size=(3, 5)), rng.integers(0, 6, size=(3, 5))
    state = [tuple(rng.standard_normal((2, 3, 4))) for _ in range(2)]
    errors = nl.gradient_check(model, ids, targets, state)
    assert list(errors) == ["W0", "b0", "W1", "b1", "W_hq", "b_q"]
    assert max(errors.values()) <= 1e-7, errors


def test_softmax_cross_entropy_value_and_gradient():
    rng = np.random.default_rng(8)
    logits, targets = rng.standard_normal((2, 3, 5)) * 3, rng.integers(0, 5, size=(2, 3))
    loss, dlogits = nl.softmax_cross_entropy(logits, targets)
    assert loss == pytest.approx(lm.cross_entropy(logits, targets), abs=1e-12)
    numerical = nl.numerical_gradient(lambda: nl.softmax_cross_entropy(logits, targets)[0], logits)
    assert nl.relative_error(numerical, dlogits) <= 1e-7
    huge, _ = nl.softmax_cross_entropy(np.array([[[1000.0, 0.0]]]), np.array([[1]]))
    assert huge == pytest.approx(1000.0)


def test_wrong_tanh_derivative_fails_the_gradient_check(monkeypatch):
    """The lunch-and-learn bug: 1 - tanh instead of 1 - tanh**2 is caught by the gradient check."""
    def step_backward_bad_tanh(dH, dC, cache, W):
        XH, C_prev, I, F, G, O, tanh_C = cache
        dC = dC + dH * O * (1 - tanh_C)
        dA = np.concatenate([dC * G * I * (1 - I), dC * C_prev * F * (1 - F), dC * I * (1 - G),
                             dH * tanh_C * O * (1 - O)], axis=1)
        dXH = dA @ W.T
        n = XH.shape[1] - I.shape[1]
        return dXH[:, :n], dXH[:, n:], dC * F, XH.T @ dA, dA.sum(0)
    monkeypatch.setattr(nl, "lstm_step_backward", step_backward_bad_tanh)
    rng = np.random.default_rng(9)
    model = nl.CharLSTM(5, 3, 1, seed=1, dtype=np.float64, fast=False)
    errors = nl.gradient_check(model, rng.integers(0, 5, (2, 4)), rng.integers(0, 5, (2, 4)))
    assert errors["W0"] > 1e-3 and errors["W_hq"] <= 1e-7


# ------------------------------------------------------------------ clipping and optimizers
@pytest.mark.parametrize("max_norm", [0.5, 3.0, 1e3])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_clip_grad_norm_equals_torch(max_norm, dtype):
    rng = np.random.default_rng(10)
    grads = [rng.standard_normal(s).astype(dtype) for s in [(4, 3), (7,), (2, 2, 2)]]
    tensors = [torch.from_numpy(g.astype(np.float64)) for g in grads]
    for t in tensors:
        t.grad = t.clone()
    norm_ref = float(torch.nn.utils.clip_grad_norm_(tensors, max_norm))
    arrays = [g for g in grads]
    norm = nl.clip_grad_norm(arrays, max_norm)
    assert norm == pytest.approx(norm_ref, rel=1e-6)
    for g, t in zip(arrays, tensors):
        assert g.dtype == dtype
        np.testing.assert_allclose(g, t.grad.numpy(), rtol=1e-5 if dtype == np.float32 else 1e-12)
    with pytest.raises(ValueError, match="max_norm must be > 0"):
        nl.clip_grad_norm(arrays, 0.0)


@pytest.mark.parametrize("ours, theirs, kwargs", [
    (nl.AdaGrad, torch.optim.Adagrad, dict(lr=0.1)),
    (nl.Adam, torch.optim.Adam, dict(lr=0.01)),
    (nl.Adam, torch.optim.Adam, dict(lr=0.003, betas=(0.8, 0.99), eps=1e-6)),
])
def test_optimizers_equal_torch_optim(ours, theirs, kwargs):
    rng = np.random.default_rng(11)
    params = [rng.standard_normal((3, 4)), rng.standard_normal(5)]
    tensors = [torch.from_numpy(p.copy()).requires_grad_() for p in params]
    opt_ours, opt_theirs = ours(params, **kwargs), theirs(tensors, **kwargs)
    for step in range(25):
        grads = [rng.standard_normal(p.shape) * (1 + step % 3) for p in params]
        if step == 15:  # a learning-rate schedule changes lr between steps
            opt_ours.lr = kwargs["lr"] / 2
            opt_theirs.param_groups[0]["lr"] = kwargs["lr"] / 2
        for t, g in zip(tensors, grads):
            t.grad = torch.from_numpy(g.copy())
        opt_ours.step(grads)
        opt_theirs.step()
    for p, t in zip(params, tensors):
        np.testing.assert_allclose(p, t.detach().numpy(), rtol=0, atol=1e-12)


# ------------------------------------------------------------------ training
def test_training_lowers_the_loss_and_carries_the_state():
    ids = np.tile(np.arange(7), 200)  # a perfectly predictable sequence
    model = nl.CharLSTM(7, 16, 1, seed=0)
    optimizer = nl.Adam(model.params(), lr=0.02)
    step = nl.lm_trainer(model, optimizer, ids, batch_size=4, num_steps=10)
    losses = [step(i) for i in range(60)]
    assert losses[0] > 1.5 and np.mean(losses[-5:]) < 0.2


def test_non_finite_loss_stops_training_with_a_hint():
    corpus = data.load_shakespeare()
    model = nl.CharLSTM(len(corpus.vocab), 8, 1, seed=0)
    model.W_hq[0, 0] = np.nan
    step = nl.lm_trainer(model, nl.Adam(model.params()), corpus.train[:5000], 4, 8)
    with pytest.raises(training.NonFiniteLossError, match="learning rate.*clip"):
        training.train_loop(step, 5, plot=False)


# ------------------------------------------------------------------ bad input
def test_wrong_shapes_name_the_expected_shape():
    rng = np.random.default_rng(12)
    W, b = nl.init_lstm_params(3, 5, rng)
    X, H = np.zeros((4, 3)), np.zeros((4, 5))
    with pytest.raises(ValueError, match=r"H_prev should have shape \(batch, num_hiddens\) = "
                                         r"\(4, 5\), got \(4, 6\)"):
        nl.lstm_step_forward(X, np.zeros((4, 6)), H, W, b)
    with pytest.raises(ValueError, match=r"W should have shape \(num_inputs \+ num_hiddens, "
                                         r"4 \* num_hiddens\) = \(9, 20\), got \(8, 20\)"):
        nl.lstm_step_forward(np.zeros((4, 4)), H, H, W, b)
    with pytest.raises(ValueError, match=r"X should have shape \(batch, num_steps, num_inputs\)"):
        nl.lstm_layer_forward_fast(X, None, W, b)
    with pytest.raises(ValueError, match=r"C0 should have shape \(batch, num_hiddens\)"
                                         r" = \(4, 5\)"):
        nl.lstm_layer_forward(np.zeros((4, 2, 3)), (H, np.zeros((5, 5))), W, b)
    with pytest.raises(ValueError, match=r"dHs should have shape \(batch, num_steps, num_hiddens\)"
                                         r" = \(4, 2, 5\)"):
        _, _, cache = nl.lstm_layer_forward_fast(np.zeros((4, 2, 3)), None, W, b)
        nl.lstm_layer_backward_fast(np.zeros((4, 5)), cache, W)
    model = nl.CharLSTM(7, 5)
    with pytest.raises(ValueError, match=r"ids should have shape \(batch, num_steps\)"):
        model.forward(np.arange(7))
    with pytest.raises(ValueError, match=r"targets should have shape \(batch, num_steps\)"
                                         r" = \(2, 3\)"):
        nl.softmax_cross_entropy(np.zeros((2, 3, 7)), np.zeros((3, 2), dtype=int))


@pytest.mark.parametrize("temperature", [0.0, -0.5])
def test_temperature_not_positive_is_refused(temperature):
    with pytest.raises(ValueError, match="temperature must be > 0"):
        nl.softmax_with_temperature(np.zeros(3), temperature)
    vocab = data.Vocab("abc")
    model = nl.CharLSTM(3, 4)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        lm.sample(model.step_fn, vocab, "ab", 5, temperature)


def test_saved_module_imports_on_its_own():
    """The lunch-and-learn code forgot `import numpy`; the saved module carries its imports."""
    code = ("import lstmbook.lessons.numpy_lstm as m; "
            "print(m.CharLSTM(5, 3).logits_fn([[1, 2]]).shape)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "(1, 2, 5)"


def test_bench_row_runs_on_cpu_only():
    factory = bench.ROWS["NumPy LSTM (lesson 2)"]
    assert factory("cuda") is None
    small = training.Shape(batch=2, steps=3, inputs=4, hiddens=5)
    factory("cpu", small)()


# ------------------------------------------------------------------ the checks
def placeholder(number):
    def answer(*args, **kwargs):
        raise NotImplementedError(f"Exercise {number}: the hint")
    return answer


CORRECT = {
    "2.1": (check.gate_forward, nl.lstm_step_forward),
    "2.2": (check.cell_backward, nl.lstm_step_backward),
    "2.3": (check.backward_through_time, nl.lstm_layer_backward),
    "2.4": (check.clipping, nl.clip_grad_norm),
    "2.5": (check.bptt_chunks, nl.bptt_chunks),
    "2.6": (check.temperature, nl.softmax_with_temperature),
}


@pytest.mark.parametrize("number", list(CORRECT))
def test_check_accepts_the_answer(number, capsys):
    run_check, answer = CORRECT[number]
    run_check(answer)
    assert f"Exercise {number} passed" in capsys.readouterr().out


@pytest.mark.parametrize("number", list(CORRECT))
def test_check_rejects_the_placeholder(number):
    run_check, _ = CORRECT[number]
    with pytest.raises(checks.ExerciseNotDone, match=f"Exercise {number} .*not implemented yet"):
        run_check(placeholder(number))


def step_forward_variant(out_act=nl.sigmoid, order=(0, 1, 2, 3), forget=True, tanh_out=True):
    def answer(X, H_prev, C_prev, W, b):
        h = H_prev.shape[1]
        XH = np.concatenate([X, H_prev], axis=1)
        A = XH @ W + b
        blocks = [A[:, k * h:(k + 1) * h] for k in order]
        I, F, G, O = (nl.sigmoid(blocks[0]), nl.sigmoid(blocks[1]), np.tanh(blocks[2]),
                      out_act(blocks[3]))
        C = (F * C_prev if forget else C_prev) + I * G
        tanh_C = np.tanh(C)
        H = O * (tanh_C if tanh_out else C)
        return H, C, (XH, C_prev, I, F, G, O, tanh_C)
    return answer


def step_backward_variant(dtanh=lambda y: 1 - y ** 2, h_path=True, cell_path="total",
                          order=(0, 1, 2, 3), db_mean=False, xh_swapped=False):
    def answer(dH, dC, cache, W):
        XH, C_prev, I, F, G, O, tanh_C = cache
        dC_in = dC
        dC = dC + (dH * O * dtanh(tanh_C) if h_path else 0)
        blocks = [dC * G * I * (1 - I), dC * C_prev * F * (1 - F), dC * I * dtanh(G),
                  dH * tanh_C * O * (1 - O)]
        dA = np.concatenate([blocks[k] for k in order], axis=1)
        dXH = dA @ W.T
        n = XH.shape[1] - I.shape[1]
        dC_prev = {"total": dC * F, "incoming": dC_in * F, "none": np.zeros_like(dC)}[cell_path]
        XH_used = np.concatenate([XH[:, n:], XH[:, :n]], axis=1) if xh_swapped else XH
        db = dA.mean(0) if db_mean else dA.sum(0)
        return dXH[:, :n], dXH[:, n:], dC_prev, XH_used.T @ dA, db
    return answer


def layer_backward_variant(carry_h=True, carry_c=True, accumulate=True, forward=False):
    def answer(dHs, caches, W):
        batch, h = caches[0][2].shape
        dX = np.empty((batch, len(caches), caches[0][0].shape[1] - h))
        dW, db = np.zeros_like(W), np.zeros(W.shape[1])
        dH, dC = np.zeros((batch, h)), np.zeros((batch, h))
        steps = range(len(caches))
        for t in (steps if forward else reversed(steps)):
            dX[:, t], dH_new, dC_new, dW_t, db_t = nl.lstm_step_backward(
                dHs[:, t] + dH, dC, caches[t], W)
            dH = dH_new if carry_h else np.zeros_like(dH)
            dC = dC_new if carry_c else np.zeros_like(dC)
            dW, db = (dW + dW_t, db + db_t) if accumulate else (dW_t, db_t)
        return dX, dH, dC, dW, db
    return answer


def clip_per_element(grads, max_norm):
    norm = float(np.sqrt(sum((g ** 2).sum() for g in grads)))
    for g in grads:
        np.clip(g, -max_norm, max_norm, out=g)
    return norm


def clip_per_array(grads, max_norm):
    norm = float(np.sqrt(sum((g ** 2).sum() for g in grads)))
    for g in grads:
        n = np.sqrt((g ** 2).sum())
        if n > max_norm:
            g *= max_norm / n
    return norm


def clip_not_in_place(grads, max_norm):
    norm = float(np.sqrt(sum((g ** 2).sum() for g in grads)))
    for g in grads:
        g = g * min(1.0, max_norm / norm)  # noqa: F841 - the mistake under test
    return norm


def clip_always(grads, max_norm):
    norm = float(np.sqrt(sum((g ** 2).sum() for g in grads)))
    for g in grads:
        g *= max_norm / norm
    return norm


def chunks_variant(advance=1.0, shift=1, streams=True, stop_early=False):
    """bptt_chunks with one mistake: advance * num_steps per chunk, Y shifted by `shift`,
    rows taken as neighbouring pieces instead of streams, the last full chunk left out."""
    def answer(ids, batch_size, num_steps):
        stream_len = (len(ids) - 1) // batch_size
        starts = np.arange(batch_size)[:, None] * (stream_len if streams else num_steps)
        offsets, position = np.arange(num_steps), 0
        while position + num_steps < stream_len + (0 if stop_early else 1):
            yield (ids[starts + position + offsets], ids[starts + position + offsets + shift])
            position += int(advance * num_steps)
    return answer


def temperature_vague_error(logits, temperature):
    if not temperature > 0:
        raise ValueError("bad value")
    return softmax(np.asarray(logits, dtype=float) / temperature)


def softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def refuse(temperature):
    if not temperature > 0:
        raise ValueError("temperature must be > 0")


def temperature_after_softmax(logits, temperature):
    refuse(temperature)
    return softmax(np.asarray(logits, dtype=float)) / temperature


def temperature_multiplied(logits, temperature):
    refuse(temperature)
    return softmax(np.asarray(logits, dtype=float) * temperature)


def temperature_overflows(logits, temperature):
    refuse(temperature)
    e = np.exp(np.asarray(logits, dtype=float) / temperature)
    return e / e.sum(axis=-1, keepdims=True)


def temperature_unchecked(logits, temperature):
    return softmax(np.asarray(logits, dtype=float) / temperature)


def temperature_whole_array(logits, temperature):
    refuse(temperature)
    z = np.asarray(logits, dtype=float) / temperature
    e = np.exp(z - z.max())
    return e / e.sum()


WRONG = [
    ("2.1", step_forward_variant(out_act=np.tanh), "output gate O.*only G uses tanh"),
    ("2.1", step_forward_variant(order=(1, 0, 2, 3)), "equals the reference's forget gate"),
    ("2.1", step_forward_variant(forget=False), "C \\(the new cell\\).*F \\* C_prev"),
    ("2.1", step_forward_variant(tanh_out=False), "H \\(the new hidden state\\).*tanh\\(C\\)"),
    ("2.2", step_backward_variant(dtanh=lambda y: 1 - y), "1 - tanh\\*\\*2"),
    ("2.2", step_backward_variant(cell_path="none"), "dC_prev.*cell-state path"),
    ("2.2", step_backward_variant(cell_path="incoming"), "dC_prev.*cell-state path"),
    ("2.2", step_backward_variant(h_path=False), "through H = O \\* tanh\\(C\\)"),
    ("2.2", step_backward_variant(order=(0, 1, 3, 2)),
     "dA \\(seen through db\\) has the blocks of \\[i, f, o, g\\] in this order"
     ".*\\[i \\| f \\| g \\| o\\]"),
    ("2.2", step_backward_variant(order=(1, 0, 2, 3)), "has the blocks of \\[f, i, g, o\\]"),
    ("2.2", step_backward_variant(dtanh=lambda y: 1 - y),
     "dA \\(seen through db = dA.sum\\(axis=0\\)\\) differs in the blocks of the input gate I, "
     "forget gate F and candidate G"),
    ("2.2", step_backward_variant(db_mean=True), "db differs.*dW agrees, so dA is right"),
    ("2.2", step_backward_variant(xh_swapped=True),
     "dW differs.*dA \\(seen through db\\) is right.*XH = \\[X, H_prev\\]"),
    ("2.3", layer_backward_variant(carry_h=False), "only the last step \\(t = 5\\) matches"),
    ("2.3", layer_backward_variant(carry_c=False), "only the last step \\(t = 5\\) matches"),
    ("2.3", layer_backward_variant(forward=True), "FORWARD in time.*reversed"),
    ("2.3", layer_backward_variant(forward=True, carry_h=False, carry_c=False),
     "only the last step \\(t = 5\\) matches"),
    ("2.3", layer_backward_variant(accumulate=False), "dW.*SUM"),
    ("2.4", clip_per_element, "np.clip"),
    ("2.4", clip_per_array, "each array on its own"),
    ("2.4", clip_not_in_place, "in place"),
    ("2.4", clip_always, "only when the norm exceeds"),
    ("2.5", chunks_variant(advance=2), "chunk 1 of row 0 starts at character 16.*advanced "
     "twice per chunk"),
    ("2.5", chunks_variant(advance=0.875), "chunk 1 of row 0 starts at character 7.*moved on "
     "by 7, not num_steps = 8"),
    ("2.5", chunks_variant(shift=0), "Y of chunk 0 is not X shifted by one"),
    ("2.5", chunks_variant(streams=False), "row r reads stream r"),
    ("2.5", chunks_variant(stop_early=True), "yielded 4 chunks, expected 5"),
    ("2.6", temperature_after_softmax, "sum to .*BEFORE the softmax"),
    ("2.6", temperature_multiplied, "T < 1 sharpens"),
    ("2.6", temperature_overflows, "subtract the largest logit"),
    ("2.6", temperature_unchecked, "temperature=0.0"),
    ("2.6", temperature_whole_array, "LAST axis"),
    ("2.6", temperature_vague_error, "ValueError\\('bad value'\\), which does not say what to do"),
]


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("number, wrong, message", WRONG,
                         ids=[f"{n}-{i}" for i, (n, _, _) in enumerate(WRONG)])
def test_check_rejects_wrong_answers(number, wrong, message):
    run_check, _ = CORRECT[number]
    with pytest.raises(checks.ExerciseFailed, match=f"Exercise {number} .*{message}"):
        run_check(wrong)


def test_nn_lstm_equality_check(capsys):
    check.matches_nn_lstm(nl.lstm_layer_forward_fast)
    assert "equal to torch.nn.LSTM" in capsys.readouterr().out

    def off_by_a_little(X, state, W, b):
        Hs, final, cache = nl.lstm_layer_forward_fast(X, state, W, b)
        return Hs + 1e-6, final, cache
    with pytest.raises(checks.ExerciseFailed, match="differs from torch.nn.LSTM"):
        check.matches_nn_lstm(off_by_a_little)


# ------------------------------------------------------------------ the debugging clinic
def lesson_cell(startswith):
    """The source of the lesson's code cell that starts with ``startswith``."""
    notebook = jupytext.read(ROOT / "book" / "02_numpy_lstm.md", fmt="md:myst")
    found = [c.source for c in notebook.cells
             if c.cell_type == "code" and c.source.startswith(startswith)]
    assert len(found) == 1, startswith
    return found[0]


def test_clinic_buggy_function_fails_with_the_message_that_leads_to_the_bug():
    """The function the student gets, taken from the lesson, fails; the lesson's fix passes."""
    namespace = {"np": np}
    exec(lesson_cell("def seed_style_chunks"), namespace)  # noqa: S102 - the lesson's own cell
    with pytest.raises(checks.ExerciseFailed,
                       match=r"Exercise 2\.5 .*chunk 1 of row 0 starts at character 16, but "
                             r"chunk 0 of that row ended at character 7.*moved on by 16 = 2 \* "
                             r"num_steps: it is advanced twice per chunk.*every line that moves "
                             r"the position"):
        check.bptt_chunks(namespace["seed_style_chunks"])
    buggy = lesson_cell("def seed_style_chunks").splitlines()
    fixed = [line for line in buggy if "then on to the next chunk" not in line]
    assert len(fixed) == len(buggy) - 1     # the fix deletes the second advance, nothing else
    exec("\n".join(fixed), namespace)        # noqa: S102
    check.bptt_chunks(namespace["seed_style_chunks"])


def test_bptt_chunks_equals_the_course_batches():
    ids = np.arange(1000) % 17
    ours = list(nl.bptt_chunks(ids, 4, 9))
    theirs = list(data.bptt_batches(ids, 4, 9))
    assert len(ours) == len(theirs) == 27
    for (X, Y), (X_ref, Y_ref) in zip(ours, theirs):
        np.testing.assert_array_equal(X, X_ref)
        np.testing.assert_array_equal(Y, Y_ref)
    with pytest.raises(ValueError, match="too few"):
        next(nl.bptt_chunks(np.arange(10), 4, 8))


@pytest.mark.parametrize("number", ["2.2", "2.3"])
def test_hints_nudge_without_the_formula(number):
    """The placeholder's hint is read before trying: no formula, no code (issue 15)."""
    notebook = jupytext.read(ROOT / "book" / "02_numpy_lstm.md", fmt="md:myst")
    hint = next(c.metadata["hint"] for c in notebook.cells
                if c.metadata.get("exercise") == number)
    assert not any(token in hint for token in ("=", "@", "**", "[:", "(1 -")), hint
