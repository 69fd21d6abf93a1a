"""The GPU code path, tested on a CPU: device choice, recipes, the bfloat16 switch, dtypes and
the device syncs, so that the first run on a machine with a GPU works.

Nothing here needs CUDA; where the code asks torch.cuda, the test answers for it.
"""
import math

import numpy as np
import pytest
import torch

from lstmbook import bench, training
from lstmbook import best_model as best
from lstmbook.lessons import pytorch_lstm as lesson


def test_the_recipe_follows_the_device_and_the_budget():
    assert best.default_recipe(4, "cuda").hidden == best.CUDA_RECIPE["hidden"]
    assert best.default_recipe(4, "cuda:1").layers == best.CUDA_RECIPE["layers"]
    assert best.default_recipe(10, "cpu").hidden == best.LONG_RECIPE["hidden"]
    assert best.default_recipe(4, "cpu").hidden == best.Recipe().hidden
    assert best.default_recipe(4, "cuda", hidden=64).hidden == 64  # an option wins


@pytest.mark.parametrize("setting, native, expected", [
    ("on", False, True), ("off", True, False), ("auto", True, True), ("auto", False, False)])
def test_bf16_switch_on_a_cpu(monkeypatch, setting, native, expected):
    monkeypatch.setattr(best, "cpu_has_native_bf16", lambda: native)
    assert best.use_bf16(best.Recipe(bf16=setting), "cpu") is expected


def test_bf16_auto_on_a_gpu_asks_the_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert best.use_bf16(best.Recipe(bf16="auto"), "cuda") is False
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert best.use_bf16(best.Recipe(bf16="auto"), "cuda") is True
    with pytest.raises(ValueError, match="--bf16 must be auto, on or off"):
        best.use_bf16(best.Recipe(bf16="yes"), "cuda")


def test_asking_for_a_gpu_without_one_says_what_to_do(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="use --device cpu"):
        best.train(0.01, device="cuda", out=tmp_path / "x.pt")
    assert best.main(["--minutes", "0.01", "--device", "cuda", "--out",
                      str(tmp_path / "x.pt")]) == 1
    assert "use --device cpu" in capsys.readouterr().err


def test_a_bf16_step_keeps_float32_weights_and_loss():
    torch.manual_seed(0)
    model = lesson.CharModel(11, torch.nn.LSTM(8, 16, batch_first=True), 8)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    X, Y = torch.randint(0, 11, (4, 12)), torch.randint(0, 11, (4, 12))
    loss = lesson.char_model_step(model, optimizer, X, Y, bf16=True)
    assert loss.dtype == torch.float32 and math.isfinite(loss.item())
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert abs(loss.item() - math.log(11)) < 0.5  # an untrained model: about ln V


def test_gpu_measurements_wait_for_the_device(monkeypatch):
    synced = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda: synced.append(1))
    tps = training.throughput(lambda: None, "cuda", seconds=0.01, warmup=2,
                              shape=training.Shape(batch=2, steps=3))
    assert tps > 0 and len(synced) >= 4  # after the warm-up, and after every timed call
    synced.clear()
    training.throughput(lambda: None, "cpu", seconds=0.01)
    assert synced == []


def test_bench_adds_a_gpu_column_only_where_cuda_is(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert bench.devices() == ["cpu", "cuda"]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert bench.devices() == ["cpu"]
    cpu_only = ["NumPy LSTM (lesson 2)", "Keras LSTM layer (lesson 5)",
                "Autograd engine LSTM (lesson 3)", "HIPS autograd LSTM (lesson 3)",
                "PyTorch fused, C++ loops (lesson 4)"]
    assert all(bench.ROWS[name]("cuda") is None for name in cpu_only)


def test_a_step_that_reads_no_loss_still_counts(monkeypatch):
    """make train reads the loss every 20th step on a GPU (reading waits for the device):
    the clock and the step count go on, the guard checks the losses it sees."""
    history = training.run_for(60.0, lambda i, p: None if i % 20 else float(np.log(65)),
                               max_steps=45, plot=False)
    assert history.num_steps == 45 and history.steps == [0, 20, 40]
