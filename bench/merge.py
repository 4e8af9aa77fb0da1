"""`bench merge OUT IN...`: result stores into one, exactly, by content key (e.g. the parts of `bench run --part`).

Every cell of every input is copied into OUT with all its rows (``cells``, ``metrics`` including per-class rows,
``timings``, ``samples``, ``sample_scores``) and the ``runs`` rows its cells came from, and its kept features
(`bench.features`: ``features/<key>/`` beside the input) into the folder beside OUT, before the cell's rows.
Equal keys mean equal configuration, weights, data and metric code (`bench.cell.Cell.key`), so a key present in
two stores is the same measurement twice.

What a cell's *result* is, the thing compared: its status and n, every metric row (value, source, version,
options, declared output, seq), the counted timings `COUNTED` (NFE) and the kept samples (id, label, PNG bytes).
Measured wall-clock timings (latency, throughput, generate/score seconds, ``latency_shared``), ``seconds``,
``finished``, ``run_id`` and the provenance say when, where and how fast a result was measured: they travel with
the copy that is kept but never make two copies differ. Per-sample scores (``sample_scores``) and kept features are
the rows the metric values were computed from: they travel with the kept copy and are not compared (a store of
the previous release has none, and is the same measurement).

Rules for one key, over OUT's own copy first and then the inputs in command-line order:
- present once: copied;
- ok copies with one result: kept once (the first: OUT's own when it has one);
- an ok copy beats a failed one (as `bench run` re-runs failed cells); among failed copies only, the newest wins;
- ok copies with different results: a **conflict**, reported with the provenance of both; without ``prefer``
  none of it is written (OUT keeps what it had); ``prefer="first"``: the first ok copy wins; ``"newest"``: the
  latest finished (ties: the first).

Invariants (``tests/test_merge.py``):
- one transaction per input: a merge killed during an input leaves OUT as it was after the previous one, and
  running the same merge again finishes it (what is already in OUT is an identical copy, kept once);
- every input is checked before OUT is opened (a bad one: `StoreError`, one line, nothing written); inputs are
  never written: a schema-1 input is migrated (`bench.store`'s migration) in a temporary copy beside OUT, one of
  another version is refused;
- merging a store into itself, as the same file or as a copy, changes nothing.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Iterator, Sequence

from bench import features
from bench.store import CELL_TABLES, SCHEMA_VERSION, ResultStore, StoreError

COUNTED = ("nfe", "nfe_declared")      # timings that are counts, part of a result; the others are measurements
PREFER = ("newest", "first")
TABLES = ("cells", *CELL_TABLES)
SRC = "stepbench_merge_src"            # the alias an input is attached under


@dataclass
class Copy:
    """One store's copy of a key: where (0 = OUT, i = the i-th input), its status and when it finished."""
    source: int
    status: str
    finished: object


@dataclass
class Conflict:
    key: str
    what: str                     # suite / model / dataset / steps / cfg
    differs: str                  # what differs, e.g. "fid 12.3 vs 12.4"
    provenances: list[str]        # one line per distinct result, first copy of each
    resolution: str               # "not written (...)" or "kept ... (--prefer ...)"

    @property
    def resolved(self) -> bool:
        return not self.resolution.startswith("not written")

    def line(self) -> str:
        labels = "ABCDEFGH"
        provs = "; ".join(f"{labels[i % 8]} = {p}" for i, p in enumerate(self.provenances))
        return f"conflict {self.key[:12]} ({self.what}): {self.differs}; {provs}; {self.resolution}"


@dataclass
class InputReport:
    path: str
    copied: int = 0               # keys new to OUT
    replaced: int = 0             # keys whose copy in OUT this input's copy replaced (ok over failed, --prefer)
    identical: int = 0            # the same result already kept: kept once
    superseded: int = 0           # failed copies OUT or an earlier input has a better copy of
    conflicts: int = 0            # copies in conflict with another (resolved or not)
    runs: int = 0                 # runs rows copied
    note: str = ""                # why it was skipped
    migrated_from: int | None = None   # its schema version, when read through a migrated temporary copy

    def line(self) -> str:
        if self.note:
            return f"{self.path}: {self.note}"
        migrated = f" (schema {self.migrated_from}, migrated in a temporary copy)" if self.migrated_from else ""
        return (f"{self.path}{migrated}: {self.copied} cells copied, {self.replaced} replaced, {self.identical} "
                f"identical (kept once), {self.superseded} superseded, {self.conflicts} in conflict; {self.runs} runs")


