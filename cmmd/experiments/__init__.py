"""The paper's experiments, each in three profiles (``paper``, ``cpu``, ``smoke``) [method §5].

``get_config(experiment, profile)`` returns the :class:`ExperimentConfig` of one experiment: ``paper`` exactly the
authors' values (each field says where it comes from), ``cpu`` and ``smoke`` the paper's values with a visible list
of :class:`Changes` and the reason for them. Layout:

- :mod:`~cmmd.experiments.spec`: the records (:class:`ExperimentConfig`, :class:`Level`, :class:`NetSpec`,
  :class:`Changes`) and what a config builds (schedules, flow configs, UNets, the untrained flow);
- :mod:`~cmmd.experiments.tasks`: the forward model of each task family (observe, condition, training pairs,
  condition encoder), :mod:`~cmmd.experiments.encoders` the encoders;
- one module per data family: :mod:`~cmmd.experiments.mnist`, :mod:`~cmmd.experiments.pyramids` (CIFAR-10,
  CelebA), :mod:`~cmmd.experiments.materials`, :mod:`~cmmd.experiments.ct`;
- :mod:`~cmmd.experiments.memory` the GPU-memory model, :mod:`~cmmd.experiments.tables` the settings tables.

A new experiment: write its ``paper()`` record and its reductions in a family module, and add it to
:data:`EXPERIMENTS` below.
"""

from __future__ import annotations

from cmmd.experiments import ct, materials, mnist, pyramids
from cmmd.experiments.memory import estimate_gpu_memory_gb
from cmmd.experiments.spec import (PROFILES, Changes, Experiment, ExperimentConfig, Level, NetSpec,
                                   check_profile)
from cmmd.experiments.tables import memory_table, settings_table, summary
from cmmd.experiments.tasks import ClassConditional, ComputedTomography, Inpainting, SuperResolution, Task

#: every registered experiment, by name
EXPERIMENTS: dict[str, Experiment] = {
    **mnist.EXPERIMENTS, **pyramids.EXPERIMENTS, **materials.EXPERIMENTS, **ct.EXPERIMENTS,
}


def get_config(experiment: str, profile: str) -> ExperimentConfig:
    """The settings of ``experiment`` (a key of :data:`EXPERIMENTS`) in ``profile`` (smoke, cpu, paper)."""
    if experiment not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {experiment!r}; choose one of {', '.join(map(repr, EXPERIMENTS))}")
    return EXPERIMENTS[experiment].config(check_profile(profile))


__all__ = [
    "EXPERIMENTS", "PROFILES", "Changes", "ClassConditional", "ComputedTomography", "Experiment", "ExperimentConfig",
    "Inpainting", "Level", "NetSpec", "SuperResolution", "Task", "check_profile", "estimate_gpu_memory_gb",
    "get_config", "memory_table", "settings_table", "summary",
]
