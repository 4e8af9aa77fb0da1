"""Pre-flight: what every cell of a run needs on this machine, resolved before the store is opened.

Components declare their needs through hooks with defaults: `Generator.requirements(spec)`,
`Metric.requirements(options)` and `Dataset.requirements(name, options)` return `Requirement`s built here
(`weights`: a local file or folder, ``$VAR/path`` or a Hugging Face id that must be in the local cache;
`package`: an optional Python dependency; `local_file`: a file at a fixed place, like torch-fidelity's Inception
weights; a dataset's copy, opened by `bench.data.base.Dataset.inspect`). `check(cells)` probes every distinct
requirement once and returns a `Report`: what is missing, grouped (one line per model, per dataset, one for the
metrics, one for anything shared), and which cells it blocks.

Invariants:
- nothing here opens the store or writes a file beyond the caches a run writes anyway (an archive's listing),
  and no weights or images are read (files are opened for one byte to prove they are readable; dataset copies
  are listed, never decoded);
- the network is touched only by `reachable`: one TCP connect per host and process, in a daemon thread given at
  most `PROBE_S` seconds, and never while ``HF_HUB_OFFLINE`` is set (a machine declared offline). A hub id that
  is not cached counts as present (downloaded on first use, said in a note) only when the hub answered;
- a probe never raises: an exception inside one is a missing requirement naming it;
- a cell is blocked exactly when its model, its dataset or one of its metrics (or the run itself) misses one.
"""

from __future__ import annotations

import importlib.util
import os
import re
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable
from urllib.parse import urlparse

PROBE_S = 1.5                       # the most a reachability probe may take
# a reference ending so names a local file even where it could parse as a hub id ("weights/sit.pt")
FILE_SUFFIXES = {".pt", ".pth", ".bin", ".ckpt", ".safetensors", ".npz", ".npy", ".pkl"}
HF_ENDPOINT = "https://huggingface.co"
_ENV = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?")
_REACHABLE: dict[tuple[str, int], bool] = {}


@dataclass(frozen=True)
class Check:
    """A probe's answer: ``missing`` says why the thing cannot be used (None: present); ``note`` is something to
    know although it is present (downloaded on first use, fewer images than the card lists)."""
    missing: str | None = None
    note: str | None = None
    hub: bool = False               # missing from the Hugging Face cache (the report says how to fill it once)


@dataclass(frozen=True)
class Requirement:
    """One thing a component needs on this machine. ``key`` is its identity (a requirement several components
    share is probed once and reported once); ``get`` says where to get it when the probe's answer does not."""
    what: str
    key: tuple
    probe: Callable[[], Check] = field(compare=False, repr=False)
    get: str = ""

    def check(self) -> Check:
        try:
            return self.probe()
        except Exception as e:  # noqa: BLE001 - a probe never raises (see the module doc)
            return Check(missing=f"{type(e).__name__}: {e}")


# -- requirements -------------------------------------------------------------------------------------------------
def weights(ref: str | None, what: str, *, filename: str | tuple[str, ...] | None = None,
            revision: str | None = None, get: str = "") -> Requirement:
    """Weights as `bench.hub.resolve_weights` finds them: a local file or folder (``filename``: one or several
    files inside a folder or hub repository), ``$VAR/path``, or a Hugging Face id (``org/name``,
    ``hf://org/name/file``) in the local cache."""
    files = (filename,) if isinstance(filename, str) else tuple(filename or ())
    return Requirement(what, ("weights", ref, files, revision), lambda: _probe_weights(ref, files, revision), get)


def package(module: str, what: str, extra: str) -> Requirement:
    """An optional Python dependency, found without importing it (``pip install 'stepbench[extra]'``)."""
    def probe() -> Check:
        if importlib.util.find_spec(module) is None:
            return Check(missing=f"Python package {module!r} is not installed: pip install 'stepbench[{extra}]'")
        return Check()
    return Requirement(what, ("package", module), probe)


