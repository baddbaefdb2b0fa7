"""``python -m cmmd.bench``: seconds and peak memory of the sliced MMD gradient against its floor.

For N = M, d and P in a grid, times one call of :func:`cmmd.sliced.sliced_mmd2_grad` beside
(a) the floor of the method on the same input, in three parts timed interleaved with the method in one
process (the median of each over the repeats, so that a loaded machine slows all alike): the projection
product (P, d)·(d, N+M), NumPy's sort of the same number of int64 keys (P rows of N + M, on the row-parallel
threads the method uses, :func:`cmmd._sort.sorted_keys`) and the back-projection product (N, P)·(P, d);
for reference the floor with ``torch.sort`` instead; and (b) the exact O(N(N+M))
gradient :func:`cmmd.energy.mmd2_grad` where its predicted time fits the budget. The 1-minute load average
of the machine (``os.getloadavg``) is printed beside each row. Peak memory is the
increase of the process's resident set (CPU, from /proc/self/status after resetting its high-water
mark) or ``torch.cuda.max_memory_allocated`` (CUDA). Prints a table and writes JSON.

``--distributed`` times instead the phases of one flow step split over 1 and 2 processes (gloo on this CPU):
projections, sorts (the 1D gradients), back-projection and the all-reduce, and predicts from them, the message
size and stated GPU and interconnect rates the steps per second on K = 1..8 GPUs at the paper's sizes
(:func:`predict_steps_per_second`).

``--ct-memory`` measures instead (only) the memory of CT sampling in the paper setting (issue 6): the
``paper`` profile's UNet of ``ct-lowdose`` at 362×362 with random weights, two networks (memory does not grow
with L: the networks are applied one after another to the same samples), 100 posterior samples of one
observation drawn by :meth:`cmmd.model.ConditionalMMDFlow.sample` in chunks of the config's ``sample_batch``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from cmmd._sort import _sort_in_place, sorted_keys
from cmmd.distributed import Cluster, ShardedSliced
from cmmd.experiments import get_config
from cmmd.energy import mmd2_grad
from cmmd.model import ConditionalMMDFlow
from cmmd.nets import count_parameters
from cmmd.runtime import resolve_device
from cmmd.sliced import mmd2_grad_1d_joint, random_directions, sliced_mmd2_grad


@dataclass
class Row:
    n: int
    d: int
    p: int
    sliced_s: float
    floor_s: float
    ratio: float
    projection_s: float
    sort_s: float
    back_projection_s: float
    torch_sort_floor_s: float
    exact_s: float | None
    sliced_peak_mib: float | None
    floor_peak_mib: float | None
    load_1min: float


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


def _clock(fn: Callable[[], object], device: torch.device) -> float:
    """Wall time of one call of ``fn`` (synchronised on CUDA)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def _peak_of(fn: Callable[[], object], device: torch.device) -> float | None:
    """Peak memory of one call of ``fn`` above the state before it."""
    baseline = _reset_peak(device)
    fn()
    return _peak_since(device, baseline)


def floor_work(x: torch.Tensor, y: torch.Tensor, xi: torch.Tensor, *, torch_sort: bool = False) -> torch.Tensor:
    """The unavoidable work of a sliced gradient: project, one batched sort of (P, N+M), back-project."""
    projected = xi @ torch.cat([x, y]).T
    perm = projected.sort(dim=1).indices if torch_sort else sorted_keys(projected)[0]
    return perm[:, : x.shape[0]].to(x.dtype).T @ xi


