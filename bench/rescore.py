"""`bench rescore`: set metrics recomputed from a stored cell's kept features (`bench.features`), without
generating a sample, and stored as new cells.

For each stored ok cell of a suite (keys made exactly as `bench run` makes them) and each requested metric, the
metric's accumulator is rebuilt from the features: ``acc = metric.accumulator(reference); acc.add_state(rows);
acc.result()``, with the suite's options of that metric updated by ``--set metric.option=value`` and the reference
set ``--reference`` (a dataset id of the suite, else a registered dataset; default: the cell's own). Only options
that act on the rows are accepted (KID subsets, bootstrap, precision/recall neighbourhood, ...): an option in
`EMBEDDING_OPTIONS` chooses the network or its input, which the features have fixed, and is refused; features
whose metric ``version_key`` differs from the metric's now (other weights, code) are refused per cell.

The new cell's key (`rescore_key`) is sha256 over canonical JSON of {schema `KEY_SCHEMA`, the source key, each
rescored metric's validated options and version_key, the reference set's content fingerprint}: it differs from the
source key always, and from another rescoring of the same cell whenever an option or the reference differs; the
same settings give the same key (a re-run replaces that cell). Rescoring with the suite's own settings reproduces
the stored values exactly (the rows are the ones the values were computed from, in the same order).

The new cell's row is the source's (suite, model, dataset, steps, cfg, ...; config gains ``rescore``); its values
are the rescored metrics' only; its timings the source's (the same images) with ``score_s`` the rescoring's; its
provenance says ``rescored_from`` <source key>. `bench.store.tidy` leaves such cells out unless asked.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field, replace
from typing import Any

from bench import features, provenance, registry
from bench.cell import Cell, canonical_json
from bench.metrics.base import numerics_mode
from bench.options import OptionsError
from bench.runner import Runner
from bench.store import WRITER_THREADS, ResultStore, StoreError

KEY_SCHEMA = "rescore-key-1"
# options that choose a metric's network, its weights or what it is fed: fixed by the kept features
EMBEDDING_OPTIONS = frozenset({"backend", "model", "processor", "pretrained", "tokenizer", "clamp", "batch_size",
                               "feature_extractor", "feature_extractor_weights_path", "feature_layer_fid",
                               "feature_layer_isc"})


class RescoreError(ValueError):
    """Bad rescore input (metric, option, reference): one line; the CLI exits 2."""


@dataclass
class RescoreReport:
    rescored: list[tuple[str, str]] = field(default_factory=list)     # (source key, new key)
    lines: list[str] = field(default_factory=list)                   # one per cell rescored
    problems: list[str] = field(default_factory=list)                # one per cell that could not be
    not_stored: int = 0                                              # cells of the suite not in the store


def parse_sets(items: list[str], metrics: list[str]) -> dict[str, dict[str, Any]]:
    """``metric.option=value`` items (value read as YAML: 100, 0.5, true, null) -> {metric: {option: value}}."""
    import yaml
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        name, eq, value = item.partition("=")
        metric, dot, option = name.partition(".")
        if not eq or not dot or not metric or not option:
            raise RescoreError(f"--set {item!r}: expected metric.option=value, e.g. fid_is_kid.kid_subsets=100")
        if metric not in metrics:
            raise RescoreError(f"--set {item!r}: metric {metric!r} is not among --metrics ({', '.join(metrics)})")
        if option in EMBEDDING_OPTIONS:
            raise RescoreError(f"--set {item!r}: {option!r} chooses the metric's network or its input, which the kept "
                               f"features fixed; rescore can change only what is computed from them")
        try:
            out.setdefault(metric, {})[option] = yaml.safe_load(value)
        except yaml.YAMLError as e:
            raise RescoreError(f"--set {item!r}: cannot read the value ({' '.join(str(e).split())})") from None
    return out


def rescore_key(source_key: str, options: dict[str, dict], versions: dict[str, str], reference: str) -> str:
    """The key of a cell rescored from ``source_key`` (see the module docstring)."""
    payload = {"schema": KEY_SCHEMA, "from": source_key, "metrics": options, "metric_versions": versions,
               "reference_fingerprint": reference}
    return hashlib.sha256(canonical_json(payload).encode()).hexdigest()


class Rescorer:
    """Rescore the stored cells of ``runner``'s suite (its store, cache, device, --limit) for ``metrics``."""

    def __init__(self, runner: Runner, metrics: list[str], reference: str | None = None,
                 sets: dict[str, dict[str, Any]] | None = None):
        self.runner, self.engine, self.suite = runner, runner.engine, runner.suite
        unknown = [m for m in metrics if m not in self.suite.spec.metrics]
        if not metrics or unknown:
            raise RescoreError(f"--metrics: {', '.join(map(repr, unknown)) or 'none given'}: not a metric of suite "
                               f"{self.suite.name!r} (its metrics: {', '.join(self.suite.spec.metrics)})")
        self.metrics, self.reference, self.sets = list(dict.fromkeys(metrics)), reference, sets or {}
        self.options: dict[str, dict] = {}
        for m in self.metrics:
            cls = registry.resolve("metric", m)
            try:
                self.options[m] = cls.validate_options({**self.suite.metric_options[m], **self.sets.get(m, {})})
            except OptionsError as e:
                raise RescoreError(f"--set: {m}: {e}") from None
        if reference is not None and reference not in {d.id for d in self.suite.spec.datasets}:
            try:
                registry.resolve("dataset", reference)
            except (KeyError, ValueError, LookupError) as e:
                raise RescoreError(f"--reference {reference!r}: neither a dataset id of suite {self.suite.name!r} "
                                   f"({', '.join(d.id for d in self.suite.spec.datasets)}) nor a registered "
                                   f"dataset ({' '.join(str(e).split())})") from None
        self.root = features.root_for(runner.db)

    def reference_cell(self, cell: Cell) -> Cell:
        """``cell`` with the reference set as its dataset (itself without ``--reference``)."""
        ref = self.reference
        if ref is None or ref == cell.dataset:
            return cell
        entry = next((d for d in self.suite.spec.datasets if d.id == ref), None)
        if entry is not None:
            return replace(cell, dataset=ref, dataset_source=entry.source_name,
                           dataset_options=dict(self.suite.dataset_options[ref]))
        return replace(cell, dataset=ref, dataset_source=ref, dataset_options={})

    def run(self) -> RescoreReport:
        report, runner = RescoreReport(), self.runner
        if not runner.db.is_file():                  # never create an empty store for a mistyped --db
            raise StoreError(f"{runner.db}: no such result store (run `bench run SUITE` first)")
        store = ResultStore(runner.db, threads=WRITER_THREADS)
        try:
            env = provenance.environment(runner.device, self.suite.spec.dtype, self.suite.spec.numerics)
            env["command"] = {"rescore": self.metrics, "reference": self.reference, "set": self.sets}
            run_id = store.begin_run(self.suite.name, self.suite.path, self.suite.sha256, env)
            status = "failed"
            try:
                for cell in runner.cells():
                    self._cell(store, run_id, cell, report)
                status = "ok" if report.rescored else "failed"
            finally:
                store.finish_run(run_id, status)
        finally:
            store.close()
        return report

    def _source_key(self, cell: Cell) -> str:
        adapter = registry.resolve("model adapter", cell.model.adapter)()
        return self.runner.key(cell, adapter, provenance.weights_id(adapter, cell.model))

    def _cell(self, store: ResultStore, run_id: str, cell: Cell, report: RescoreReport) -> None:
        where = f"{cell.model.id} / {cell.dataset} / steps={cell.steps} cfg={cell.cfg}" + \
            (f" {cell.solver}" if cell.solver else "")
        try:
            key = self._source_key(cell)
        except Exception as e:        # noqa: BLE001 - weights that cannot be identified: this cell only
            report.problems.append(f"{where}: cannot make the cell's key ({type(e).__name__}: {e})")
            return
        if not store.has(key):
            report.not_stored += 1
            return
        have = features.available(self.root, key)
        missing = [m for m in self.metrics if m not in have]
        if missing:
            report.problems.append(f"{where} (cell {key[:12]}): no kept features of {', '.join(missing)} in "
                                   f"{self.root / key}; run the suite with keep_features: true (stored cells: "
                                   f"bench run --overwrite always)")
            return
        t0 = time.perf_counter()
        try:
            values, scores, versions, ref_cell, ref_fp = self._compute(cell, key)
        except StoreError:
            raise
        except Exception as e:        # noqa: BLE001 - a metric or reference set that fails: this cell only
            report.problems.append(f"{where} (cell {key[:12]}): {type(e).__name__}: {' '.join(str(e).split())}")
            return
        new_key = rescore_key(key, self.options, versions, ref_fp)
        self._store(store, run_id, key, new_key, values, scores, versions, ref_cell, ref_fp, t0)
        report.rescored.append((key, new_key))
        shown = ", ".join(f"{k}={values[k][0]:.4g}" for k in values if values[k][4].ranked and "/" not in k)
        report.lines.append(f"{where}: {shown} (rescored from {key[:12]} -> {new_key[:12]})")

    def _compute(self, cell: Cell, key: str):
        """(values, per-sample scores, version keys, reference cell, reference fingerprint) of the requested
        metrics rebuilt from ``key``'s features against the reference set."""
        ref_cell = self.reference_cell(cell)
        metrics = self.engine.metrics(replace(cell, metrics=self.options))
        values, scores, versions = {}, {}, {}
        with numerics_mode(cell.numerics):
            reference = self.engine.dataset(ref_cell)
            for name in self.metrics:
                metric = metrics[name]
                state, meta = features.load(self.root, key, name)
                versions[name] = metric.version_key()
                if meta.get("version_key") != versions[name]:
                    raise RescoreError(f"the kept features of {name} were computed by {meta.get('version_key')!r}, "
                                       f"this metric is {versions[name]!r}")
                acc = metric.accumulator(reference)
                acc.add_state(features.as_add_state(state))
                desc = metric.describe()
                for k, v in acc.result().items():
                    values[k] = (v, name, metric.version, desc, metric.output(k))
                for row, stored in (getattr(metric, "per_sample", {}) or {}).items():
                    if row in state["rows"]:
                        scores[stored] = (state["ids"], state["rows"][row])
        return values, scores, versions, ref_cell, reference.fingerprint()

    def _store(self, store: ResultStore, run_id: str, key: str, new_key: str, values: dict, scores: dict,
               versions: dict, ref_cell: Cell, ref_fp: str, t0: float) -> None:
        """The rescored cell: the source's row, config + ``rescore``, provenance ``rescored_from``, the source's
        timings with the rescoring's ``score_s``; one transaction."""
        cur = store.con.execute("SELECT * FROM cells WHERE key = ?", [key])
        src = dict(zip([d[0] for d in cur.description], cur.fetchone()))
        spec = {"from": key, "metrics": self.metrics, "reference": ref_cell.dataset, "reference_fingerprint": ref_fp}
        config = {**_json(src["config"]), "metrics": self.options, "rescore": spec}
        paths = {name: str(features.path_for(self.root, key, name)) for name in self.metrics}
        prov = {**_json(src["provenance"]), "rescored_from": key, "note": f"rescored from features of {key}",
                "features": paths, "metrics": versions,
                "reference": {"dataset": ref_cell.dataset, "fingerprint": ref_fp}}
        timings = {name: (value, unit) for name, value, unit in store.con.execute(
            "SELECT name, value, unit FROM timings WHERE key = ?", [key]).fetchall()}
        seconds = time.perf_counter() - t0
        timings["score_s"] = (seconds, "s")
        row = {c: src[c] for c in ("suite", "model_id", "adapter", "family", "dataset", "steps", "cfg", "solver",
                                   "seed", "plan", "n")}
        row.update(run_id=run_id, status="ok", error=None, config=config, provenance=prov, seconds=seconds)
        store.write(new_key, row, values, timings, (), scores)


def _json(v) -> dict:
    return json.loads(v) if isinstance(v, str) else dict(v or {})



__all__ = ["EMBEDDING_OPTIONS", "KEY_SCHEMA", "RescoreError", "RescoreReport", "Rescorer", "parse_sets",
           "rescore_key"]
