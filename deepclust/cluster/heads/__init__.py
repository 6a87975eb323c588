"""Deep clustering heads on frozen embeddings: TEMI and SCAN, with shared machinery.

- :mod:`.modules` -- :class:`HeadBank`, many heads evaluated as a few batched products;
- :mod:`.objectives` -- the TEMI, SCAN and self-labelling losses;
- :mod:`.training` -- pair sampling, schedules, EMA teacher and the step-budget loop;
- :mod:`.checkpoint` -- safetensors + JSON checkpoints, resume;
- :mod:`.base` -- the estimator both methods share; :mod:`.temi`, :mod:`.scan` -- the
  estimators, registered as ``"temi"``, ``"scan"`` and ``"scanv2"`` (SCAN's loss with
  TEMI's EMA teacher);
- :mod:`.turtle` -- TURTLE (``"turtle"``), linear task encoders in one or several spaces,
  its own bilevel loop (it needs no neighbours).

The collectives training needs under ``torchrun`` are :mod:`deepclust.runtime`'s.

The recipe and the evidence behind its defaults: docs/heads.md.
"""

from deepclust.cluster.heads.modules import HeadBank
from deepclust.cluster.heads.scan import SCAN, SCANv2
from deepclust.cluster.heads.temi import TEMI
from deepclust.cluster.heads.turtle import TURTLE

__all__ = ["HeadBank", "SCAN", "SCANv2", "TEMI", "TURTLE"]
