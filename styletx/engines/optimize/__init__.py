"""The optimisation engine (Gatys et al. 2016): the coarse-to-fine pixel optimiser (:mod:`.engine`) and its
tiled loss evaluation for pictures larger than memory allows whole (:mod:`.tiles`).
"""

from .engine import PROBE_SIZE, choose_precision_for, memory_needed, optimize_image, plan_sizes, scale_sizes

__all__ = ["scale_sizes", "plan_sizes", "memory_needed", "optimize_image", "choose_precision_for", "PROBE_SIZE"]