def local_file(path: Path, what: str, *, url: str | None = None, get: str = "") -> Requirement:
    """A file at a fixed place; with ``url``, a missing file that would be downloaded from a reachable host is a
    note, not a miss."""
    def probe() -> Check:
        if path.exists():
            return _readable(path)
        if url and reachable(url):
            return Check(note=f"{what} will be downloaded from {urlparse(url).netloc} on first use (to {path})")
        why = "HF_HUB_OFFLINE is set" if hub_offline() else f"{urlparse(url).netloc} is unreachable"
        return Check(missing=f"{path} does not exist" + (f" ({why})" if url else ""))
    return Requirement(what, ("file", str(path)), probe, get)


def unmet(what: str, reason: str, get: str = "") -> Requirement:
    """A requirement known to be missing without probing (e.g. no weights given where some are needed)."""
    return Requirement(what, ("unmet", what, reason), lambda: Check(missing=reason), get)


def _probe_weights(ref: str | None, files: tuple[str, ...], revision: str | None) -> Check:
    if ref is None or not str(ref).strip():
        return Check(missing="no weights given (set the model's `weights:`)")
    ref = str(ref)
    unset = [v for v in _ENV.findall(ref) if not os.environ.get(v)]
    inside = () if Path(ref).suffix else files      # a path that names a file: no folder file names apply
    if unset:
        where = ", ".join(f"{ref}/{f}" for f in inside) if inside else ref
        return Check(missing=f"${unset[0]} is not set; put {'them' if len(inside) > 1 else 'it'} at {where}")
    expanded = _ENV.sub(lambda m: os.environ[m.group(1)], ref)
    p = Path(expanded).expanduser()
    if p.exists():
        if not (files and p.is_dir()):
            return _readable(p)
        absent = [f for f in files if not (p / f).exists()]
        if absent:
            return Check(missing=f"{p} has no {', '.join(absent)}")
        for f in files:
            res = _readable(p / f)
            if res.missing:
                return res
        return Check()
    from bench.hub import parse_hub
    hub = None if p.suffix.lower() in FILE_SUFFIXES and not expanded.startswith("hf://") else parse_hub(expanded)
    if hub is None:
        return Check(missing=f"{p} does not exist; put {'them' if len(inside) > 1 else 'it'} there"
                     + (f" ({', '.join(inside)})" if inside else ""))
    repo, in_repo = hub
    return _probe_hub(repo, (in_repo,) if in_repo else files, revision)


def _readable(p: Path) -> Check:
    try:
        if p.is_dir():
            if not os.access(p, os.R_OK | os.X_OK):
                return Check(missing=f"{p} is not readable")
            if next(p.iterdir(), None) is None:
                return Check(missing=f"{p} is an empty folder")
            return Check()
        with open(p, "rb") as f:
            f.read(1)
        return Check()
    except OSError as e:
        return Check(missing=f"{p} is not readable ({e.strerror or e})")


def hub_cache() -> str:
    """The local Hugging Face hub cache folder (``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, else the default)."""
    try:
        from huggingface_hub import constants
        return str(constants.HF_HUB_CACHE)
    except ImportError:
        return os.path.expanduser("~/.cache/huggingface/hub")


def _probe_hub(repo: str, files: tuple[str, ...], revision: str | None) -> Check:
    try:
        import huggingface_hub as hh
    except ImportError:
        return Check(missing=f"{repo}: Python package 'huggingface_hub' is not installed: pip install 'stepbench[hf]'")

    def cached(f: str | None) -> bool:      # the local cache only, no network (what resolve_weights tries first)
        try:
            if f:
                hh.hf_hub_download(repo, f, revision=revision, local_files_only=True, cache_dir=hub_cache())
            else:
                hh.snapshot_download(repo, revision=revision, local_files_only=True, cache_dir=hub_cache())
            return True
        except Exception:  # noqa: BLE001 - not cached
            return False

    absent = [f for f in files if not cached(f)] if files else ([] if cached(None) else [None])
    if not absent:
        return Check()
    target = repo if absent == [None] else f"{repo} ({', '.join(absent)})"
    if hub_online():
        return Check(note=f"{target}: not in the Hugging Face cache, downloaded from the hub on first use")
    dl = " ".join(["huggingface-cli download", repo, *(f for f in absent if f)])
    if revision:
        dl += f" --revision {revision}"
    return Check(missing=f"{target} is not in the Hugging Face cache: `{dl}`", hub=True)


