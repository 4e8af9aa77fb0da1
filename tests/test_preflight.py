"""Pre-flight (bench/preflight.py and the components' `requirements` hooks): before the store is opened, `bench run`
and `bench validate` say what each cell needs that is not on this machine (datasets, weights files, hub ids in the
local Hugging Face cache, metric weights, optional packages), grouped, with where to get it and where to put it;
the run exits 2 writing nothing, or with --keep-going runs the cells whose inputs are present. The network is
asked at most once per host, for at most `PROBE_S` seconds, and never with HF_HUB_OFFLINE set."""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench import preflight, registry
from bench.cli import main
from bench.data.locate import card_of
from bench.models.base import ModelSpec
from bench.suite import Suite

ROOT = Path(__file__).resolve().parent.parent
PAPER = ROOT / "suites" / "paper.yaml"
# what suites/paper.yaml takes from the Hugging Face cache (its header and the README list them)
PAPER_HUB = {
    "nyu-visionx/RAE-collections": ["DiTs/Dinov2/wReg_base/ImageNet256/DiTDH-XL/stage2_model.pt",
                                    "decoders/dinov2/wReg_base/ViTXL_n08/model.pt",
                                    "stats/dinov2/wReg_base/imagenet1k/stat.pt"],
    "nyu-visionx/Scale-RAE-Qwen1.5B_DiT2.4B": ["config.json", "model.safetensors"],
    "nyu-visionx/siglip2_decoder": ["siglip2_sop14_i224_web73M_ganw3_decXL.pt"],
    "stabilityai/stable-diffusion-3.5-large": ["model_index.json"],
    "black-forest-labs/FLUX.1-dev": ["model_index.json"],
    "stabilityai/sd-vae-ft-mse": ["config.json"],
    "openai/clip-vit-base-patch16": ["config.json"],
    "yuvalkirstain/PickScore_v1": ["config.json"],
    "laion/CLIP-ViT-H-14-laion2B-s32B-b79K": ["preprocessor_config.json"],
}
PAPER_WEIGHTS = ["sit/SiT-XL-2-256.pt", "meanflow/mf-b4.safetensors", "imf/iMF-XL-2.pth", "soflow/XL-2-cond.pt"]
INCEPTION = "weights-inception-2015-12-05-6726825d.pth"


# -- a machine's layout, built here ---------------------------------------------------------------------------------
def hub_put(cache: Path, repo: str, files: dict[str, bytes] | Path) -> Path:
    """A snapshot of ``repo`` in a Hugging Face cache folder (refs/main -> snapshots/<sha>/...), from file contents
    or by copying a folder; returns the snapshot folder."""
    import shutil
    d = cache / f"models--{repo.replace('/', '--')}"
    sha = hashlib.sha1(repo.encode()).hexdigest()
    snap = d / "snapshots" / sha
    if isinstance(files, Path):
        shutil.copytree(files, snap, dirs_exist_ok=True)
    else:
        for rel, data in files.items():
            (snap / rel).parent.mkdir(parents=True, exist_ok=True)
            (snap / rel).write_bytes(data)
    (d / "refs").mkdir(parents=True, exist_ok=True)
    (d / "refs" / "main").write_text(sha)
    return snap


def _jpeg(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (18, 24, 3), dtype=np.uint8)).save(path, quality=90)


def data_tree(root: Path, per_class: int = 2) -> Path:
    """The paper's three sets, two classes each, where their cards put them under $STEPBENCH_DATA."""
    val = root / card_of("imagenet-val").folder
    v2 = root / card_of("imagenet-v2").folder
    rl = root / card_of("relaionet").folder / "images"
    k = 0
    for y, (synset, name) in enumerate([("n01440764", "tench"), ("n01443537", "goldfish")]):
        for _ in range(per_class):
            k += 1
            _jpeg(val / synset / f"ILSVRC2012_val_{k:08d}.JPEG", k)
            _jpeg(v2 / str(y) / f"{k:04d}.jpeg", 100 + k)
            _jpeg(rl / name / f"{k:04d}.jpg", 200 + k)
    return root


