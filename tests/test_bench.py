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


def test_rows_are_interleaved_and_report_their_spread(monkeypatch):
    calls = []
    monkeypatch.setitem(bench.ROWS, "a", lambda device: lambda: None)
    monkeypatch.setitem(bench.ROWS, "b", lambda device: lambda: None)
    monkeypatch.setitem(bench.ROWS, bench.BASELINE, lambda device: lambda: None)
    speeds = iter([100.0, 50.0, 200.0,    # round 1: baseline, a, b
                   40.0, 80.0, 25.0,      # round 2 starts one later: a, b, baseline
                   100.0, 100.0, 50.0])   # round 3: b, baseline, a

    def fake_throughput(step, device, seconds, warmup=3):
        calls.append((seconds, warmup))
        return next(speeds)
    monkeypatch.setattr(bench, "throughput", fake_throughput)
    rows = {r["name"]: r for r in bench.run(["a", "b"], seconds=3.0, device_list=["cpu"],
                                            rounds=3)}
    assert [c[0] for c in calls] == [1.0] * 9 and [c[1] for c in calls[:3]] == [3, 3, 3]
    base = rows[bench.BASELINE]
    assert base["ratio_to_nn_lstm"] == base["ratio_low"] == base["ratio_high"] == 1.0
    # a: 50/100, 40/25, 50/100 -> median 0.5, spread 0.5-1.6
    assert rows["a"]["ratio_to_nn_lstm"] == 0.5
    assert (rows["a"]["ratio_low"], rows["a"]["ratio_high"]) == (0.5, 1.6)
    assert "0.50 (0.50-1.60)" in bench.table(list(rows.values()))