# -- the network: asked once per host, never long ------------------------------------------------------------------
def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def hub_online() -> bool:
    """Whether the Hugging Face hub answers (False at once with HF_HUB_OFFLINE; ``$HF_ENDPOINT`` honoured)."""
    return not hub_offline() and reachable(os.environ.get("HF_ENDPOINT") or HF_ENDPOINT)


def reachable(url: str, timeout: float = PROBE_S) -> bool:
    """Whether a TCP connection to ``url``'s host opens within ``timeout`` seconds (DNS included: the probe runs
    in a daemon thread, so a resolver that hangs costs ``timeout`` at most). Asked once per host and process, and
    never while HF_HUB_OFFLINE is set: that declares the machine offline."""
    if hub_offline():
        return False
    u = urlparse(url if "//" in url else f"https://{url}")
    host, port = u.hostname or "", u.port or (80 if u.scheme == "http" else 443)
    if (host, port) in _REACHABLE:
        return _REACHABLE[(host, port)]
    answer: list[bool] = []

    def probe() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            answer.append(True)
        except Exception:  # noqa: BLE001 - any failure to connect is "unreachable"
            answer.append(False)

    t = threading.Thread(target=probe, daemon=True)
    t.start()
    t.join(timeout)
    _REACHABLE[(host, port)] = ok = bool(answer and answer[0])
    return ok


# -- a run's requirements -----------------------------------------------------------------------------------------
RUN = ("run", "")                   # the owner of what the run itself needs (e.g. Ray for --executor ray)


@dataclass
class Missing:
    """A missing requirement and the components (owners) that need it."""
    requirement: Requirement
    check: Check
    owners: list[tuple[str, str]]


@dataclass
class Report:
    """What `check` found: missing requirements with their owners, notes, and the blocked owners."""
    cells: int
    missing: list[Missing] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    cells_of: dict[tuple[str, str], int] = field(default_factory=dict)
    blocked_cells: int = 0
    blocked_owners: set[tuple[str, str]] = field(default_factory=set)

    @property
    def ok(self) -> bool:
        return not self.missing

    def blocks(self, cell) -> bool:
        """Whether ``cell`` needs a missing requirement (its model, dataset, a metric, or the run's own)."""
        return any(o in self.blocked_owners for o in owners_of(cell))

    def lines(self, keep_going: bool = False, run: bool = True) -> list[str]:
        """The report as text, grouped: a header, one line per model or dataset (a requirement shared by several
        components gets its own line naming them), one line for the metrics, and how to fill the hub cache.
        ``run``: worded for `bench run` (else for `bench validate`); ``keep_going``: the run goes on without them."""
        if self.ok:
            return []
        runnable = self.cells - self.blocked_cells
        if not run:
            tail = "`bench run` would stop here (--keep-going runs the cells whose inputs are present):"
        elif keep_going and runnable:
            tail = f"--keep-going: running the other {runnable}, leaving out these:"
        elif keep_going:
            tail = "no cell has all its inputs, so nothing was run or written:"
        else:
            tail = "nothing was run or written (--keep-going runs the cells whose inputs are present):"
        head = f"pre-flight: {self.blocked_cells} of {self.cells} cells lack inputs on this machine; {tail}"
        groups: dict[tuple, list[str]] = {}
        for m in self.missing:
            metrics = [o for o in m.owners if o[0] == "metric"]
            item = _item(m)
            if metrics and len(metrics) == len(m.owners):
                groups.setdefault((("metrics", ""),), []).append(f"{', '.join(o[1] for o in metrics)} {item}")
            else:
                groups.setdefault(tuple(m.owners), []).append(item)
        order = {"dataset": 0, "model": 1, "run": 2, "metrics": 3}
        out = [head]
        for owners in sorted(groups, key=lambda g: (order.get(g[0][0], 9), len(g) > 1)):
            items = list(dict.fromkeys(groups[owners]))
            out.append(f"  {self._label(owners)}: {'; '.join(items)}")
        if any(m.check.hub for m in self.missing):
            why = "HF_HUB_OFFLINE is set" if hub_offline() else "the hub is unreachable from here"
            out.append(f"  ({why}: run the huggingface-cli commands on a machine with network and copy its Hugging "
                       f"Face cache to {hub_cache()}, or give local paths instead)")
        return out

    def _label(self, owners: tuple[tuple[str, str], ...]) -> str:
        kind = owners[0][0]
        if kind == "metrics":
            return "metrics"
        if kind == "run":
            return "run"
        names = ", ".join(o[1] for o in owners)
        if len(owners) > 1:
            return f"{kind}s {names}"
        n = self.cells_of.get(owners[0], 0)
        return f"{kind} {names} ({n} cell{'s' if n != 1 else ''})"


