"""``python -m cmmd.bench``: seconds and peak memory of the sliced MMD gradient against its floor.

For N = M, d and P in a grid, times one call of :func:`cmmd.sliced.sliced_mmd2_grad` beside
(a) the floor of the method on the same input: one batched sort of P rows of N + M projected values
plus the projection and back-projection matrix products, timed alone, with the same row sort the method
uses (:func:`cmmd._sort.sorted_keys`: packed int64 keys sorted by NumPy on the CPU) and, for reference,
with ``torch.sort``; and (b) the exact O(N(N+M))
gradient :func:`cmmd.energy.mmd2_grad` where its predicted time fits the budget. Peak memory is the
increase of the process's resident set (CPU, from /proc/self/status after resetting its high-water
mark) or ``torch.cuda.max_memory_allocated`` (CUDA). Prints a table and writes JSON.

``--ct-memory`` measures instead (only) the memory of CT sampling in the paper setting (issue 6): the
``paper`` profile's UNet of ``ct-lowdose`` at 362×362 with random weights, two networks (memory does not grow
with L: the networks are applied one after another to the same samples), 100 posterior samples of one
observation drawn by :meth:`cmmd.model.ConditionalMMDFlow.sample` in chunks of the config's ``sample_batch``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch

from cmmd._sort import sorted_keys
from cmmd.experiments import get_config
from cmmd.energy import mmd2_grad
from cmmd.model import ConditionalMMDFlow
from cmmd.nets import count_parameters
from cmmd.runtime import resolve_device
from cmmd.sliced import random_directions, sliced_mmd2_grad


@dataclass
class Row:
    n: int
    d: int
    p: int
    sliced_s: float
    floor_s: float
    ratio: float
    torch_sort_floor_s: float
    exact_s: float | None
    sliced_peak_mib: float | None
    floor_peak_mib: float | None


def _reset_peak(device: torch.device) -> float:
    """Reset the memory high-water mark; returns the current baseline in MiB."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        return torch.cuda.memory_allocated(device) / 2**20
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return _proc_status_mib("VmRSS")
    except OSError:
        return float("nan")


def _proc_status_mib(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _peak_since(device: torch.device, baseline: float) -> float | None:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20 - baseline
    peak = _proc_status_mib("VmHWM") - baseline
    return None if peak != peak else peak  # NaN where /proc is unavailable


def _timed(fn: Callable[[], object], device: torch.device, repeats: int) -> tuple[float, float | None]:
    """Best wall time over ``repeats`` calls (after one warm-up) and the peak memory of one call."""
    fn()
    baseline = _reset_peak(device)
    best = float("inf")
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - start)
    return best, _peak_since(device, baseline)


def floor_work(x: torch.Tensor, y: torch.Tensor, xi: torch.Tensor, *, torch_sort: bool = False) -> torch.Tensor:
    """The unavoidable work of a sliced gradient: project, one batched sort of (P, N+M), back-project."""
    projected = xi @ torch.cat([x, y]).T
    perm = projected.sort(dim=1).indices if torch_sort else sorted_keys(projected)[0]
    return perm[:, : x.shape[0]].to(x.dtype).T @ xi


def bench_case(n: int, d: int, p: int, *, device: torch.device, exact_budget_s: float, repeats: int) -> Row:
    generator = torch.Generator(device=device).manual_seed(0)
    x = torch.rand(n, d, generator=generator, device=device)
    y = torch.randn(n, d, generator=generator, device=device)
    xi = random_directions(p, d, generator=generator, device=device)
    sliced_s, sliced_peak = _timed(lambda: sliced_mmd2_grad(x, y, p, generator=generator), device, repeats)
    floor_s, floor_peak = _timed(lambda: floor_work(x, y, xi), device, repeats)
    torch_floor_s, _ = _timed(lambda: floor_work(x, y, xi, torch_sort=True), device, repeats)
    exact_s = None
    predicted = _exact_seconds_estimate(n, d, device)
    if predicted <= exact_budget_s:
        exact_s, _ = _timed(lambda: mmd2_grad(x, y), device, 1)
    return Row(n, d, p, sliced_s, floor_s, sliced_s / floor_s, torch_floor_s, exact_s, sliced_peak, floor_peak)


def _exact_seconds_estimate(n: int, d: int, device: torch.device) -> float:
    """Rough time of the exact gradient: 2 pairwise blocks of N² entries, ~4d flops each, at ~20 GFLOP/s
    on 2 CPU cores (or ~20 TFLOP/s on a GPU)."""
    flops = 2 * n * n * (4 * d + 20)
    return flops / (2e13 if device.type == "cuda" else 2e10)


def memory_check(n: int, d: int, *, device: torch.device) -> dict:
    """Peak memory and time of the exact ``mmd2_grad`` at N = M = n (the 2 GB bound of the core issue)."""
    generator = torch.Generator(device=device).manual_seed(0)
    x = torch.rand(n, d, generator=generator, device=device)
    y = torch.randn(n, d, generator=generator, device=device)
    baseline = _reset_peak(device)
    start = time.perf_counter()
    mmd2_grad(x, y)
    seconds = time.perf_counter() - start
    return {"n": n, "d": d, "exact_s": seconds, "peak_mib_over_inputs": _peak_since(device, baseline)}


