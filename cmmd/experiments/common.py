"""Settings shared by several experiments: network sizes and the ``smoke`` reduction."""

from __future__ import annotations

from typing import Any

from cmmd.experiments.spec import Changes, NetSpec

#: [code] unet.py: ch=32, ch_mult=(1, 2, 4), num_res_blocks=2 (attention only at resolution 256: unused)
PAPER_SMALL_IMAGE_NET = NetSpec(base_width=32, channel_mult=(1, 2, 4), blocks=2)
#: ~0.06 M parameters; ~0.1–0.2 s per Adam step at batch 64 on 1 core (28×28)
CPU_NET = NetSpec(base_width=16, channel_mult=(1, 2), blocks=1)
SMOKE_NET = NetSpec(base_width=4, channel_mult=(1, 2), blocks=1)
#: the dival UNet without normalisation, at the size of the reduced materials and CT profiles
CPU_UNNORMALISED_NET = NetSpec(base_width=16, channel_mult=(1, 2, 2), blocks=1, norm_groups=None)
SMOKE_UNNORMALISED_NET = NetSpec(base_width=4, channel_mult=(1, 2), blocks=1, norm_groups=None)

SMOKE_WHY = "tiny settings that only prove the code path runs (seconds)"


def smoke(**values: Any) -> Changes:
    """The ``smoke`` reduction: N = 32, T_1 = 2, at most 4 flow steps, 3 Adam steps, P = 8, a tiny UNet;
    ``values`` add or override changes (e.g. ``n_networks=2``, or whole ``levels`` for pyramids)."""
    base: dict[str, Any] = dict(n_train=32, max_steps=4, train_steps=3, batch_size=8, net=SMOKE_NET, sample_batch=16,
                                level=dict(first_exponent=1, n_projections=8))
    base.update(values)
    return Changes(SMOKE_WHY, base)
