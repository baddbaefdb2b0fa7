"""The chapter kit (cmmd.book.kit): a chapter's fit, stopped after k networks, resumes to the same numbers."""

from __future__ import annotations

import pytest
import torch

from cmmd.book.kit import checkpoint_folder, fit_or_resume, has_checkpoint, load_splits
from cmmd.experiments import get_config
from cmmd.model import ConditionalMMDFlow


class Interrupted(KeyboardInterrupt):
    """Ctrl-C right after the k-th checkpoint was written."""


def stop_after(monkeypatch, networks: int) -> None:
    """Make the next fit raise :class:`Interrupted` once ``networks`` checkpoints are written."""
    original = ConditionalMMDFlow._write_checkpoint
    written = {"count": 0}

    def write_then_stop(self, *args, **kwargs):
        original(self, *args, **kwargs)
        written["count"] += 1
        if written["count"] == networks:
            raise Interrupted

    monkeypatch.setattr(ConditionalMMDFlow, "_write_checkpoint", write_then_stop)


def chapter_data(experiment: str, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Training pairs of the right shapes for ``experiment`` (random images and their observations)."""
    exp = get_config(experiment, "smoke")
    g = torch.Generator().manual_seed(5)
    x = torch.rand((n, *exp.x_shape), generator=g)
    if experiment.endswith("classcond"):
        labels = torch.arange(n) % 10
        return x, exp.operator().encode(labels)
    return x, exp.operator()(x)


def fitted(experiment: str, x, y, checkpoint_dir: str = "") -> tuple:
    """Fit the experiment's smoke flow as a chapter does; return (model, the generator's next draw)."""
    model = get_config(experiment, "smoke").build_flow(init_seed=3)
    generator = torch.Generator().manual_seed(7)
    fit_or_resume(model, x, y, generator=generator, checkpoint_dir=checkpoint_dir, name="fit")
    return model, torch.rand(4, generator=generator)


@pytest.mark.parametrize("experiment, stop", [("mnist-classcond", 1), ("cifar10-classcond", 3)])
def test_a_fit_stopped_after_k_networks_resumes_to_the_uninterrupted_numbers(experiment, stop, tmp_path,
                                                                              monkeypatch):
    """mnist-classcond: one flow, stopped after its first network; cifar10-classcond: a pyramid, stopped
    inside a level. Run again with the same checkpoint_dir, the chapter continues by itself."""
    x, y = chapter_data(experiment, 48)
    reference, next_draw = fitted(experiment, x, y)
    assert len(reference.networks) > stop, "the smoke profile must have more networks than the stop point"
    with monkeypatch.context() as patch:
        stop_after(patch, stop)
        with pytest.raises(Interrupted):
            fitted(experiment, x, y, str(tmp_path))
    assert has_checkpoint(checkpoint_folder(str(tmp_path), "fit"))
    resumed, resumed_draw = fitted(experiment, x, y, str(tmp_path))
    assert len(resumed.networks) == len(reference.networks)
    for a, b in zip(reference.networks, resumed.networks):
        for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
            assert torch.equal(p, q), f"parameter {name} differs after resume"
    assert reference.history == resumed.history
    assert torch.equal(next_draw, resumed_draw), "the generator continues as in the uninterrupted run"
    # a finished fit read back from its checkpoints trains nothing more and gives the same samples
    again, _ = fitted(experiment, x, y, str(tmp_path))
    cond = y[:2]
    s1 = resumed.sample(cond, 3, generator=torch.Generator().manual_seed(1))
    s2 = again.sample(cond, 3, generator=torch.Generator().manual_seed(1))
    assert torch.equal(s1, s2)


def test_without_checkpoint_dir_nothing_is_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    x, y = chapter_data("mnist-classcond", 16)
    fitted("mnist-classcond", x, y)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("name", ["", "a/b", ".."])
def test_a_fit_name_must_be_one_folder(name):
    with pytest.raises(ValueError, match="one folder name"):
        checkpoint_folder("ckpt", name)


def missing_loader(split: str, *, n: int | None, download: bool):
    raise FileNotFoundError(f"FashionMNIST ({split}) not found: apt-get install dataset-fashion-mnist")


def test_a_missing_optional_data_set_is_announced_and_skipped(capsys):
    assert load_splits(missing_loader, {"train": ("train", 10)}, download=False, title="FashionMNIST",
                       optional=True, without="this run shows MNIST only") is None
    shown = capsys.readouterr().out  # outside IPython the warning box is printed
    assert "FashionMNIST is not available on this machine" in shown
    assert "this run shows MNIST only" in shown and "apt-get install dataset-fashion-mnist" in shown


def test_a_missing_required_data_set_stops_with_the_loaders_message():
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        load_splits(missing_loader, {"train": ("train", 10)}, download=False, title="FashionMNIST")


def test_splits_are_loaded_with_their_sizes_and_the_download_flag():
    calls = []

    def loader(split, *, n, download):
        calls.append((split, n, download))
        return split

    assert load_splits(loader, {"a": ("train", 5), "b": ("test", None)}, download=True, title="X") == \
        {"a": "train", "b": "test"}
    assert calls == [("train", 5, True), ("test", None, True)]
