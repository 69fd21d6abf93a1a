"""``make bench``: forward+backward throughput of every LSTM in the course, in one run.

All rows run the common benchmark shape (batch 32, 64 steps, input 64, hidden 256, float32);
each row's tokens/s is divided by ``torch.nn.LSTM``'s on the same device in the same run, so the
ratio survives a noisy machine better than the raw figure. CPU always; CUDA too when present.
A lesson adds a row by decorating a factory with ``@row("name")`` in a module listed in
``ROW_MODULES``; the factory takes a device name and returns a no-argument ``step()`` that runs
one forward and backward pass, or None when it cannot run on that device.
"""
from dataclasses import asdict, dataclass
from pathlib import Path
import argparse
import importlib
import json
import os
import platform
import time

BASELINE = "torch.nn.LSTM"
ROW_MODULES = ["lstmbook.bench"]
ROWS = {}


@dataclass(frozen=True)
class Shape:
    batch: int = 32
    steps: int = 64
    inputs: int = 64
    hiddens: int = 256

    @property
    def tokens(self) -> int:
        return self.batch * self.steps


SHAPE = Shape()


def row(name: str):
    def register(factory):
        ROWS[name] = factory
        return factory
    return register


@row(BASELINE)
def torch_lstm(device: str, shape: Shape = SHAPE):
    import torch
    lstm = torch.nn.LSTM(shape.inputs, shape.hiddens, batch_first=True).to(device)
    X = torch.randn(shape.batch, shape.steps, shape.inputs, device=device)

    def step():
        out, _ = lstm(X)
        out.sum().backward()
    return step


def _synchronize(device: str) -> None:
    if device.startswith("cuda"):
        import torch
        torch.cuda.synchronize()


def measure(step, device: str = "cpu", seconds: float = 2.0, warmup: int = 3,
            shape: Shape = SHAPE) -> float:
    """Tokens per second of ``step`` (one forward+backward of the benchmark shape)."""
    for _ in range(warmup):
        step()
    _synchronize(device)
    iters, start = 0, time.perf_counter()
    while True:
        step()
        iters += 1
        _synchronize(device)
        elapsed = time.perf_counter() - start
        if elapsed >= seconds and iters >= 3:
            return shape.tokens * iters / elapsed


def devices() -> list[str]:
    import torch
    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def machine() -> dict:
    import torch
    info = {"platform": platform.platform(), "python": platform.python_version(),
            "cpu_count": os.cpu_count(), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "processor": _cpu_model()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def run(names=None, seconds: float = 2.0, device_list=None) -> list[dict]:
    for module in ROW_MODULES:
        importlib.import_module(module)
    names = names or list(ROWS)
    results = []
    for device in device_list or devices():
        base = None
        for name in [BASELINE] + [n for n in names if n != BASELINE]:
            step = ROWS[name](device)
            if step is None:
                continue
            tps = measure(step, device, seconds)
            base = tps if name == BASELINE else base
            results.append({"name": name, "device": device, "tokens_per_s": tps,
                            "ratio_to_nn_lstm": tps / base})
    return results


def table(results: list[dict]) -> str:
    lines = [f"{'implementation':<28} {'device':<6} {'tokens/s':>12} {'x nn.LSTM':>10}"]
    for r in results:
        lines.append(f"{r['name']:<28} {r['device']:<6} {r['tokens_per_s']:>12,.0f} "
                     f"{r['ratio_to_nn_lstm']:>10.2f}")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Benchmark the course's LSTMs (fwd+bwd tokens/s).")
    parser.add_argument("--seconds", type=float, default=3.0, help="timing per row and device")
    parser.add_argument("--device", action="append", choices=["cpu", "cuda"],
                        help="device to measure (default: cpu, and cuda when available)")
    parser.add_argument("--out", type=Path, default=Path("_build/bench.json"))
    args = parser.parse_args(argv)
    results = run(seconds=args.seconds, device_list=args.device)
    print(f"Forward+backward, batch {SHAPE.batch} x {SHAPE.steps} steps, input {SHAPE.inputs}, "
          f"hidden {SHAPE.hiddens}, float32\n")
    print(table(results))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {"shape": asdict(SHAPE), "machine": machine(), "results": results,
              "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
