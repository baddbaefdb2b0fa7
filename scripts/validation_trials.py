"""Choose the reduced (`cpu`) settings of the MNIST-family experiments on validation data, never on test images.

Each trial fits one candidate setting on the first 3,600 images of the `cpu` training set and scores it on the
other 400 (training images 3,601-4,000, which the trial's flow never sees; the book's test images are not
loaded). The chapters then fit the chosen setting on all 4,000 and report on the test split. Results go to
``book/generated/trials/<experiment>.json``; chapters 4 and 5 show them as their trial tables.

Rules, fixed before the trials ran:

* class-conditional (chapter 4): the lowest Fréchet distance between 400 samples (40 per class) and the 400
  validation images, in the features of a judge trained on the validation images;
* inpainting (chapter 5): the highest posterior-mean PSNR on 200 validation images among candidates whose
  sample/mean MSE ratio is at least 1.5 (an exact sampler: 2/(1 + 1/16) = 1.88 for 16 samples; below 1.5 the
  sampler collapses towards a point estimate, which raises the PSNR of its mean and is not what is wanted).

Usage: ``python scripts/validation_trials.py mnist-classcond [candidate ...]`` (all candidates by default).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

from cmmd.data import load_fashion_mnist, load_mnist
from cmmd.distances import frechet_distance
from cmmd.experiments.mnist import PAPER, cpu_candidates
from cmmd.judge import background_rms, blank_pixels, judge_features, predict, train_judge
from cmmd.metrics import posterior_stats, psnr
from cmmd.statistics import exact_mse_ratio, mse_ratio

N_FIT, N_VAL = 3600, 400
JUDGE_STEPS = 1500  # Adam steps of the judge trained on the validation images
OUT = Path(__file__).resolve().parents[1] / "book" / "generated" / "trials"
LOADERS = {"mnist": load_mnist, "fashionmnist": load_fashion_mnist}


def candidates(experiment: str) -> dict[str, dict]:
    """Candidate name → what it is (``why``) and its reduced settings (``changes``, a :class:`Changes`)."""
    return {name: dict(why=why, changes=changes) for name, (why, changes) in cpu_candidates(experiment).items()}


def run(experiment: str, name: str, spec: dict, extend: int | None = None) -> dict:
    """Fit one candidate and score it on the validation images; with ``extend`` (more networks than the candidate
    has), the same fit goes on to ``extend`` networks and ``curve`` holds the scores after every second network.

    The first L networks of a longer fit are exactly the candidate's L-network fit (a constant schedule draws
    nothing that depends on the number of networks), so one fit gives both the candidate's row and the curve of
    what a longer run buys. CPU seconds are this process's, read after each network (scoring excluded).
    """
    key, task = experiment.split("-")
    exp = PAPER[experiment]().reduced("cpu", spec["changes"])
    n_networks, settings = exp.n_networks, str(exp.build_flow(init_seed=20, lr_schedule="cosine").config)
    if extend is not None and extend > n_networks:
        exp = exp.with_changes(n_networks=extend)
    data = LOADERS[key]("train", n=N_FIT + N_VAL, download=False)
    images, labels = data.images, data.labels
    fit_x, val_x, val_labels = images[:N_FIT], images[N_FIT:], labels[N_FIT:]
    operator = exp.operator()
    fit_y = operator.encode(labels[:N_FIT]) if task == "classcond" else operator(fit_x)
    blank = blank_pixels(fit_x)
    judge = (train_judge(val_x, val_labels, steps=JUDGE_STEPS, generator=torch.Generator().manual_seed(10))
             if task == "classcond" else None)
    score = (lambda model: score_classcond(model, operator, judge, fit_x, labels[:N_FIT], val_x, val_labels, blank)) \
        if task == "classcond" else (lambda model: score_inpainting(model, operator, val_x, blank))
    model = exp.build_flow(init_seed=20, lr_schedule="cosine")
    clock = dict(seconds=[], scoring=0.0, begin=time.process_time())
    curve: list[dict] = []

    def after_network(flow) -> None:
        clock["seconds"].append(time.process_time() - clock["begin"] - clock["scoring"])
        k = len(flow.networks)
        if extend is not None and (k % 2 == 0 or k in (n_networks, extend)):
            begin = time.process_time()
            curve.append(dict(networks=k, cpu_seconds=round(clock["seconds"][-1]), **score(flow)))
            clock["scoring"] += time.process_time() - begin

    model.fit(fit_x, fit_y, generator=torch.Generator().manual_seed(30), after_network=after_network)
    history = dict(after_flow=model.history.mmd2_after_flow[:n_networks],
                   after_network=model.history.mmd2_after_network[:n_networks])
    model.networks = model.networks[:n_networks]
    row = dict(candidate=name, why=spec["why"], settings=settings, cpu_seconds=round(clock["seconds"][n_networks - 1]), history=history)
    row.update(score(model))
    if curve:
        row["curve"] = curve
        row["curve_history"] = dict(after_flow=model.history.mmd2_after_flow,
                                    after_network=model.history.mmd2_after_network)
    return row


def real_accuracy(judge, images: torch.Tensor, labels: torch.Tensor) -> float:
    """The judge's accuracy on real training images it was not trained on: what a perfect sampler would score."""
    return float((predict(judge, images) == labels).double().mean())


