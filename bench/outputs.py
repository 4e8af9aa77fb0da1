"""What one metric value is: `Output` (name, direction, label, unit, display format), declared once by the metric
that computes it and stored beside every value, so presentation code reads it from the store and never imports a
metric (or torch).

Invariant: ``higher_is_better`` is True or False for a score that can be ranked, None for a companion statistic
(a standard deviation, an interval bound, a per-class row) that is shown but never ranked. A name ending in
``/*`` declares a family of rows (``clip_score/class/*`` matches ``clip_score/class/17``). Torch-free.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Iterable


@dataclass(frozen=True)
class Output:
    name: str                         # the stored metric name, e.g. "fid" or "clip_score/class/*"
    higher_is_better: bool | None     # None: a companion statistic, not ranked
    label: str = ""                   # display name, e.g. "FID"; defaults to the name
    unit: str = ""
    fmt: str = ".4g"                  # format spec for tables

    def __post_init__(self):
        if not self.label:
            object.__setattr__(self, "label", self.name)

    @property
    def ranked(self) -> bool:
        return self.higher_is_better is not None

    def matches(self, name: str) -> bool:
        if self.name.endswith("/*"):
            return name.startswith(self.name[:-1])
        return name == self.name

    def as_dict(self) -> dict:
        return asdict(self)


def find(outputs: Iterable[Output], name: str) -> Output | None:
    """The declared output a stored name belongs to (exact names before families), or None."""
    outputs = list(outputs)
    return next((o for o in outputs if o.name == name), None) or next((o for o in outputs if o.matches(name)), None)


def companion(name: str, of: str, what: str) -> Output:
    """A companion statistic row of output ``of`` (std, interval bound): shown, never ranked."""
    return Output(name, None, f"{of} {what}")
