"""The opt-in extras of a Frechet-distance metric, on the features it already computes: density and coverage
(`bench.metrics.prdc`) and FD-infinity (`bench.metrics.fd_infinity`). Used by `bench.metrics.fd_dinov2`; any FD
metric (another encoder or preprocessing, e.g. ``fd_dinov2_dgm``) adopts them in four steps, without subclassing:

1. its ``Options`` derive from `FdExtrasOptions` (``density_coverage``, ``dc_neighborhood``, ``fd_inf``,
   ``fd_inf_points``, ``fd_inf_seed``), which keeps those keys out of the validated dict, and so out of every
   cell key, while at their defaults: existing cells keep their keys;
2. ``outputs = fd_outputs(fd_output, label)``: the FD value and its extras, named by `extra_names` from the FD
   value's name (``<fd_output>_inf`` with ``_slope`` / ``_residual``; ``density_<tag>`` / ``coverage_<tag>``,
   tag = ``fd_output`` without ``fd_``), so two FD metrics never collide, nor with fid_is_kid's ``density``;
3. after loading its reference entry from the `RefCache`: ``entry, radii = reference_radii(cache, material, entry,
   options, what)``: the real k-NN radii (None when density/coverage is off), computed once per reference set and
   k and kept in that same entry;
4. in its finalize: ``{fd_output: fd, **extras(options, extra_names(fd_output), gen, ref, radii, fd_of, what)}``
   with ``gen`` the generated features in sample order and ``fd_of(subset)`` the metric's own distance of a
   generated subset to the whole reference set (reference statistics computed once, by the caller); and
   ``describe()`` adds ``described(options)``.
fid_is_kid uses `extras`, `reference_radii` and `described` too, with its own option names (``fid_inf*``).

Invariant: every extra is a deterministic function of the sample-ordered features, the reference and the options,
so the values are the same bits at any batch size or shard split.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from pydantic import model_serializer

from bench.metrics import fd_infinity, prdc
from bench.options import StrictOptions, keyed_when_set
from bench.outputs import Output, companion


class FdExtrasOptions(StrictOptions):
    """The extras' options (mixin of an FD metric's Options): all off; left out of the validated dict at their
    defaults (the validated dict of a metric that had no extras is unchanged)."""
    density_coverage: bool = False                        # density and coverage (Naeem et al. 2020)
    dc_neighborhood: prdc.Neighbours = 5
    fd_inf: bool = False                                  # FD-infinity (Chong & Forsyth 2020)
    fd_inf_points: fd_infinity.Points = 15
    fd_inf_seed: int = 2020

    @model_serializer(mode="wrap")
    def _keyed(self, handler) -> dict[str, Any]:
        return keyed_when_set(handler(self), EXTRAS)


# The extras' options, keyed only when set (name -> default)
EXTRAS = {k: f.default for k, f in FdExtrasOptions.model_fields.items()}


def extra_names(fd_output: str) -> dict[str, str]:
    """The value names of the extras of an FD metric whose value is named ``fd_output``."""
    tag = fd_output.removeprefix("fd_")
    return {"inf": f"{fd_output}_inf", "slope": f"{fd_output}_inf_slope", "residual": f"{fd_output}_inf_residual",
            "density": f"density_{tag}", "coverage": f"coverage_{tag}"}


def fd_outputs(fd_output: str, label: str) -> tuple[Output, ...]:
    """The declared outputs of an FD metric (lower is better) and of its extras; ``label`` e.g. "FD-DINOv2"."""
    x, tag = extra_names(fd_output), label.removeprefix("FD-")
    return (Output(fd_output, False, label), Output(x["inf"], False, f"{label}-inf"),
            companion(x["slope"], f"{label}-inf", "slope"), companion(x["residual"], f"{label}-inf", "fit residual"),
            Output(x["density"], True, f"Density ({tag})"), Output(x["coverage"], True, f"Coverage ({tag})"))


def reference_radii(cache, material: dict[str, Any], entry: dict[str, torch.Tensor], options,
                    what: str) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
    """(entry, radii): the real k-NN radii of ``entry["features"]`` for density/coverage (None when off), read
    from the reference's refstats entry or computed once and saved into it (`prdc.cached_radii`)."""
    if not options.density_coverage:
        return entry, None
    return prdc.cached_radii(cache, material, entry, options.dc_neighborhood, f"{what}: density_coverage")


def extras(options, names: dict[str, str], gen: torch.Tensor, ref: torch.Tensor, radii: torch.Tensor | None,
           fd_of: Callable[[torch.Tensor], float], what: str, inf: str = "fd_inf") -> dict[str, float]:
    """The extras switched on in ``options`` (``density_coverage``, ``dc_neighborhood`` and ``<inf>``,
    ``<inf>_points``, ``<inf>_seed``: fid_is_kid spells ``inf`` "fid_inf"), named by ``names`` (`extra_names`)."""
    out: dict[str, float] = {}
    if options.density_coverage:
        k = options.dc_neighborhood
        radii = radii if radii is not None else prdc.radii(ref, k, f"{what}: density_coverage")
        out[names["density"]], out[names["coverage"]] = prdc.density_coverage(gen, ref, radii, k)
    if getattr(options, inf):
        out[names["inf"]], out[names["slope"]], out[names["residual"]] = fd_infinity.fd_infinity(
            gen, fd_of, getattr(options, f"{inf}_points"), getattr(options, f"{inf}_seed"), f"{what}: {inf}")
    return out


def described(options, inf: str = "fd_inf") -> dict[str, Any]:
    """What a row records of the extras switched on, with their parameters spelt out (the validated dict leaves
    them out at their defaults); nothing when all are off, so rows of earlier cells describe themselves as before."""
    out: dict[str, Any] = {}
    if options.density_coverage:
        out.update(density_coverage=True, dc_neighborhood=options.dc_neighborhood,
                   dc_distances="Euclidean, float64, strict <, real radius = k-th nearest other real (prdc)")
    if getattr(options, inf):
        out.update({inf: True, f"{inf}_points": getattr(options, f"{inf}_points"),
                    f"{inf}_seed": getattr(options, f"{inf}_seed"),
                    f"{inf}_fit": "least squares FD_N on 1/N, N = linspace(min(5000, max(n // 10, 2)), n), "
                                  "seeded subsets without replacement (dgm-eval)"})
    return out