@dataclass
class MergeReport:
    out: str
    inputs: list[InputReport] = field(default_factory=list)
    conflicts: list[Conflict] = field(default_factory=list)

    @property
    def unresolved(self) -> int:
        return sum(not c.resolved for c in self.conflicts)


def merge(out: str | Path, inputs: Sequence[str | Path], prefer: str | None = None) -> MergeReport:
    """Merge ``inputs`` into the store ``out`` (created when missing) by the rules of the module docstring."""
    if prefer not in (None, *PREFER):
        raise ValueError(f"prefer must be one of {PREFER} or None, got {prefer!r}")
    out = Path(out)
    report = MergeReport(str(out), [InputReport(str(p)) for p in inputs])
    with tempfile.TemporaryDirectory(prefix=".stepbench-merge-", dir=_existing_parent(out)) as tmp:
        paths = [_checked_input(Path(p), out, Path(tmp) / str(i), r)
                 for i, (p, r) in enumerate(zip(inputs, report.inputs))]
        with ResultStore(out) as store:
            _merge(store, paths, report, prefer)
    return report


def _existing_parent(path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    return str(path.parent)


def _checked_input(path: Path, out: Path, tmp: Path, rep: InputReport) -> Path | None:
    """The file to read an input from (a migrated temporary copy for schema 1), or None to skip it; raises
    `StoreError` (one line) for anything that is not a readable stepbench store of a version this one reads."""
    if path.exists() and out.exists() and path.samefile(out):
        rep.note = "is OUT itself: nothing to merge"
        return None
    with ResultStore(path, read_only=True) as st:       # refuses missing files, non-stores, newer schema versions
        version = st.version
    if version == SCHEMA_VERSION:
        return path
    tmp.mkdir()
    copy = tmp / path.name
    shutil.copyfile(path, copy)
    if path.with_name(path.name + ".wal").exists():
        shutil.copyfile(path.with_name(path.name + ".wal"), copy.with_name(copy.name + ".wal"))
    ResultStore(copy).close()                           # bench.store's migration, on the copy only
    rep.migrated_from = version
    return copy


def _merge(store: ResultStore, paths: list[Path | None], report: MergeReport, prefer: str | None) -> None:
    con = store.con
    main = con.execute("SELECT current_database()").fetchone()[0]
    here = '"' + main.replace('"', '""') + '"'
    copies: dict[str, list[Copy]] = {}
    for src, schema in _sources(con, here, paths):
        for key, status, finished in con.execute(f"SELECT key, status, finished FROM {schema}.cells").fetchall():
            copies.setdefault(key, []).append(Copy(src, status, finished))
    contested = [k for k, cs in copies.items() if sum(c.status == "ok" for c in cs) > 1]
    results: dict[tuple[int, str], Result] = {}
    if contested:
        for src, schema in _sources(con, here, paths):
            for key, res in _results(con, schema, contested, _label(src, paths, store.path)).items():
                results[(src, key)] = res
    writes: dict[int, list[str]] = {}
    for key, cs in copies.items():
        winner = _decide(key, cs, results, prefer, report)
        if winner is not None and winner.source != 0:
            writes.setdefault(winner.source, []).append(key)
        in_out = cs[0].source == 0
        for c in cs:
            if c.source == 0:
                continue
            rep = report.inputs[c.source - 1]
            if winner is not None and c is winner:
                if in_out:
                    rep.replaced += 1
                else:
                    rep.copied += 1
            elif c.status == "ok" and winner is not None and winner.status == "ok" and \
                    results[(c.source, key)].digest == results[(winner.source, key)].digest:
                rep.identical += 1
            elif c.status == "ok" and (winner is None or winner.status == "ok"):
                rep.conflicts += 1
            else:
                rep.superseded += 1
    for src, schema in _sources(con, here, paths):
        keys = writes.get(src, [])
        if keys:
            copied = _copy_features(Path(report.inputs[src - 1].path), store.path, keys)
            try:
                report.inputs[src - 1].runs = _write(con, schema, keys)
            except BaseException:
                for key in copied:                  # no features without their cell
                    shutil.rmtree(features.root_for(store.path) / key, ignore_errors=True)
                raise


@contextmanager
def _attached(con, path: Path) -> Iterator[str]:
    escaped = str(path).replace("'", "''")
    con.execute(f"ATTACH '{escaped}' AS {SRC} (READ_ONLY)")
    try:
        yield SRC
    finally:
        con.execute(f"DETACH {SRC}")


def _sources(con, here: str, paths: list[Path | None]) -> Iterator[tuple[int, str]]:
    """(0, OUT's schema), then (i, the i-th input attached) for each input not skipped."""
    yield 0, here
    for i, p in enumerate(paths, start=1):
        if p is not None:
            with _attached(con, p) as schema:
                yield i, schema


def _label(src: int, paths: list[Path | None], out: Path) -> str:
    return str(out) if src == 0 else str(paths[src - 1])


@dataclass
class Result:
    """A copy's result digest (per section) and what a conflict line shows of it."""
    sections: dict[str, str]
    metrics: dict[str, float]
    n: object
    what: str
    provenance: str

    @property
    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.sections, sort_keys=True).encode()).hexdigest()