def bench_case(n: int, d: int, p: int, *, device: torch.device, exact_budget_s: float, repeats: int) -> Row:
    """Medians of ``repeats`` interleaved rounds of: the sliced gradient, the projection, the key sort, the
    back-projection (after one warm-up round); the torch.sort floor and the peaks from separate calls."""
    generator = torch.Generator(device=device).manual_seed(0)
    x = torch.rand(n, d, generator=generator, device=device)
    y = torch.randn(n, d, generator=generator, device=device)
    xi = random_directions(p, d, generator=generator, device=device)
    points = torch.cat([x, y])
    grad_1d = torch.randn(p, n, generator=generator, device=device)
    keys = np.random.default_rng(0).integers(0, 2**62, size=(p, 2 * n), dtype=np.int64)
    work = keys.copy()  # sorted in place; refilled with the unsorted keys before each timed sort
    on_device = torch.from_numpy(keys).to(device)
    sort = (lambda: _sort_in_place(work)) if device.type == "cpu" else (lambda: on_device.sort(dim=1))
    parts = {"sliced": lambda: sliced_mmd2_grad(x, y, p, generator=generator), "projection": lambda: xi @ points.T,
             "sort": sort, "back_projection": lambda: grad_1d.T @ xi}
    times: dict[str, list[float]] = {name: [] for name in parts}
    for round_ in range(repeats + 1):
        for name, fn in parts.items():
            if name == "sort":
                np.copyto(work, keys)
            seconds = _clock(fn, device)
            if round_:  # round 0 warms up
                times[name].append(seconds)
    median = {name: statistics.median(values) for name, values in times.items()}
    floor_s = median["projection"] + median["sort"] + median["back_projection"]
    torch_floor_s = _clock(lambda: floor_work(x, y, xi, torch_sort=True), device)
    exact_s = None
    if _exact_seconds_estimate(n, d, device) <= exact_budget_s:
        exact_s = _clock(lambda: mmd2_grad(x, y), device)
    return Row(n, d, p, median["sliced"], floor_s, median["sliced"] / floor_s, median["projection"], median["sort"],
               median["back_projection"], torch_floor_s, exact_s, _peak_of(parts["sliced"], device),
               _peak_of(lambda: floor_work(x, y, xi), device), os.getloadavg()[0])


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


# ---------------------------------------------------------------------- --distributed
#: The paper's sizes of one sliced flow step: N particles = M targets, joint dimension D = d + n, P directions
#: (cmmd.experiments: MNIST N = 20,000, 28·28 + 10; CIFAR-10 class-conditional N = 40,000, 3·32·32 + 10).
PAPER_STEPS = {"MNIST": (20_000, 784 + 10, 500), "CIFAR-10": (40_000, 3 * 32 * 32 + 10, 500)}


@dataclass(frozen=True)
class Interconnect:
    """Ring all-reduce of S bytes on K GPUs: 2(K−1)/K · S / bandwidth + 2(K−1) · latency."""

    name: str
    bandwidth_gb_s: float
    latency_us: float

    def all_reduce_s(self, size_bytes: float, k: int) -> float:
        if k == 1:
            return 0.0
        return 2 * (k - 1) / k * size_bytes / (self.bandwidth_gb_s * 1e9) + 2 * (k - 1) * self.latency_us * 1e-6


#: Stated interconnects (bus bandwidth of a ring all-reduce, per-hop latency): NVLink 3/4 in an 8-GPU server,
#: PCIe 4.0 x16 without NVLink.
INTERCONNECTS = (Interconnect("NVLink ~300 GB/s", 300.0, 5.0), Interconnect("PCIe 4 ~25 GB/s", 25.0, 10.0))


@dataclass
class StepPhases:
    """Medians (slowest rank) of one sliced flow step split over ``processes`` ranks, in seconds."""

    processes: int
    projection_s: float
    sort_s: float
    back_projection_s: float
    all_reduce_s: float
    step_s: float

    @property
    def compute_s(self) -> float:
        return self.projection_s + self.sort_s + self.back_projection_s


def step_phases(cluster: Cluster, n: int, d: int, p: int, repeats: int) -> dict[str, float]:
    """This rank's medians of the phases of a step at N = M = n, D = d, P = p (its share P/K of the directions):
    projection (P/K, D)·(D, 2N), the 1D gradients by one sort of each row, back-projection (N, P/K)·(P/K, D),
    the all-reduce of the (N, D) gradient (after a barrier), and the whole :class:`ShardedSliced` step."""
    generator = torch.Generator().manual_seed(0)
    x, y = torch.rand(n, d, generator=generator), torch.randn(n, d, generator=generator)
    points = torch.cat([x, y])
    lo, hi = cluster.share(p)
    xi = random_directions(p, d, generator=generator)[lo:hi]
    state: dict[str, torch.Tensor] = {"grad": torch.zeros(n, d)}
    sharded = ShardedSliced(p, cluster)
    parts = {
        "projection_s": lambda: state.__setitem__("z", xi @ points.T),
        "sort_s": lambda: state.__setitem__("g", mmd2_grad_1d_joint(state["z"], n)),
        "back_projection_s": lambda: state["grad"].zero_().addmm_(state["g"].T, xi),
        "all_reduce_s": lambda: cluster.all_reduce(state["grad"]),
        "step_s": lambda: sharded(x, y, generator),
    }
    times: dict[str, list[float]] = {name: [] for name in parts}
    for round_ in range(repeats + 1):
        for name, fn in parts.items():
            if name in ("all_reduce_s", "step_s"):
                cluster.barrier()  # time the exchange and the step, not the wait for a slower rank
            seconds = _clock(fn, torch.device("cpu"))
            if round_:
                times[name].append(seconds)
    return {name: statistics.median(values) for name, values in times.items()}