@pytest.fixture
def machine(tmp_path, monkeypatch):
    """An empty machine: no $STEPBENCH_DATA / $STEPBENCH_WEIGHTS, empty Hugging Face and torch hub caches, offline."""
    import huggingface_hub.constants as hc
    for var in ("STEPBENCH_DATA", "STEPBENCH_WEIGHTS", "STEPBENCH_INCEPTION_WEIGHTS", "SIT_WEIGHTS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setattr(preflight, "_REACHABLE", {})
    return tmp_path


def fill_paper_machine(root: Path, monkeypatch) -> None:
    """Everything suites/paper.yaml needs, laid out as the README says (placeholder weights: the pre-flight reads
    one byte of each file, never the weights)."""
    monkeypatch.setenv("STEPBENCH_DATA", str(data_tree(root / "data")))
    weights = root / "weights"
    for rel in PAPER_WEIGHTS:
        (weights / rel).parent.mkdir(parents=True, exist_ok=True)
        (weights / rel).write_bytes(b"x")
    monkeypatch.setenv("STEPBENCH_WEIGHTS", str(weights))
    for repo, files in PAPER_HUB.items():
        hub_put(root / "hf", repo, {f: b"{}" for f in files})
    inception = root / "torch" / "hub" / "checkpoints" / INCEPTION
    inception.parent.mkdir(parents=True)
    inception.write_bytes(b"x")


def cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


# -- the paper suite on an empty machine ------------------------------------------------------------------------------
@pytest.mark.parametrize("offline", [False, True])
def test_paper_suite_on_an_empty_machine_exits_2_fast_naming_every_input_and_writes_nothing(tmp_path, offline):
    """The console entry, imports included: < 10 s, <= 15 lines, every dataset, model and metric named with where to
    get it, no store (not even its folder). Offline via HF_HUB_OFFLINE, or online with the hub unreachable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STEPBENCH_", "HF_", "SIT_"))}
    env.update(PYTHONPATH=str(ROOT), HF_HUB_CACHE=str(tmp_path / "hf"), TORCH_HOME=str(tmp_path / "torch"),
               HF_ENDPOINT="https://hub.invalid", **({"HF_HUB_OFFLINE": "1"} if offline else {}))
    db = tmp_path / "new" / "bench.duckdb"
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "bench.cli", "run", str(PAPER), "--db", str(db)], cwd=tmp_path,
                       capture_output=True, text=True, env=env, timeout=120)
    seconds = time.perf_counter() - t0
    lines = r.stderr.splitlines()
    assert r.returncode == 2 and "Traceback" not in r.stderr and r.stdout == "", r.stderr
    assert seconds < 10, f"{seconds:.1f} s"
    assert len(lines) <= 15, r.stderr
    assert not db.exists() and not db.parent.exists()
    assert lines[0].startswith("pre-flight: 96 of 96 cells lack inputs") and "nothing was run or written" in lines[0]
    suite = Suite.load(PAPER)
    for d in suite.spec.datasets:                     # once per dataset, with where it goes under $STEPBENCH_DATA
        [line] = [ln for ln in lines if ln.startswith(f"  dataset {d.id} ")]
        assert "$STEPBENCH_DATA" in line and card_of(d.id).folder in line
    for m in suite.spec.models:                       # every model, on a line of its own or a shared one
        assert sum(m.id in ln for ln in lines[1:]) >= 1, m.id
        assert sum(ln.startswith(f"  model {m.id} ") for ln in lines) == 1, m.id
    for rel in PAPER_WEIGHTS:
        assert sum(f"$STEPBENCH_WEIGHTS/{rel}" in ln for ln in lines) == 1, rel
    for repo in PAPER_HUB:                            # each hub id once, with the command that fetches it
        assert sum(f"huggingface-cli download {repo}" in ln for ln in lines) == 1, repo
    assert sum(INCEPTION in ln for ln in lines) == 1 and "metrics: " in r.stderr
    assert any(("HF_HUB_OFFLINE is set" if offline else "the hub is unreachable") in ln for ln in lines)


def test_validate_runs_the_same_checks_and_plan_only_skips_them(machine):
    code, out, err = cli("validate", str(PAPER))
    assert code == 2 and "96 cells" in out and err.startswith("pre-flight: 96 of 96 cells lack inputs"), err
    assert "model sit-xl2 (12 cells): SiT weights: $STEPBENCH_WEIGHTS is not set" in err
    code, out, err = cli("validate", str(PAPER), "--plan-only")
    assert (code, err) == (0, "") and "96 cells" in out


def test_validate_says_what_cfg_means_for_every_model(machine):
    code, out, _ = cli("validate", str(PAPER), "--plan-only")
    suite = Suite.load(PAPER)
    for m in suite.spec.models:
        cls = registry.resolve("model adapter", m.adapter)
        assert f"{m.id} ({m.adapter}): " in out and cls.guidance in out, m.id
    assert "guidance: sit-xl2 (sit): cfg = guidance scale w: true CFG" in out
    assert "guidance: rae-ditdh-xl (rae): cfg = guidance scale w: true CFG" in out


@pytest.mark.parametrize("name", registry.MODELS.names())
def test_every_adapter_with_a_cfg_axis_declares_what_cfg_means(name):
    cls = registry.resolve("model adapter", name)
    assert not cls.sweeps or cls.guidance, f"{name}: set Generator.guidance"


def test_the_paper_layout_passes_with_notes_for_a_partial_copy(machine, monkeypatch):
    fill_paper_machine(machine, monkeypatch)
    code, out, err = cli("validate", str(PAPER))
    assert (code, err) == (0, ""), err
    notes = [ln for ln in out.splitlines() if ln.startswith("note: ") and "its card" in ln]
    assert len(notes) == 3 and all("4 images (its card:" in ln or "lists" in ln for ln in notes), out
    assert "note: imagenet-val: the copy lists 4 images (its card: 50,000) in 2 classes (its card: 1,000)" in out


def test_keep_going_runs_the_cells_whose_inputs_are_present_and_lists_the_rest(machine, toy_suite_text):
    suite = machine / "s.yaml"
    suite.write_text(toy_suite_text(n=2, steps="[1]", cfg="[1.0]")
                     + f"  - {{id: gone, adapter: samples, weights: {machine / 'none.npz'}}}\n")
    db = machine / "out" / "b.duckdb"
    code, out, err = cli("run", str(suite), "--db", str(db), "-q")
    assert code == 2 and not db.parent.exists(), err
    assert err.splitlines()[1] == f"  model gone (1 cell): weights: {machine / 'none.npz'} does not exist; put it there"
    code, out, err = cli("run", str(suite), "--db", str(db), "-q", "--keep-going")
    assert code == 1, err                             # not every planned cell has a result
    assert "--keep-going: running the other 1, leaving out these:" in err and "model gone (1 cell)" in err
    assert "2 cells planned, 1 ran, 0 already stored, 0 failed, 1 left out (inputs missing" in out
    import bench
    assert list(bench.load(db)["model"]) == ["toy"]
    only = machine / "only.yaml"                      # nothing runnable: --keep-going refuses too
    only.write_text(toy_suite_text(n=2, steps="[1]", cfg="[1.0]").replace(
        "  - id: toy\n    adapter: toy\n", f"  - id: gone\n    adapter: samples\n    weights: {machine / 'none.npz'}\n")
        .replace("    steps: [1]\n    cfg: [1.0]\n", ""))
    code, out, err = cli("run", str(only), "--db", str(machine / "o" / "b.duckdb"), "-q", "--keep-going")
    assert code == 2 and "no cell has all its inputs, so nothing was run or written" in err
    assert not (machine / "o").exists()


def test_a_shared_requirement_is_probed_once_and_reported_once(machine):
    calls = []
    orig = preflight._probe_hub
    preflight._probe_hub = lambda *a: calls.append(a) or orig(*a)
    try:
        report = preflight.check(Suite.load(PAPER).expand())
    finally:
        preflight._probe_hub = orig
    repos = [a[0] for a in calls]
    assert repos.count("stabilityai/sd-vae-ft-mse") == 1 and len(repos) == len(set(repos))
    [vae] = [m for m in report.missing if "sd-vae-ft-mse" in m.check.missing]
    assert [o[1] for o in vae.owners] == ["sit-xl2", "meanflow-b4", "imf-xl2", "soflow-xl2"]
    assert report.blocked_cells == 96 and not report.ok


# -- probes ---------------------------------------------------------------------------------------------------------
def test_weights_probe_follows_resolve_weights(machine, monkeypatch):
    f = machine / "w" / "model.pt"
    f.parent.mkdir()
    f.write_bytes(b"x")
    assert preflight.weights(str(f), "w").check() == preflight.Check()
    assert preflight.weights(str(f.parent), "w", filename="model.pt").check() == preflight.Check()
    assert "has no other.pt" in preflight.weights(str(f.parent), "w", filename="other.pt").check().missing
    (machine / "empty").mkdir()
    assert preflight.weights(str(machine / "empty"), "w").check().missing == f"{machine / 'empty'} is an empty folder"
    assert preflight.weights(None, "w").check().missing.startswith("no weights given")
    assert preflight.weights("weights/none.pt", "w").check().missing == "weights/none.pt does not exist; put it there"
    monkeypatch.delenv("NO_SUCH_VAR_X", raising=False)
    got = preflight.weights("$NO_SUCH_VAR_X/sit/a.pt", "w").check().missing
    assert got == "$NO_SUCH_VAR_X is not set; put it at $NO_SUCH_VAR_X/sit/a.pt"
    monkeypatch.setenv("NO_SUCH_VAR_X", str(machine / "w"))
    assert preflight.weights("$NO_SUCH_VAR_X/model.pt", "w").check() == preflight.Check()
    # hub ids: the local cache only
    import huggingface_hub.constants as hc
    hub_put(Path(hc.HF_HUB_CACHE), "org/name", {"sub/f.pt": b"x"})
    assert preflight.weights("org/name", "w").check() == preflight.Check()
    assert preflight.weights("hf://org/name/sub/f.pt", "w").check() == preflight.Check()
    assert preflight.weights("org/name", "w", filename=("sub/f.pt",)).check() == preflight.Check()
    miss = preflight.weights("org/name", "w", filename=("sub/f.pt", "g.pt", "h.pt")).check()
    assert miss.hub and miss.missing == "org/name (g.pt, h.pt) is not in the Hugging Face cache: " \
                                        "`huggingface-cli download org/name g.pt h.pt`"
    assert preflight.weights("org/other", "w", revision="v2").check().missing.endswith(
        "`huggingface-cli download org/other --revision v2`")


def test_an_unreadable_file_is_missing(machine, monkeypatch):
    f = machine / "w.pt"
    f.write_bytes(b"x")
    real_open = open

    def guarded(p, *a, **k):          # the tests run as root, for whom chmod 000 changes nothing
        if str(p) == str(f):
            raise PermissionError(13, "denied")
        return real_open(p, *a, **k)
    monkeypatch.setattr("builtins.open", guarded)
    assert preflight.weights(str(f), "w").check().missing == f"{f} is not readable (denied)"


def test_a_hung_network_costs_at_most_the_probe_time_once(machine, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    calls = []

    def hang(*a, **k):
        calls.append(a)
        time.sleep(30)
        raise OSError("timed out")
    monkeypatch.setattr(socket, "create_connection", hang)
    t0 = time.perf_counter()
    report = preflight.check(Suite.load(PAPER).expand())
    seconds = time.perf_counter() - t0
    hosts = [c[0] for c in calls]                     # once per host (the hub, torch-fidelity's download host),
    assert len(hosts) == len(set(hosts)) <= 2, hosts  # whatever the number of hub ids
    assert seconds < len(hosts) * preflight.PROBE_S + 3, seconds
    assert any(m.check.hub for m in report.missing) and "the hub is unreachable" in report.lines()[-1]


def test_hf_hub_offline_never_touches_the_network(machine, monkeypatch):
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: pytest.fail("the network was asked"))
    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: pytest.fail("the network was asked"))
    assert "HF_HUB_OFFLINE" in preflight.check(Suite.load(PAPER).expand()).lines()[-1]


def test_a_reachable_hub_makes_uncached_ids_notes_not_misses(machine, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(preflight, "reachable", lambda url, timeout=0: "hub" in url or "huggingface" in url)
    report = preflight.check(Suite.load(PAPER).expand())
    assert not any(m.check.hub for m in report.missing)
    assert any("downloaded from the hub on first use" in n for n in report.notes)


def test_packages_and_run_requirements(machine, monkeypatch, toy_suite_text):
    import importlib.util
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "ray" else real(n, *a))
    suite = machine / "s.yaml"
    suite.write_text(toy_suite_text(n=2, steps="[1]", cfg="[1.0]"))
    code, out, err = cli("run", str(suite), "--db", str(machine / "b.duckdb"), "-q", "--executor", "ray")
    assert code == 2 and "  run: the Ray executor: Python package 'ray' is not installed: pip install " \
                         "'stepbench[ray]'" in err and not (machine / "b.duckdb").exists()


# -- the hooks ------------------------------------------------------------------------------------------------------
def test_the_hooks_are_declared_with_defaults():
    from bench.data.base import Dataset
    from bench.metrics.base import Metric
    from bench.models.base import Generator
    from bench.models.toy import ToyFlow
    assert Generator.requirements is ToyFlow.requirements
    assert ToyFlow().requirements(ModelSpec(id="t", adapter="toy")) == []
    [r] = ToyFlow().requirements(ModelSpec(id="t", adapter="toy", weights="/nowhere/w.pt"))
    assert r.check().missing == "/nowhere/w.pt does not exist; put it there"
    assert Metric.requirements({}) == [] and registry.resolve("metric", "fid_is_kid").requirements(
        {"feature_extractor": "toy-extractor"}) == []
    assert registry.resolve("dataset", "mini-val").requirements("mini-val", {}) == []
    assert Dataset.listed.__doc__ and Dataset.inspect.__doc__
    assert registry.resolve("model adapter", "mini-sit")().requirements(ModelSpec(id="m", adapter="mini-sit")) == []


def test_a_hook_that_raises_is_a_named_miss_not_a_crash(machine, toy_suite_text, monkeypatch):
    from bench.models.toy import ToyFlow
    monkeypatch.setattr(ToyFlow, "requirements", lambda self, spec: 1 / 0)
    report = preflight.check(Suite.parse(toy_suite_text(n=2, steps="[1]", cfg="[1.0]"), "t.yaml").expand())
    assert report.lines()[1] == "  model toy (1 cell): requirements: ZeroDivisionError: division by zero"


def test_a_dataset_copy_with_the_wrong_layout_is_missing_with_what_to_do(machine, monkeypatch):
    (machine / "data" / card_of("imagenet-val").folder).mkdir(parents=True)
    monkeypatch.setenv("STEPBENCH_DATA", str(machine / "data"))
    cls = registry.resolve("dataset", "imagenet-val")
    [r] = cls.requirements("imagenet-val", cls.validate_options({}))
    got = r.check()
    assert got.missing.startswith("no synset folders or images in") and "ILSVRC2012_img_val.tar" in got.missing
    data_tree(machine / "data")
    assert r.check().missing is None and "4 images (its card: 50,000)" in r.check().note