def _results(con, schema: str, keys: list[str], label: str) -> dict[str, Result]:
    """The `Result` of each ok cell of ``keys`` in ``schema``."""
    con.execute("CREATE OR REPLACE TEMP TABLE merge_keys AS SELECT unnest(?::VARCHAR[]) AS key", [keys])
    pick = "key IN (SELECT key FROM merge_keys)"
    rows = con.execute(f"""
        SELECT c.key, c.n, c.suite, c.model_id, c.dataset, c.steps, c.cfg, c.solver, c.seed, c.run_id, c.finished,
               c.provenance, r.environment FROM {schema}.cells c LEFT JOIN {schema}.runs r USING (run_id)
        WHERE c.status = 'ok' AND c.{pick}""").fetchall()
    out: dict[str, Result] = {}
    hashes: dict[str, dict] = {}
    for key, n, suite, model, ds, steps, cfg, solver, seed, run_id, finished, prov, env in rows:
        what = f"{suite} / {model} / {ds} / steps={steps} cfg={cfg}" + (f" {solver}" if solver else "") + \
            f" seed={seed}"
        out[key] = Result({"n": repr(n)}, {}, n, what, _provenance(label, run_id, finished, prov, env))
        hashes[key] = {s: hashlib.sha256() for s in ("metrics", "counted", "samples")}
    queries = {
        "metrics": f"SELECT key, metric, value, source, source_version, options, higher_is_better, label, unit, fmt, "
                   f"seq FROM {schema}.metrics WHERE {pick} ORDER BY key, metric",
        "counted": f"SELECT key, name, value, unit FROM {schema}.timings WHERE {pick} AND list_contains(?, name) "
                   f"ORDER BY key, name",
        "samples": f"SELECT key, sample_id, label, sha256(png) FROM {schema}.samples WHERE {pick} "
                   f"ORDER BY key, sample_id",
    }
    for section, sql in queries.items():
        cur = con.execute(sql, [list(COUNTED)] if section == "counted" else [])
        while batch := cur.fetchmany(4096):
            for row in batch:
                if row[0] not in out:
                    continue
                hashes[row[0]][section].update(repr(row[1:]).encode() + b"\n")
                if section == "metrics":
                    out[row[0]].metrics[row[1]] = row[2]
    for key, res in out.items():
        res.sections.update({s: h.hexdigest() for s, h in hashes[key].items()})
    con.execute("DROP TABLE merge_keys")
    return out


def _provenance(label: str, run_id, finished, prov, env) -> str:
    def parsed(v):
        try:
            return json.loads(v) if isinstance(v, str) else (v or {})
        except ValueError:
            return {}
    prov, env = parsed(prov), parsed(env)
    bits = [f"{label} run {run_id}", f"finished {finished:%Y-%m-%d %H:%M:%S}" if finished else "unfinished"]
    device = env.get("device_name") or prov.get("device") or env.get("device")
    if device:
        bits.append(f"on {device}")
    if env.get("git_sha"):
        bits.append(f"git {str(env['git_sha'])[:10]}")
    if env.get("part"):
        bits.append(f"part {env['part']}")
    return " ".join(bits)