def _phases_rank(rank: int, world: int, n: int, d: int, p: int, repeats: int, folder: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{folder}/rendezvous", rank=rank, world_size=world)
    result = step_phases(Cluster(rank, world, torch.device("cpu")), n, d, p, repeats)
    Path(folder, f"rank{rank}.json").write_text(json.dumps(result))
    dist.barrier()
    dist.destroy_process_group()


def measure_phases(world: int, n: int, d: int, p: int, repeats: int) -> StepPhases:
    """:func:`step_phases` on ``world`` CPU processes (gloo; 1: in this process), slowest rank per phase."""
    if world == 1:
        return StepPhases(1, **step_phases(Cluster(0, 1, torch.device("cpu")), n, d, p, repeats))
    with tempfile.TemporaryDirectory() as folder:
        mp.spawn(_phases_rank, args=(world, n, d, p, repeats, folder), nprocs=world, join=True)
        ranks = [json.loads(Path(folder, f"rank{r}.json").read_text()) for r in range(world)]
    return StepPhases(world, **{name: max(r[name] for r in ranks) for name in ranks[0]})


def predict_steps_per_second(n: int, d: int, p: int, k: int, *, gemm_flops: float, sort_keys_per_s: float,
                             link: Interconnect) -> float:
    r"""Steps per second of a sliced step split over k GPUs:

    .. math::

        t_k = \frac{1}{k}\Big(\frac{2P(2N)D + 2PND}{R_\text{gemm}} + \frac{P \cdot 2N}{R_\text{sort}}\Big)
              + t_\text{all-reduce}(4ND \text{ bytes}, k),

    the projection and back-projection products at ``gemm_flops``, the row sorts at ``sort_keys_per_s`` and the
    ring all-reduce of the N·D float32 gradient over ``link`` (:class:`Interconnect`).
    """
    compute = (2 * p * 2 * n * d + 2 * p * n * d) / gemm_flops + p * 2 * n / sort_keys_per_s
    return 1.0 / (compute / k + link.all_reduce_s(4 * n * d, k))


def distributed_report(n: int, d: int, p: int, repeats: int, *, gemm_flops: float, sort_keys_per_s: float) -> dict:
    """Measure 1 and 2 CPU processes, check the split model on them, predict K = 1..8 GPUs; print and return."""
    load = os.getloadavg()
    phases = [measure_phases(k, n, d, p, repeats) for k in (1, 2)]
    print(f"one sliced flow step, N = M = {n:,}, D = {d}, P = {p}: medians of {repeats} rounds, slowest rank, "
          f"CPU with gloo; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} cores")
    print(f"{'processes':>9} {'project s':>10} {'sort s':>8} {'back s':>8} {'all-reduce s':>12} {'step s':>8}")
    for ph in phases:
        print(f"{ph.processes:>9} {ph.projection_s:>10.4f} {ph.sort_s:>8.4f} {ph.back_projection_s:>8.4f} "
              f"{ph.all_reduce_s:>12.4f} {ph.step_s:>8.4f}")
    one, two = phases
    model_two = one.compute_s / 2 + two.all_reduce_s
    print(f"model check on this CPU: 1-process compute / 2 + measured all-reduce = {model_two:.4f} s per step; "
          f"measured 2-process step {two.step_s:.4f} s (message {4 * n * d / 2**20:.1f} MiB)")
    cpu_gemm = (2 * p * 2 * n * d + 2 * p * n * d) / (one.projection_s + one.back_projection_s)
    cpu_sort = p * 2 * n / one.sort_s
    print(f"this CPU, 1 process: products {cpu_gemm / 1e9:.1f} GFLOP/s, sort + 1D gradients "
          f"{cpu_sort / 1e6:.0f} M keys/s")
    print(f"\npredicted steps/s on K GPUs, assuming products at {gemm_flops / 1e12:g} TFLOP/s (fp32), "
          f"row sorts (torch.sort) at {sort_keys_per_s / 1e9:g} G keys/s per GPU, a ring all-reduce of N·D float32 "
          f"per step; no overlap of compute and communication, no other cost:")
    predictions = []
    for name, (pn, pd, pp) in PAPER_STEPS.items():
        for link in INTERCONNECTS:
            rates = [predict_steps_per_second(pn, pd, pp, k, gemm_flops=gemm_flops, sort_keys_per_s=sort_keys_per_s,
                                              link=link) for k in range(1, 9)]
            predictions.append({"problem": name, "n": pn, "d": pd, "p": pp, "interconnect": link.name,
                                "message_mib": 4 * pn * pd / 2**20, "steps_per_s": rates})
            print(f"{name:>8} N={pn:,} D={pd} P={pp} ({4 * pn * pd / 2**20:.0f} MiB), {link.name:<17}: "
                  + " ".join(f"K={k}: {r:,.0f}" for k, r in enumerate(rates, start=1)))
    return {"load_average": load, "cores": os.cpu_count(), "n": n, "d": d, "p": p, "repeats": repeats,
            "phases": [asdict(ph) for ph in phases], "model_two_process_s": model_two,
            "cpu_gemm_flops": cpu_gemm, "cpu_sort_keys_per_s": cpu_sort, "gpu_gemm_flops": gemm_flops,
            "gpu_sort_keys_per_s": sort_keys_per_s, "interconnects": [asdict(link) for link in INTERCONNECTS],
            "predictions": predictions}


def _fmt(value: float | None, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def print_header() -> None:
    print("medians of interleaved repeats; floor = projection + NumPy sort of P x (N+M) int64 keys + back-projection",
          flush=True)
    print(f"{'N=M':>7} {'d':>5} {'P':>4} {'sliced s':>9} {'floor s':>8} {'ratio':>6} {'proj s':>7} {'sort s':>7} "
          f"{'back s':>7} {'torch.sort floor':>16} {'exact s':>8} {'peak MiB':>9} {'floor MiB':>9} {'load':>5}",
          flush=True)


def print_row(r: Row) -> None:
    print(f"{r.n:>7} {r.d:>5} {r.p:>4} {r.sliced_s:>9.4f} {r.floor_s:>8.4f} {r.ratio:>6.2f} {r.projection_s:>7.4f} "
          f"{r.sort_s:>7.4f} {r.back_projection_s:>7.4f} {r.torch_sort_floor_s:>16.4f} {_fmt(r.exact_s, '8.3f'):>8} "
          f"{_fmt(r.sliced_peak_mib, '9.0f'):>9} {_fmt(r.floor_peak_mib, '9.0f'):>9} {r.load_1min:>5.2f}", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    parser.add_argument("--d", type=int, nargs="+", default=[2, 784, 3072])
    parser.add_argument("--p", type=int, nargs="+", default=[100, 500])
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds per case (the median is kept)")
    parser.add_argument("--exact-budget", type=float, default=60.0, help="skip the exact gradient above this")
    parser.add_argument("--memory-check", type=int, default=20_000, help="N for the exact-gradient memory row (0: skip)")
    parser.add_argument("--ct-memory", action="store_true",
                        help="only measure the memory of 100 posterior samples of a 362x362 CT image (paper UNet)")
    parser.add_argument("--ct-samples", type=int, default=100, help="samples drawn by --ct-memory")
    parser.add_argument("--distributed", action="store_true",
                        help="only the phases of a flow step on 1 and 2 CPU processes and the K-GPU prediction")
    parser.add_argument("--step-size", nargs=3, type=int, default=[4000, 794, 100], metavar=("N", "D", "P"),
                        help="--distributed: the measured step (default small; the paper's MNIST: 20000 794 500)")
    parser.add_argument("--gpu-tflops", type=float, default=20.0, help="--distributed: assumed fp32 GEMM TFLOP/s")
    parser.add_argument("--gpu-sort-gkeys", type=float, default=2.0,
                        help="--distributed: assumed G keys/s of a batched row sort on one GPU")
    parser.add_argument("--out", default="bench-results/bench.json")
    args = parser.parse_args(argv)
    if args.distributed:
        report = distributed_report(*args.step_size, args.repeats, gemm_flops=args.gpu_tflops * 1e12,
                                    sort_keys_per_s=args.gpu_sort_gkeys * 1e9)
        _write(report, Path(args.out).with_name(Path(args.out).stem + "-distributed.json"))
        return
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


def _write(report: dict, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(),
                               "machine": platform.processor() or platform.machine(), **report}, indent=2))
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
