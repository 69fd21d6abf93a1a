"""make bench: the harness measures, prints a table and writes JSON with the machine."""
import json

from lstmbook import bench, training


def test_bench_writes_table_and_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    bench.main(["--seconds", "0.2", "--device", "cpu", "--train-seconds", "0", "--out", str(out)])
    printed = capsys.readouterr().out
    assert "torch.nn.LSTM" in printed and "x nn.LSTM" in printed
    report = json.loads(out.read_text())
    assert report["shape"] == {"batch": 32, "steps": 64, "inputs": 64, "hiddens": 256}
    assert report["machine"]["cpu_count"] >= 1
    assert report["runs"] == []  # --train-seconds 0: throughput only
    baseline = [r for r in report["throughput"] if r["name"] == bench.BASELINE]
    assert len(baseline) == 1 and baseline[0]["ratio_to_nn_lstm"] == 1.0
    assert baseline[0]["tokens_per_s"] > 0


def test_throughput_counts_tokens_per_second():
    calls = []
    tps = training.throughput(lambda: calls.append(1), seconds=0.05, warmup=2)
    timed = len(calls) - 2
    assert timed >= 3 and tps > 0


def test_rows_name_classes_not_module_strings():
    """A row holds the class it times, so moving a lesson module fails at import, not later."""
    assert all(isinstance(cls, type) for cls in bench.MODULE_ROWS.values())
    assert bench.MODULE_ROWS["PyTorch fused LSTM (lesson 4)"].__module__ == (
        "lstmbook.lessons.pytorch_lstm")
