"""cmmd: conditional MMD flows with the negative distance kernel.

A reproducible companion of Hagemann, Hertrich, Altekrüger, Beinert, Chemseddine and Steidl,
"Posterior Sampling Based on Gradient Flows of the MMD with Negative Distance Kernel", ICLR 2024
(arXiv 2310.03054). The modules follow one concept each: ``energy`` (exact MMD), ``sliced``
(sorting and slicing), ``flow`` (particle flows), and the rest in the layers of README.md's
"Architecture" section. The method and the authors' settings are explained in the book's page
"Method and settings", book/method.md.
"""

from cmmd.energy import mmd2, mmd2_grad
from cmmd.flow import FlowResult, conditional_mmd_flow, mmd_flow
from cmmd.sliced import mmd2_1d, mmd2_grad_1d, sliced_factor, sliced_mmd2, sliced_mmd2_grad

__version__ = "0.1.0"

__all__ = [
    "FlowResult",
    "conditional_mmd_flow",
    "mmd2",
    "mmd2_1d",
    "mmd2_grad",
    "mmd2_grad_1d",
    "mmd_flow",
    "sliced_factor",
    "sliced_mmd2",
    "sliced_mmd2_grad",
]