def _item(m: Missing) -> str:
    text = f"{m.requirement.what}: {m.check.missing}" if m.requirement.what else str(m.check.missing)
    return text + (f" (get it: {m.requirement.get})" if m.requirement.get else "")


def owners_of(cell) -> list[tuple[str, str]]:
    """The components a cell needs: its model, its dataset, each metric, and the run."""
    return [("model", cell.model.id), ("dataset", cell.dataset), *(("metric", n) for n in cell.metrics), RUN]


def _requirements(hook: Callable[..., Iterable[Requirement]], *args: Any) -> list[Requirement]:
    try:
        return list(hook(*args))
    except Exception as e:  # noqa: BLE001 - a hook that cannot say is itself a miss, named
        return [unmet("requirements", f"{type(e).__name__}: {e}")]


def requirements_of(cells: list, extra: Iterable[Requirement] = ()) -> dict[tuple[str, str], list[Requirement]]:
    """owner -> its requirements, from the components' hooks (each model, dataset and metric asked once)."""
    from bench import registry
    out: dict[tuple[str, str], list[Requirement]] = {RUN: list(extra)}
    for c in cells:
        if ("model", c.model.id) not in out:
            adapter = registry.resolve("model adapter", c.model.adapter)()
            out[("model", c.model.id)] = _requirements(adapter.requirements, c.model)
        if ("dataset", c.dataset) not in out:
            cls = registry.resolve("dataset", c.dataset_source)
            out[("dataset", c.dataset)] = _requirements(cls.requirements, c.dataset_source, c.dataset_options)
        for name, opts in c.metrics.items():
            if ("metric", name) not in out:
                out[("metric", name)] = _requirements(registry.resolve("metric", name).requirements, opts)
    return out


def check(cells: list, extra: Iterable[Requirement] = ()) -> Report:
    """Probe what ``cells`` need (each distinct requirement once) and say what is missing and what it blocks."""
    needs = requirements_of(cells, extra)
    checked: dict[tuple, Check] = {}
    owners: dict[tuple, list[tuple[str, str]]] = {}
    reqs: dict[tuple, Requirement] = {}
    for owner, rs in needs.items():
        for r in rs:
            if r.key not in checked:
                checked[r.key], reqs[r.key] = r.check(), r
            if owner not in owners.setdefault(r.key, []):
                owners[r.key].append(owner)
    report = Report(cells=len(cells))
    for c in cells:
        for o in owners_of(c):
            report.cells_of[o] = report.cells_of.get(o, 0) + 1
    for key, res in checked.items():
        if res.missing:
            report.missing.append(Missing(reqs[key], res, owners[key]))
        elif res.note:
            report.notes.append(f"note: {', '.join(o[1] for o in owners[key] if o[1])}: {res.note}")
    report.notes = list(dict.fromkeys(report.notes))
    report.blocked_owners = {o for m in report.missing for o in m.owners}
    report.blocked_cells = sum(report.blocks(c) for c in cells)
    return report


def describe(report: Report) -> dict[str, Any]:
    """The report as plain data (for tests and tools): missing items with owners, notes, blocked cells."""
    return {"cells": report.cells, "blocked": report.blocked_cells, "notes": list(report.notes),
            "missing": [{"what": m.requirement.what, "why": m.check.missing, "owners": [o[1] for o in m.owners]}
                        for m in report.missing]}
