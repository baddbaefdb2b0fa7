"""GPU check of the paper configs (run on a CUDA machine: PYTHONPATH=. python scripts/gpu_check.py [NAME ...]).

For each paper experiment: a few flow steps and network updates on synthetic data of the right shapes,
the measured peak GPU memory beside cmmd.experiments.estimate_gpu_memory_gb, and step times; then the MNIST
patch-projection step at N = 2,000 and 20,000, and the CIFAR-10 pyramid (cmmd.pyramid) end to end. Writes gpu_check.json to $OUT (or /tmp). Not run by CI.
"""
import json, math, os, sys, time
import torch
from cmmd.experiments import EXPERIMENTS, get_config, estimate_gpu_memory_gb
from cmmd.flowspec import Schedule
from cmmd.model import ConditionalMMDFlow
from cmmd.energy import mmd2_grad
from cmmd.projections import patch_gradient
from dataclasses import replace

dev = torch.device("cuda")
print(torch.__version__, torch.cuda.get_device_name(0), flush=True)
out = {}

def sync(): torch.cuda.synchronize()

# 1. unbiasedness on CUDA (whole-image window)
g = torch.Generator(device=dev).manual_seed(0)
x = torch.rand(30, 19, generator=g, device=dev, dtype=torch.float64)
t = torch.rand(40, 19, generator=g, device=dev, dtype=torch.float64) * 0.5 + 0.3
proj = patch_gradient((1, 4, 4), (3,), patch_size=4, windows=[4], weights=[1.0], n_projections=50)
est = torch.stack([proj(x, t, g)[:, :16] for _ in range(400)])
exact = mmd2_grad(x, t)[:, :16]
mean = est.mean(0); k = 400
spread = ((est - mean) ** 2).sum((1, 2)).mean() * k / (k - 1)
out["cuda_unbiased_ratio"] = float(((mean - exact) ** 2).sum() / (spread / k))
print("unbiased ratio", out["cuda_unbiased_ratio"], flush=True)

def fake_data(cfg, level):
    c, s, _ = cfg.level_shape(level)
    n = cfg.n_train
    gg = torch.Generator(device=dev).manual_seed(1)
    x = torch.rand(n, c, s, s, generator=gg, device=dev)
    if cfg.NAME.endswith("classcond"):
        y = 10 * torch.nn.functional.one_hot(torch.arange(n, device=dev) % 10, 10).float()
    else:
        y = torch.rand(n, *cfg.y_shape, generator=gg, device=dev)
    return x, y

names = sys.argv[1:] or list(EXPERIMENTS)
for name in names:
    cfg = get_config(name, "paper")
    level = len(cfg.levels) - 1
    try:
        torch.cuda.empty_cache(); torch.cuda.reset_peak_memory_stats()
        x, y = fake_data(cfg, level)
        grad_fn = cfg.flow_config(level).projection.gradient(cfg.level_shape(level), cfg.y_shape)
        joint = torch.cat([x.flatten(1), y.flatten(1)], 1)
        target = joint.flip(0).contiguous()
        gg = torch.Generator(device=dev).manual_seed(2)
        grad_fn(joint, target, gg); sync()
        t0 = time.perf_counter()
        for _ in range(3): grad_fn(joint, target, gg)
        sync(); step_s = (time.perf_counter() - t0) / 3
        del joint, target
        torch.cuda.empty_cache(); torch.cuda.reset_peak_memory_stats()
        fc = cfg.flow_config(level, schedule=Schedule.constant(1, steps=2), train_steps=3)
        with torch.random.fork_rng(devices=[dev]):
            torch.manual_seed(0)
            net = cfg.network(level).to(dev)
        model = ConditionalMMDFlow(cfg.level_shape(level), cfg.y_shape, net=net, config=fc)
        t0 = time.perf_counter()
        model.fit(x, y, generator=torch.Generator(device=dev).manual_seed(3), progress=False)
        sync(); fit_s = time.perf_counter() - t0
        peak = torch.cuda.max_memory_allocated() / 2**30
        reserved = torch.cuda.max_memory_reserved() / 2**30
        # network step time at batch size
        opt = torch.optim.Adam(net.parameters(), lr=5e-4)
        xb, yb = x[: cfg.batch_size], y[: cfg.batch_size]
        for i in range(4):
            if i == 1: sync(); t0 = time.perf_counter()
            loss = net(xb, yb).square().mean(); opt.zero_grad(); loss.backward(); opt.step()
        sync(); net_s = (time.perf_counter() - t0) / 3
        est = estimate_gpu_memory_gb(cfg, level=level)
        out[name] = dict(level=level, flow_step_s=step_s, fit_s=fit_s, peak_allocated_gib=peak,
                         peak_reserved_gib=reserved, estimate_gib=est, unet_step_s=net_s)
        print(name, json.dumps(out[name]), flush=True)
        del model, net, x, y, opt
    except Exception as e:  # keep going
        out[name] = dict(error=repr(e)[:300]); print(name, "ERROR", repr(e)[:300], flush=True)
# MNIST paper patch step at N=2000 and 20000
cfg = get_config("mnist-classcond", "paper")
for n in (2000, 20000):
    gg = torch.Generator(device=dev).manual_seed(0)
    joint = torch.rand(n, 794, generator=gg, device=dev); target = torch.rand(n, 794, generator=gg, device=dev)
    f = cfg.flow_config().projection.gradient(cfg.level_shape(), cfg.y_shape); f(joint, target, gg); sync(); t0 = time.perf_counter()
    for _ in range(5): f(joint, target, gg)
    sync(); out[f"mnist_step_N{n}"] = (time.perf_counter() - t0) / 5
    print("mnist step", n, out[f"mnist_step_N{n}"], flush=True)
# the pyramid trainer end to end on CUDA: the CIFAR-10 paper levels, one network each (2 flow steps, 3 Adam steps)
try:
    cfg = get_config("cifar10-classcond", "paper")
    torch.cuda.empty_cache(); torch.cuda.reset_peak_memory_stats()
    x, y = fake_data(cfg, len(cfg.levels) - 1)
    pyramid = cfg.build_flow(init_seed=0, device=dev, schedule=Schedule.constant(1, steps=2), train_steps=3)
    t0 = time.perf_counter()
    pyramid.fit(x, y, generator=torch.Generator(device=dev).manual_seed(4), progress=False)
    s = pyramid.sample(y[:10], 4, generator=torch.Generator(device=dev).manual_seed(5))
    sync()
    out["cifar10_pyramid"] = dict(seconds=time.perf_counter() - t0, sample_shape=list(s.shape),
                                  finite=bool(torch.isfinite(s).all()), device=str(s.device),
                                  peak_allocated_gib=torch.cuda.max_memory_allocated() / 2**30)
except Exception as e:
    out["cifar10_pyramid"] = dict(error=repr(e)[:300])
print("pyramid", out["cifar10_pyramid"], flush=True)
os.makedirs(os.environ.get("OUT", "/tmp"), exist_ok=True)
json.dump(out, open(os.path.join(os.environ.get("OUT", "/tmp"), "gpu_check.json"), "w"), indent=1)
