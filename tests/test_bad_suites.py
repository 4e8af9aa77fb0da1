"""Bad suites: every malformed suite is exit code 2 with one line per problem naming the file and the key, never a
traceback,
and never touches the store.

Two sources of malformed suites, each run through the real CLI entry (``bench.cli.main``) in-process, plus a few
through a subprocess:

- the corpus ``tests/fixtures/bad_suites/*.yaml`` (its first line says ``# expect: <text the error must hold>``;
  files that cannot carry that line are listed in ``EXPECT.txt``), plus cases that cannot be files in a repo
  (a directory, a missing file, a 0-byte file, an oversized file);
- hypothesis mutations of the two valid suites (``suites/mini.yaml`` and the toy suite of conftest): wrong types,
  unknown keys, unknown names, empty lists, out-of-range numbers (negative steps, NaN CFG, ...), missing keys,
  duplicate ids and YAML keys, huge sweeps, paths that climb out with '..', non-UTF-8 bytes, python/* tags,
  alias bombs, a top level that is not a mapping.

``TRIED`` counts every malformed suite fed to the CLI; the session summary prints it.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench import registry
from bench.cli import main
from bench.store import ResultStore
from bench.suite import MAX_CELLS, MAX_IMAGES, MAX_SEED, MAX_STEPS, Suite
from tests.conftest import TOY_SUITE

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "tests" / "fixtures" / "bad_suites"
MARKER = "stepbench-yaml-pwned"          # what the python/* tag payloads in the corpus would create
TRIED = {"corpus": 0, "generated": 0, "hypothesis": 0, "subprocess": 0}


def _expectations() -> dict[Path, str]:
    extra = dict(line.split(": ", 1) for line in (CORPUS / "EXPECT.txt").read_text().splitlines() if line.strip())
    out = {}
    for f in sorted(CORPUS.glob("*.yaml")):
        first = f.read_bytes().split(b"\n", 1)[0]
        if first.startswith(b"# expect: "):
            out[f] = first[len(b"# expect: "):].decode("utf-8")
        else:
            out[f] = extra[f.name]
    return out


EXPECT = _expectations()


def cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


def assert_refused(path: Path | str, expect: str, db: Path, kind: str | None, run: bool = True) -> str:
    """``bench validate`` and ``bench run`` both refuse ``path``: code 2, one line per problem, each naming the file
    (a mutation may cause more than one problem: all are reported), no store written."""
    before = _fingerprint(db)
    cmds = [["validate", str(path)]] + ([["run", str(path), "--db", str(db), "-q"]] if run else [])
    for cmd in cmds:
        code, out, err = cli(*cmd)
        lines = err.splitlines()
        assert code == 2, (cmd, code, out, err)
        assert lines and "Traceback" not in err and out == "", (cmd, out, err)
        assert all(ln.startswith(f"error: {path}: ") for ln in lines), lines
        assert len(set(lines)) == len(lines), lines                      # no problem reported twice
        assert any(expect in ln for ln in lines), (expect, lines)
    assert _fingerprint(db) == before, "a refused suite changed the store"
    if kind:
        TRIED[kind] += 1
    return "\n".join(lines)


def _fingerprint(db: Path):
    files = sorted(db.parent.glob(db.name + "*"))        # the store and any .wal beside it
    return [(f.name, hashlib.sha256(f.read_bytes()).hexdigest()) for f in files]


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """An existing store with one cell: refused suites must leave it byte-identical."""
    db = tmp_path_factory.mktemp("store") / "bench.duckdb"
    with ResultStore(db) as st_:
        st_.write("k", {"suite": "bad", "model_id": "toy", "status": "ok"}, {"fid": (1.0, "fid_is_kid", "v", {})}, {})
    return db


# -- the corpus ---------------------------------------------------------------------------------------------------
def test_corpus_is_substantial():
    assert len(EXPECT) >= 90


@pytest.mark.parametrize("path", sorted(EXPECT), ids=lambda p: p.stem)
def test_corpus_suite_is_refused(path, tmp_path, store, monkeypatch):
    monkeypatch.chdir(tmp_path)                      # where an unsafe YAML payload would drop its marker
    fresh = tmp_path / "results" / "bench.duckdb"
    assert_refused(path, EXPECT[path], fresh, "corpus")
    assert not fresh.exists() and not fresh.parent.exists(), "a refused suite created a store"
    assert_refused(path, EXPECT[path], store, None)
    assert not (tmp_path / MARKER).exists() and not (ROOT / MARKER).exists()


def test_files_that_cannot_live_in_the_corpus(tmp_path, store):
    cases = {}
    (tmp_path / "a_directory.yaml").mkdir()
    cases[tmp_path / "a_directory.yaml"] = "cannot read suite file (Is a directory)"
    cases[tmp_path / "missing.yaml"] = "cannot read suite file (No such file or directory)"
    (tmp_path / "zero_bytes.yaml").write_bytes(b"")
    cases[tmp_path / "zero_bytes.yaml"] = "<top level>: expected a mapping of suite keys, got NoneType"
    big = tmp_path / "oversized.yaml"
    big.write_text(TOY_SUITE.format(n=2, steps="[1]", cfg="[1.0]") + "description: '" + "x" * (1 << 20) + "'\n")
    cases[big] = "suite file is 1,048,"
    (tmp_path / "unreadable.yaml").symlink_to(tmp_path / "loop.yaml")
    (tmp_path / "loop.yaml").symlink_to(tmp_path / "unreadable.yaml")
    cases[tmp_path / "unreadable.yaml"] = "cannot read suite file"
    fresh = tmp_path / "results" / "bench.duckdb"
    for path, expect in cases.items():
        assert_refused(path, expect, fresh, "generated")
        assert_refused(path, expect, store, None)
    assert not fresh.parent.exists()


def test_valid_bases_pass(tmp_path):
    """The mutation bases are valid, so every refusal below is caused by its mutation."""
    for name, doc in BASES:
        p = tmp_path / f"{name}.yaml"
        p.write_text(yaml.safe_dump(doc, sort_keys=False))
        code, out, err = cli("validate", str(p), "--max-rows", "3")
        assert code == 0 and err == "", err


# -- hypothesis mutations of valid suites -------------------------------------------------------------------------
BASES = [("mini", yaml.safe_load((ROOT / "suites" / "mini.yaml").read_text())),
         ("toy", yaml.safe_load(TOY_SUITE.format(n=4, steps="[1, 2]", cfg="[1.0, 2.0]")))]
TOP_INT = ["batch_size", "keep_samples"]
TOP_STR = ["suite", "device", "dtype", "description"]
MODEL_KEYS = ["id", "adapter", "weights", "options", "steps", "cfg", "solver"]
TOP_KEYS = ["suite", "description", "seed", "batch_size", "device", "dtype", "samples", "keep_samples", "timing",
            "datasets", "metrics", "models"]

not_str = st.one_of(st.integers(), st.floats(allow_nan=False), st.booleans(), st.lists(st.integers(), max_size=2),
                    st.dictionaries(st.sampled_from("abc"), st.integers(), max_size=2))
not_int = st.one_of(st.text(max_size=6), st.floats(allow_nan=False), st.booleans(),
                    st.lists(st.text(max_size=3), min_size=1, max_size=2),
                    st.dictionaries(st.sampled_from("abc"), st.integers(), max_size=2))
not_number = st.one_of(st.text(max_size=6), st.booleans(), st.lists(st.integers(), max_size=2),
                       st.dictionaries(st.sampled_from("abc"), st.integers(), max_size=2))
not_list = st.one_of(st.text(max_size=6), st.booleans(), st.dictionaries(st.sampled_from("abc"), st.integers(),
                                                                         max_size=2))
name = st.text("abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12)


def _sweeping(doc) -> list[int]:
    return [i for i, m in enumerate(doc["models"]) if m["adapter"] != "real"]


def _dataset_dicts(doc) -> list[int]:
    return [i for i, d in enumerate(doc["datasets"]) if isinstance(d, dict)]


def op_unknown_key(doc, draw):
    where = draw(st.sampled_from(["top", "model", "dataset", "samples", "timing", "metric", "dataset_option"]))
    key = draw(name)
    if where == "top":
        key = draw(name.filter(lambda k: k not in TOP_KEYS))
        doc[key] = draw(st.integers())
        return f"{key}: unknown key"
    if where == "model":
        i = draw(st.sampled_from(range(len(doc["models"]))))
        key = draw(name.filter(lambda k: k not in MODEL_KEYS))
        doc["models"][i][key] = 1
        return f"models[{i}].{key}: unknown key"
    if where == "dataset":
        i = draw(st.sampled_from(_dataset_dicts(doc)))
        key = draw(name.filter(lambda k: k not in ("id", "source", "options")))
        doc["datasets"][i][key] = "x"
        return f"datasets[{i}].{key}: unknown key"
    if where in ("samples", "timing"):
        allowed = {"samples": ("plan", "n"), "timing": ("enabled", "warmup", "repeats", "throughput_repeats",
                                                        "throughput")}[where]
        key = draw(name.filter(lambda k: k not in allowed))
        doc.setdefault(where, {})[key] = 0
        return f"{where}.{key}: unknown key"
    if where == "metric":
        m = draw(st.sampled_from(sorted(doc["metrics"])))
        known = registry.resolve("metric", m).Options.model_fields
        key = draw(name.filter(lambda k: k not in known))
        doc["metrics"][m] = {**(doc["metrics"][m] or {}), key: 1}
        return f"metrics.{m}.{key}: unknown option"
    i = draw(st.sampled_from(_dataset_dicts(doc)))
    key = draw(name.filter(lambda k: k != "size"))
    doc["datasets"][i].setdefault("options", {})[key] = 1
    return f"datasets[{i}].options.{key}: unknown option"


def op_wrong_type(doc, draw):
    where = draw(st.sampled_from(["top_int", "top_str", "seed", "samples_n", "timing", "model_str", "step", "cfg",
                                  "axis", "lists", "metrics", "metric_option", "dataset_option", "dataset_id"]))
    if where == "top_int":
        k = draw(st.sampled_from(TOP_INT))
        doc[k] = draw(not_int)
        return k
    if where == "top_str":
        k = draw(st.sampled_from(TOP_STR))
        doc[k] = draw(not_str)
        return k
    if where == "seed":
        doc["seed"] = draw(st.one_of(st.text(max_size=4), st.floats(), st.booleans(),
                                     st.lists(st.text(max_size=2), min_size=1, max_size=2)))
        return "seed"
    if where == "samples_n":
        doc["samples"]["n"] = draw(not_int)
        return "samples.n"
    if where == "timing":
        k = draw(st.sampled_from(["warmup", "repeats", "throughput_repeats"]))
        doc.setdefault("timing", {})[k] = draw(not_int)
        return f"timing.{k}"
    if where == "model_str":
        i = draw(st.sampled_from(range(len(doc["models"]))))
        k = draw(st.sampled_from(["id", "adapter"]))
        doc["models"][i][k] = draw(not_str)
        return f"models[{i}].{k}"
    i = draw(st.sampled_from(_sweeping(doc)))
    m = doc["models"][i]
    if where == "step":
        j = draw(st.sampled_from(range(len(m["steps"]))))
        m["steps"][j] = draw(not_int)
        return f"models[{i}].steps[{j}]"
    if where == "cfg":
        j = draw(st.sampled_from(range(len(m["cfg"]))))
        m["cfg"][j] = draw(not_number)
        return f"models[{i}].cfg[{j}]"
    if where == "axis":
        k = draw(st.sampled_from(["steps", "cfg"]))
        m[k] = draw(st.one_of(not_list, st.integers(1, 9)))
        return f"models[{i}].{k}"
    if where == "lists":
        k = draw(st.sampled_from(["models", "datasets"]))
        doc[k] = draw(not_list)
        return k
    if where == "metrics":
        doc["metrics"] = draw(st.one_of(st.text(max_size=4), st.integers(), st.lists(st.integers(), max_size=2)))
        return "metrics"
    if where == "metric_option":
        opts = doc["metrics"]["fid_is_kid"]
        k = draw(st.sampled_from(["kid_subsets", "kid_subset_size"]))
        opts[k] = draw(not_number)
        return f"metrics.fid_is_kid.{k}"
    if where == "dataset_option":
        j = draw(st.sampled_from(_dataset_dicts(doc)))
        doc["datasets"][j]["options"] = {"size": draw(st.one_of(not_number, st.just(math.nan)))}
        return f"datasets[{j}].options.size"
    j = draw(st.sampled_from(_dataset_dicts(doc)))
    doc["datasets"][j]["id"] = draw(not_str)
    return f"datasets[{j}].id"


def op_empty_list(doc, draw):
    where = draw(st.sampled_from(["models", "datasets", "seed", "steps", "cfg", "solver"]))
    if where in ("models", "datasets", "seed"):
        doc[where] = []
        return f"{where}: must list at least one"
    i = draw(st.sampled_from(_sweeping(doc)))
    doc["models"][i][where] = []
    return f"models[{i}].{where}: must list at least one"


def op_out_of_range(doc, draw):
    where = draw(st.sampled_from(["steps", "cfg", "seed", "batch_size", "keep_samples", "n", "repeats"]))
    if where == "steps":
        i = draw(st.sampled_from(_sweeping(doc)))
        steps = doc["models"][i]["steps"]
        steps[draw(st.sampled_from(range(len(steps))))] = draw(st.one_of(st.integers(max_value=0),
                                                                         st.integers(min_value=MAX_STEPS + 1)))
        return f"models[{i}].steps: step counts must be >= 1"
    if where == "cfg":
        i = draw(st.sampled_from(_sweeping(doc)))
        cfg = doc["models"][i]["cfg"]
        cfg[draw(st.sampled_from(range(len(cfg))))] = draw(st.one_of(
            st.sampled_from([math.nan, math.inf, -math.inf]), st.floats(max_value=-1e-9, allow_infinity=False)))
        return f"models[{i}].cfg: guidance scales must be finite and >= 0"
    if where == "seed":
        doc["seed"] = draw(st.one_of(st.integers(max_value=-1), st.integers(min_value=MAX_SEED + 1)))
        return "seed: seeds must be"
    if where in ("batch_size", "keep_samples"):
        doc[where] = draw(st.integers(max_value=0 if where == "batch_size" else -1))
        return where
    if where == "n":
        doc["samples"]["n"] = draw(st.one_of(st.integers(max_value=0), st.integers(min_value=MAX_IMAGES + 1)))
        return "samples.n"
    doc.setdefault("timing", {})["repeats"] = draw(st.integers(max_value=0))
    return "timing.repeats"


def op_missing_key(doc, draw):
    where = draw(st.sampled_from(["suite", "datasets", "metrics", "models", "id", "adapter", "steps", "cfg"]))
    if where in ("suite", "datasets", "metrics", "models"):
        del doc[where]
        return f"{where}: required key is missing"
    if where in ("id", "adapter"):
        i = draw(st.sampled_from(range(len(doc["models"]))))
        del doc["models"][i][where]
        return f"models[{i}].{where}: required key is missing"
    i = draw(st.sampled_from(_sweeping(doc)))
    del doc["models"][i][where]
    return f"models[{i}].{where}: required for adapter"


def op_duplicate_id(doc, draw):
    if draw(st.booleans()):
        models = doc["models"]
        if len(models) == 1:
            models.append(copy.deepcopy(models[0]))
        i, j = draw(st.lists(st.sampled_from(range(len(models))), min_size=2, max_size=2, unique=True))
        models[j]["id"] = models[i]["id"]
        return f"models: duplicate model ids ['{models[i]['id']}']"
    ds = doc["datasets"]
    ds.append(draw(st.sampled_from([copy.deepcopy(ds[0]), ds[0]["id"] if isinstance(ds[0], dict) else ds[0]])))
    return "datasets: duplicate dataset ids"


def op_huge_sweep(doc, draw):
    i = draw(st.sampled_from(_sweeping(doc)))
    k = draw(st.integers(min_value=MAX_CELLS // 1000 + 1, max_value=400))
    doc["models"][i]["steps"] = list(range(1, 1001))
    doc["models"][i]["cfg"] = [float(c) for c in range(k)]
    return "models: the sweep expands to"


def op_unknown_name(doc, draw):
    where = draw(st.sampled_from(["adapter", "metric", "dataset"]))
    if where == "adapter":
        i = draw(st.sampled_from(range(len(doc["models"]))))
        doc["models"][i]["adapter"] = draw(name.filter(lambda n: n not in registry.MODELS))
        return f"models[{i}].adapter: unknown model adapter"
    if where == "metric":
        m = draw(name.filter(lambda n: n not in registry.METRICS))
        doc["metrics"][m] = {}
        return f"metrics.{m}: unknown metric"
    j = draw(st.sampled_from(_dataset_dicts(doc)))
    doc["datasets"][j] = {"id": draw(name.filter(lambda n: n not in registry.DATASETS))}
    return f"datasets[{j}].id: unknown dataset"


def op_path_climbs(doc, draw):
    inner, depth = draw(st.sampled_from([("", 0), ("a/", 1), ("a/b/../", 1), ("./a/b/", 2)]))
    up = "/".join([".."] * (depth + draw(st.integers(1, 3))))      # one more '..' than the folders it entered
    rel = f"{inner}{up}/{draw(name)}"
    if draw(st.booleans()):
        doc["models"].append({"id": "zz-samples", "adapter": "samples", "weights": rel + ".npz"})
        return f"models[{len(doc['models']) - 1}].weights: relative path"
    doc["datasets"].append({"id": "zz-folder", "source": "imagefolder", "options": {"root": rel}})
    return f"datasets[{len(doc['datasets']) - 1}].options.root: relative path"


def op_top_level(doc, draw):
    kind = draw(st.sampled_from(["list", "str", "int", "float"]))
    value = {"list": [doc], "str": "suite", "int": 42, "float": 1.5}[kind]
    return "<top level>: expected a mapping", value


OPS = [op_unknown_key, op_wrong_type, op_empty_list, op_out_of_range, op_missing_key, op_duplicate_id,
       op_huge_sweep, op_unknown_name, op_path_climbs, op_top_level]
SENTINEL = "ZZ-SENTINEL-ZZ"


def text_attack(doc, draw) -> tuple[str, bytes]:
    """Attacks on the file itself: non-UTF-8 bytes, python/* and unknown tags, alias bombs, duplicate YAML keys."""
    kind = draw(st.sampled_from(["bytes", "tag", "bomb", "duplicate"]))
    if kind == "duplicate":
        text = yaml.safe_dump(doc, sort_keys=False)
        k = draw(st.sampled_from([k for k in doc if not isinstance(doc[k], (dict, list))]))
        return f"duplicate key '{k}'", (text + yaml.safe_dump({k: doc[k]})).encode()
    if kind == "bytes":
        raw = yaml.safe_dump(doc, sort_keys=False).encode()
        pos = draw(st.integers(0, len(raw)))
        bad = draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\xe2\x82", b"\x80abc", b"\xed\xa0\x80", b"\xf8\x88"]))
        return "not UTF-8 text", raw[:pos] + bad + raw[pos:]
    # put the sentinel where a value goes, then swap in the attack
    top = draw(st.sampled_from(["suite", "seed", "batch_size", "models", "metrics"]))
    doc[top] = SENTINEL
    text = yaml.safe_dump(doc, sort_keys=False)
    if kind == "tag":
        tag = draw(st.sampled_from([f"!!python/object/apply:os.system ['touch {MARKER}']",
                                    f"!!python/object/new:pathlib.Path ['{MARKER}']", "!!python/name:os.system",
                                    "!!python/module:os", "!include other.yaml", "!!python/tuple [1, 2]"]))
        expect = "could not determine a constructor"
        return expect, text.replace(SENTINEL, tag).encode()
    levels = draw(st.integers(6, 9))
    anchors = ["l0: &l0 [x, x, x, x, x, x, x, x, x, x]"]
    anchors += [f"l{k}: &l{k} [" + ", ".join([f"*l{k - 1}"] * 10) + "]" for k in range(1, levels)]
    return "values once aliases are expanded", ("\n".join(anchors) + "\n" + text.replace(
        SENTINEL, f"*l{levels - 1}")).encode()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("mutations")


@settings(max_examples=int(os.environ.get('BAD_SUITES_EXAMPLES', 150)), deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_suites_are_refused(data, workdir, store):
    base_name, base = data.draw(st.sampled_from(BASES), label="base")
    doc = copy.deepcopy(base)
    if data.draw(st.integers(0, 4), label="file attack?") == 0:
        expect, raw = text_attack(doc, data.draw)
    else:
        op = data.draw(st.sampled_from(OPS), label="mutation")
        res = op(doc, data.draw)
        expect, doc = res if isinstance(res, tuple) else (res, doc)
        raw = yaml.safe_dump(doc, sort_keys=False, allow_unicode=True).encode()
    path = workdir / f"mutated-{base_name}.yaml"
    path.write_bytes(raw)
    fresh = workdir / "results" / "bench.duckdb"
    also_run = data.draw(st.integers(0, 2), label="also `bench run`?") == 0     # a third: run costs ~0.1 s
    line = assert_refused(path, expect, fresh, "hypothesis", run=also_run)
    assert not fresh.parent.exists()
    assert not (workdir / MARKER).exists() and not (ROOT / MARKER).exists()
    # and the library call gives the same lines
    with pytest.raises(Exception) as e:
        Suite.load(path)
    assert "\n".join(f"error: {ln}" for ln in str(e.value).splitlines()) == line


# -- the real console entry --------------------------------------------------------------------------------------
@pytest.mark.parametrize("stem", ["yaml_python_object_apply"])     # one: a fresh interpreter costs seconds
def test_console_run_refuses_without_touching_the_store(stem, tmp_path, store):
    path = CORPUS / f"{stem}.yaml"
    db = tmp_path / "results" / "bench.duckdb"
    r = subprocess.run([sys.executable, "-m", "bench.cli", "run", str(path), "--db", str(db)],
                       capture_output=True, text=True, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1 and r.stderr.startswith(f"error: {path}: ") and "Traceback" not in r.stderr
    assert EXPECT[path] in r.stderr and r.stdout == ""
    assert not db.parent.exists() and not (tmp_path / MARKER).exists()
    TRIED["subprocess"] += 1


def test_report_the_count():
    """Runs last in this module: the count of malformed suites tried above (printed with -s / in -rA output)."""
    total = sum(TRIED.values())
    if not total:
        pytest.skip("run with the rest of this module: it counts the malformed suites tried above")
    print(f"\nmalformed suites tried: {total} ({TRIED})")
    assert TRIED["corpus"] >= len(EXPECT), TRIED          # every corpus file was refused through the CLI
    assert TRIED["hypothesis"] >= 50 or not TRIED["hypothesis"], TRIED