def score_classcond(model, operator, judge, fit_x, fit_labels, val_x, val_labels, blank) -> dict:
    """The class-conditional metrics of 400 fresh samples (40 per class) against the 400 validation images."""
    g = torch.Generator().manual_seed(40)
    y = operator.encode(torch.arange(10).repeat_interleave(N_VAL // 10))
    samples = model.sample(y, 1, generator=g)[:, 0].clamp(0, 1)
    fake, real = judge_features(judge, samples), judge_features(judge, val_x)
    spread = [float(torch.trace(torch.cov(fake[y.argmax(1) == c].T)) / torch.trace(torch.cov(real[val_labels == c].T)))
              for c in range(10)]
    return dict(fid=float(frechet_distance(fake, real)),
                fid_real_vs_real=float(frechet_distance(judge_features(judge, fit_x[:N_VAL]), real)),
                accuracy_real=real_accuracy(judge, fit_x[:N_VAL], fit_labels[:N_VAL]),
                accuracy=float((predict(judge, samples) == y.argmax(1)).double().mean()),
                background_rms=float(background_rms(samples, blank).mean()),
                spread=sum(spread) / 10)


def score_inpainting(model, operator, val_x, blank) -> dict:
    """The inpainting metrics of 16 fresh samples for each of 200 validation images."""
    g = torch.Generator().manual_seed(40)
    truth = val_x[:200]
    y = operator(truth)
    observed = operator.as_image(torch.ones_like(y)).bool()
    raw = model.sample(y, 16, generator=g)
    samples = torch.where(observed[:, None], operator.as_image(y)[:, None], raw.clamp(0, 1))
    mean, _ = posterior_stats(samples)
    return dict(psnr_mean=float(psnr(mean, truth, data_range=1.0).mean()),
                mse_ratio=mse_ratio(samples, truth).ratio, mse_ratio_exact=exact_mse_ratio(16),
                background_rms=float(background_rms(samples[:, 0], blank).mean()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("experiment")
    parser.add_argument("candidate", nargs="*")
    parser.add_argument("--extend", type=int, default=None,
                        help="continue each fit to this many networks and record the curve of scores against CPU time")
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    specs = candidates(args.experiment)
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{args.experiment}.json"
    rows = json.loads(path.read_text())["trials"] if path.exists() else []
    for name in args.candidate or list(specs):
        row = run(args.experiment, name, specs[name], args.extend)
        rows = [r for r in rows if r["candidate"] != name] + [row]
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(dict(experiment=args.experiment, n_fit=N_FIT, n_val=N_VAL, trials=rows), indent=1))
        tmp.replace(path)
        print(json.dumps({k: v for k, v in row.items() if "history" not in k}), flush=True)


if __name__ == "__main__":
    main()
