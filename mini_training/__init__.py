"""Training of the miniature world's weights (CPU, fixed seeds): kept in the repository, not in the installed
``bench`` package, which ships only the trained weights and the networks that run them (`bench.mini`).

``python -m mini_training [PART ...]`` (``make mini-weights`` runs all parts): the metric networks first
(``classifier``, ``clip``, ``pick``: `mini_training.classifier`, `.clip`, `.pick`), then the generators (``sit``,
``meanflow``, ``distill``: `mini_training.generators`). Each part is deterministic for a given seed and thread
count, trains on the ``world`` stream only (all three rendering styles, disjoint seeds: like Inception / CLIP, the
judges saw broader data than the generators), reports held-out accuracies on ``val``, ``v2`` and ``ood``, and saves
through :func:`bench.mini.weights.save`.
"""