def ct_sampling_memory(n_samples: int, *, device: torch.device, n_networks: int = 2) -> dict:
    """Peak memory of drawing ``n_samples`` posterior samples of one 362×362 CT observation (paper UNet).

    The networks have random weights (the zero-initialised last layer is redrawn too, so the samples move);
    the peak is the high-water mark of the process (CPU: VmHWM, absolute and above the state before sampling;
    CUDA: ``max_memory_allocated``), which is what a 4 GB machine has to hold.
    """
    config = get_config("ct-lowdose", "paper")
    generator = torch.Generator(device=device).manual_seed(0)
    networks = []
    for _ in range(n_networks):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(len(networks))
            net = config.network().to(device).eval()
            torch.nn.init.normal_(net.head[-1].weight, std=1e-3)
        networks.append(net)
    model = ConditionalMMDFlow(config.x_shape, config.y_shape, net=networks[0], config=config.flow_config())
    model.networks = networks
    y = torch.rand((1, *config.y_shape), generator=generator, device=device)
    baseline = _reset_peak(device)
    start = time.perf_counter()
    samples = model.sample(y, n_samples, generator=generator)
    seconds = time.perf_counter() - start
    above = _peak_since(device, baseline)
    absolute = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else _proc_status_mib("VmHWM")
    return {"image": list(config.x_shape), "n_samples": n_samples, "n_networks": n_networks,
            "sample_batch": config.sample_batch, "samples_shape": list(samples.shape), "seconds": seconds,
            "peak_mib": absolute, "peak_mib_above_start": above,
            "unet_parameters": count_parameters(networks[0])}


def _fmt(value: float | None, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def print_header() -> None:
    print(f"{'N=M':>7} {'d':>5} {'P':>4} {'sliced s':>9} {'floor s':>8} {'ratio':>6} {'torch.sort floor':>16} {'exact s':>8} "
          f"{'peak MiB':>9} {'floor MiB':>9}", flush=True)


def print_row(r: Row) -> None:
    print(f"{r.n:>7} {r.d:>5} {r.p:>4} {r.sliced_s:>9.4f} {r.floor_s:>8.4f} {r.ratio:>6.2f} {r.torch_sort_floor_s:>16.4f} "
          f"{_fmt(r.exact_s, '8.3f'):>8} {_fmt(r.sliced_peak_mib, '9.0f'):>9} {_fmt(r.floor_peak_mib, '9.0f'):>9}",
          flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    parser.add_argument("--d", type=int, nargs="+", default=[2, 784, 3072])
    parser.add_argument("--p", type=int, nargs="+", default=[100, 500])
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per case (best is kept)")
    parser.add_argument("--exact-budget", type=float, default=60.0, help="skip the exact gradient above this")
    parser.add_argument("--memory-check", type=int, default=20_000, help="N for the exact-gradient memory row (0: skip)")
    parser.add_argument("--ct-memory", action="store_true",
                        help="only measure the memory of 100 posterior samples of a 362x362 CT image (paper UNet)")
    parser.add_argument("--ct-samples", type=int, default=100, help="samples drawn by --ct-memory")
    parser.add_argument("--out", default="bench-results/bench.json")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    if args.ct_memory:
        _write_ct_memory(ct_sampling_memory(args.ct_samples, device=device), device, Path(args.out))
        return
    rows = []
    print_header()
    for n in args.n:
        for d in args.d:
            for p in args.p:
                repeats = 1 if n * d >= 10**8 else args.repeats
                rows.append(bench_case(n, d, p, device=device, exact_budget_s=args.exact_budget, repeats=repeats))
                print_row(rows[-1])
    memory = memory_check(args.memory_check, 784, device=device) if args.memory_check else None
    if memory:
        print(f"exact mmd2_grad at N=M={memory['n']}, d=784: {memory['exact_s']:.1f} s, "
              f"peak {memory['peak_mib_over_inputs']:.0f} MiB above the inputs")
    report = {
        "device": str(device),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
        "rows": [asdict(r) for r in rows],
        "exact_memory_check": memory,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"wrote {out}")


def _write_ct_memory(report: dict, device: torch.device, out: Path) -> None:
    print(f"CT sampling, paper UNet ({report['unet_parameters']:,} parameters), {report['n_networks']} networks: "
          f"{report['n_samples']} samples of {report['image'][1]}x{report['image'][2]} in chunks of "
          f"{report['sample_batch']}: {report['seconds']:.1f} s, peak {report['peak_mib']:.0f} MiB "
          f"({report['peak_mib_above_start']:.0f} MiB above the start) on {device}")
    out = out.with_name(out.stem + "-ct-memory" + out.suffix)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"device": str(device), "torch": torch.__version__,
                               "threads": torch.get_num_threads(), "ct_sampling_memory": report}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