def _decide(key: str, cs: list[Copy], results: dict, prefer: str | None, report: MergeReport) -> Copy | None:
    """The copy OUT should hold for ``key`` (None: none of the contested copies; OUT keeps its own)."""
    oks = [c for c in cs if c.status == "ok"]
    if not oks:
        return max(cs, key=_when)              # the newest failed copy; ties: the first (max keeps the first)
    if len(oks) == 1:
        return oks[0]
    res = [results[(c.source, key)] for c in oks]
    distinct: list[int] = []                                            # index into oks of each distinct result
    for i, r in enumerate(res):
        if all(res[j].digest != r.digest for j in distinct):
            distinct.append(i)
    if len(distinct) == 1:
        return oks[0]
    if prefer == "first":
        winner, how = oks[0], "kept A (--prefer first)"
    elif prefer == "newest":
        winner = max(oks, key=_when)
        win = next(k for k, i in enumerate(distinct) if res[i].digest == res[oks.index(winner)].digest)
        how = f"kept {'ABCDEFGH'[win % 8]} (--prefer newest)"
    else:
        winner = oks[0] if oks[0].source == 0 else None
        how = ("not written (OUT keeps A; give --prefer newest|first to replace it)" if winner is not None else
               "not written (give --prefer newest|first to choose)")
    a, b = res[distinct[0]], res[distinct[1]]
    report.conflicts.append(Conflict(key, a.what, _differs(a, b), [res[i].provenance for i in distinct], how))
    return winner


def _when(c: Copy):
    return c.finished if c.finished is not None else datetime.min


def _differs(a: Result, b: Result) -> str:
    diffs = [f"{m} {a.metrics.get(m)!r} vs {b.metrics.get(m)!r}" for m in sorted(set(a.metrics) | set(b.metrics))
             if a.metrics.get(m) != b.metrics.get(m) and "/class/" not in m]
    if len(diffs) > 3:
        diffs = diffs[:3] + [f"+{len(diffs) - 3} more"]
    if a.n != b.n:
        diffs.insert(0, f"n {a.n} vs {b.n}")
    if diffs:
        return ", ".join(diffs)
    names = {"metrics": "metric rows (per-class values or declared outputs)", "counted": "counted NFE",
             "samples": "kept samples"}
    return ", ".join(names[s] for s in names if a.sections[s] != b.sections[s]) + " differ"


def _write(con, schema: str, keys: list[str]) -> int:
    """One input's winning cells into OUT, in one transaction; returns the runs rows copied."""
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute("CREATE OR REPLACE TEMP TABLE merge_keys AS SELECT unnest(?::VARCHAR[]) AS key", [keys])
        for table in (*CELL_TABLES, "cells"):                           # OUT's copy of a replaced key goes first
            con.execute(f"DELETE FROM {table} WHERE key IN (SELECT key FROM merge_keys)")
        for table in TABLES:
            copy_rows(con, schema, table)
        cols = _columns(con, "runs")
        runs = con.execute(f"""
            INSERT INTO runs ({cols}) SELECT {cols} FROM {schema}.runs
            WHERE run_id IN (SELECT run_id FROM {schema}.cells WHERE key IN (SELECT key FROM merge_keys))
              AND run_id NOT IN (SELECT run_id FROM runs)""").fetchone()[0]
        con.execute("DROP TABLE merge_keys")
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return int(runs)


def copy_rows(con, schema: str, table: str) -> None:
    """Copy ``table``'s rows of the keys in ``merge_keys`` from the attached input (inside `_write`'s
    transaction; a module function so a test can kill the process between tables)."""
    if not _has_table(con, schema, table):           # a previous release's input has no sample_scores
        return
    cols = _columns(con, table)
    con.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM {schema}.{table} "
                f"WHERE key IN (SELECT key FROM merge_keys)")


def _has_table(con, schema: str, table: str) -> bool:
    return bool(con.execute("SELECT count(*) FROM information_schema.tables WHERE table_catalog = ? AND "
                            "table_name = ?", [schema, table]).fetchone()[0])


def _copy_features(src_db: Path, out_db: Path, keys: list[str]) -> list[str]:
    """Copy the kept features of ``keys`` from beside ``src_db`` to beside ``out_db`` (each key's folder through a
    temporary folder and a rename, replacing OUT's own); returns the keys copied."""
    src, dst = features.root_for(src_db), features.root_for(out_db)
    if not src.is_dir() or (dst.is_dir() and src.samefile(dst)):
        return []
    copied = []
    for key in keys:
        if not features.available(src, key):
            continue
        dst.mkdir(parents=True, exist_ok=True)
        tmp = dst / f".{key}.{uuid.uuid4().hex[:8]}.tmp"
        shutil.copytree(src / key, tmp)
        shutil.rmtree(dst / key, ignore_errors=True)
        tmp.rename(dst / key)
        copied.append(key)
    return copied


def _columns(con, table: str) -> str:
    """OUT's columns of ``table`` (the input has the same ones: both are at `SCHEMA_VERSION`)."""
    return ", ".join(d[0] for d in con.execute(f"SELECT * FROM {table} LIMIT 0").description)


__all__ = ["merge", "MergeReport", "InputReport", "Conflict", "COUNTED", "PREFER", "StoreError"]
