"""Hostile files: pickled code in any weights file never runs, tampered weights are refused, hostile names are escaped
in reports, and suite paths cannot climb out of their base folder.

Every checkpoint-loading path in bench/ is covered (grep torch.load / safetensors / from_pretrained / np.load):
the mini world's manifest loader, the mini adapters' explicit .safetensors path, the mini classifier extractor,
fid_is_kid's feature-extractor weights (Inception: tests/test_fid_is_kid.py), the samples adapter's .npz, the
open_clip and transformers CLIP backends, the SD-VAE decoder (diffusers), the published-model adapters' checkpoint
readers (sit, meanflow/soflow, rae) and the Flax converter's .npz. Each payload would create a marker file when
unpickled; each test proves the load is refused and the marker never appears. (Other ``from_pretrained`` calls --
DINOv2, Qwen2, diffusers pipelines with ``use_safetensors=True`` -- go through the same transformers/diffusers
loaders proven here.)
"""

from __future__ import annotations

import json
import pickle
import shutil
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.cli import main
from bench.mini import weights as W
from bench.models.base import ModelSpec
from bench.store import ResultStore
from bench.suite import Suite, SuiteError, climbs_out

pytestmark = pytest.mark.filterwarnings("ignore:Detected pickle protocol")
ROOT = Path(__file__).resolve().parent.parent
REFUSED: list[str] = []           # every hostile input refused below (the count goes into the report)


class Payload:
    """Unpickling this creates ``marker``: proof that a loader ran pickled code."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture
def marker(tmp_path) -> Path:
    m = tmp_path / "PWNED"
    yield m
    assert not m.exists(), "a pickled payload ran"


def torch_payload(path: Path, marker: Path) -> Path:
    """A torch checkpoint (zip format) whose state dict holds pickled code."""
    torch.save({"weight": torch.zeros(2), "evil": Payload(marker)}, path)
    return path


def raw_payload(path: Path, marker: Path) -> Path:
    path.write_bytes(pickle.dumps({"weight": Payload(marker)}))
    return path


def refused(what: str, fn, match: str) -> Exception:
    """``fn`` raises, and its message holds ``match``: the refusal the test is about, not an unrelated crash."""
    with pytest.raises(Exception) as e:
        fn()
    assert match in str(e.value), str(e.value)
    REFUSED.append(what)
    return e.value


# -- the mini world's manifest loader -------------------------------------------------------------------------------
def _copy_shipped(tmp_path: Path, name: str = "sit") -> Path:
    d = tmp_path / "weights"
    d.mkdir()
    entry = W.entry(name)
    shutil.copyfile(W.WEIGHTS_DIR / entry["file"], d / entry["file"])
    (d / W.MANIFEST).write_text(json.dumps({name: entry}))
    return d


def test_manifest_sha256_mismatch_is_refused(tmp_path):
    d = _copy_shipped(tmp_path)
    sd, cfg = W.load("sit", d)                               # intact: loads (the check is not vacuous)
    assert sd and cfg
    f = d / W.entry("sit", d)["file"]
    data = bytearray(f.read_bytes())
    data[-1] ^= 0x01                                         # one bit in the last tensor's bytes
    f.write_bytes(bytes(data))
    err = refused("mini weights: one flipped bit", lambda: W.load("sit", d), "does not match the manifest")
    assert isinstance(err, W.WeightsError) and str(f) in str(err)
    f.write_bytes(f.read_bytes()[:-100])                     # truncated
    refused("mini weights: truncated file", lambda: W.load("sit", d), "does not match the manifest")


def test_pickle_with_a_matching_manifest_entry_is_still_refused(tmp_path, marker):
    d = tmp_path / "weights"
    d.mkdir()
    for kind, make in (("zip", torch_payload), ("raw", raw_payload)):
        f = make(d / f"evil-{kind}.safetensors", marker)
        (d / W.MANIFEST).write_text(json.dumps({"sit": {"file": f.name, "sha256": W.sha256_file(f), "config": {}}}))
        err = refused(f"mini weights: {kind} pickle under a valid sha256", lambda: W.load("sit", d),
                      "not a safetensors file")
        assert isinstance(err, W.WeightsError)


def test_bad_manifests_are_clear_errors(tmp_path):
    d = _copy_shipped(tmp_path)
    entry = W.entry("sit", d)
    for what, text, expect in (
            ("not JSON", "{nope", "unreadable weights manifest"),
            ("a list", "[1, 2]", "must be a JSON object"),
            ("file outside the folder", json.dumps({"sit": {**entry, "file": "../../etc/passwd"}}), "plain file name"),
            ("no sha256", json.dumps({"sit": {"file": entry["file"]}}), "needs 'file' and 'sha256'")):
        (d / W.MANIFEST).write_text(text)
        err = refused(f"mini manifest: {what}", lambda: W.load("sit", d), expect)
        assert isinstance(err, W.WeightsError)


# -- the mini adapters and the mini classifier -----------------------------------------------------------------
def test_mini_adapter_refuses_pickled_weights(tmp_path, marker):
    from bench.models.mini import MiniSiT
    cfg = W.entry("sit")["config"]
    for kind, make in (("zip", torch_payload), ("raw", raw_payload)):
        f = make(tmp_path / f"evil-{kind}.safetensors", marker)
        f.with_suffix(".json").write_text(json.dumps(cfg))
        spec = ModelSpec(id="evil", adapter="mini-sit", weights=str(f))
        refused(f"mini-sit adapter: {kind} pickle as .safetensors",
                lambda spec=spec: MiniSiT().load(spec, torch.device("cpu")), "deserializing header")
    good = tmp_path / "good.safetensors"                       # the same kind of file, clean, loads
    from safetensors.torch import save_file
    save_file(W.load("sit")[0], str(good))
    good.with_suffix(".json").write_text(json.dumps(cfg))
    MiniSiT().load(ModelSpec(id="good", adapter="mini-sit", weights=str(good)), torch.device("cpu"))
    pt = torch_payload(tmp_path / "evil.pt", marker)         # not .safetensors: a path, refused as one, never read
    spec = ModelSpec(id="evil", adapter="mini-sit", weights=str(pt))
    refused("mini-sit adapter: .pt checkpoint", lambda: MiniSiT().load(spec, torch.device("cpu")),
            "a path must be a .safetensors file")


def test_mini_classifier_and_fid_extractor_refuse_pickled_weights(tmp_path, marker):
    from bench.metrics.fid_is_kid import FidIsKid
    from bench.mini.metric_nets import load_classifier
    evil_st = torch_payload(tmp_path / "evil.safetensors", marker)
    refused("mini classifier: pickle as .safetensors", lambda: load_classifier(evil_st), "deserializing header")
    for f, why in ((evil_st, "deserializing header"),
                   (torch_payload(tmp_path / "evil.pth", marker), "not a plain tensor state dict"),
                   (raw_payload(tmp_path / "evil.bin", marker), "not a plain tensor state dict")):
        m = FidIsKid({"feature_extractor": "mini-classifier", "feature_extractor_weights_path": str(f)},
                     torch.device("cpu"), tmp_path / "cache")
        refused(f"fid_is_kid mini-classifier weights: {f.name}", lambda m=m: m.extractor, why)
    good = tmp_path / "good.safetensors"                       # a clean file of the same net loads
    from safetensors.torch import save_file
    save_file({k: v.contiguous() for k, v in load_classifier().state_dict().items()}, str(good))
    m = FidIsKid({"feature_extractor": "mini-classifier", "feature_extractor_weights_path": str(good)},
                 torch.device("cpu"), tmp_path / "cache")
    assert m.extractor is not None


# -- the samples adapter's .npz -------------------------------------------------------------------------------------
def test_samples_npz_with_pickled_objects_is_refused(tmp_path, marker):
    from bench.models.samples import Samples
    obj = np.empty(2, dtype=object)
    obj[0], obj[1] = Payload(marker), Payload(marker)
    np.savez(tmp_path / "objects.npz", arr_0=obj)
    np.savez(tmp_path / "labels.npz", arr_0=np.zeros((2, 4, 4, 3), np.uint8), arr_1=obj)
    raw_payload(tmp_path / "plain-pickle.npz", marker)
    for name in ("objects.npz", "labels.npz", "plain-pickle.npz"):
        spec = ModelSpec(id="s", adapter="samples", weights=str(tmp_path / name))
        refused(f"samples adapter: {name}", lambda spec=spec: Samples().load(spec, torch.device("cpu")), "pickle")
    ok = tmp_path / "ok.npz"                                  # a plain one loads (the refusal is not vacuous)
    np.savez(ok, arr_0=np.zeros((2, 4, 4, 3), np.uint8), arr_1=np.array([1, 2]))
    s = Samples()
    s.load(ModelSpec(id="s", adapter="samples", weights=str(ok)), torch.device("cpu"))
    assert s.images.shape == (2, 4, 4, 3)


# -- third-party loaders reached from bench/ ------------------------------------------------------------------------
def test_open_clip_backend_refuses_a_pickled_checkpoint(tmp_path, marker):
    import open_clip

    from bench.metrics.clip_score import make_backend
    cfg = {"embed_dim": 8, "vision_cfg": {"image_size": 16, "layers": 1, "width": 16, "patch_size": 8,
                                          "head_width": 8},
           "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 2, "layers": 1}}
    (tmp_path / "cfgs").mkdir()
    (tmp_path / "cfgs" / "stepbench-hostile-tiny.json").write_text(json.dumps(cfg))
    open_clip.add_model_config(tmp_path / "cfgs")
    ckpt = torch_payload(tmp_path / "evil.pt", marker)
    refused("open_clip backend: pickled checkpoint", lambda: make_backend(
        {"backend": "open_clip", "model": "stepbench-hostile-tiny", "pretrained": str(ckpt)}, torch.device("cpu")),
        "Weights only load failed")
    good = tmp_path / "good.pt"                                # the same model's plain state dict loads
    torch.save(open_clip.create_model("stepbench-hostile-tiny").state_dict(), good)
    assert make_backend({"backend": "open_clip", "model": "stepbench-hostile-tiny", "pretrained": str(good)},
                        torch.device("cpu")) is not None


def test_transformers_backend_refuses_a_pickled_checkpoint(tmp_path, marker):
    from transformers import CLIPConfig

    from bench.metrics.clip_score import _TransformersBackend
    d = tmp_path / "clip"
    CLIPConfig(text_config={"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
                            "num_attention_heads": 2, "vocab_size": 64, "max_position_embeddings": 8},
               vision_config={"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
                              "num_attention_heads": 2, "image_size": 16, "patch_size": 8},
               projection_dim=8).save_pretrained(d)
    torch_payload(d / "pytorch_model.bin", marker)
    refused("transformers CLIP backend: pickled pytorch_model.bin",
            lambda: _TransformersBackend(str(d), None, torch.device("cpu")), "Weights only load failed")


def test_sd_vae_decoder_refuses_a_pickled_checkpoint(tmp_path, marker):
    from diffusers import AutoencoderKL

    from bench.models.latent import LatentDecoder
    d = tmp_path / "vae"
    vae = AutoencoderKL(block_out_channels=(8,), down_block_types=("DownEncoderBlock2D",),
                        up_block_types=("UpDecoderBlock2D",), latent_channels=4, norm_num_groups=4, layers_per_block=1)
    vae.save_pretrained(d, safe_serialization=False)
    torch_payload(d / "diffusion_pytorch_model.bin", marker)
    refused("SD-VAE decoder (diffusers): pickled diffusion_pytorch_model.bin",
            lambda: LatentDecoder.load(str(d), torch.device("cpu")), "Unable to load weights from checkpoint file")
    clean = tmp_path / "vae-clean"                             # the same folder, saved as safetensors, loads
    vae.save_pretrained(clean, safe_serialization=True)
    assert LatentDecoder.load(str(clean), torch.device("cpu")) is not None


# the checkpoint reader of the published-model adapters (present as of this writing; a reader that is renamed or
# removed is skipped, so add its replacement here)
READERS = [("bench.models.checkpoint", "read_checkpoint", ())]          # the one reader every adapter uses


@pytest.mark.parametrize("module,fn,args", READERS, ids=[f"{m}.{f}" for m, f, _ in READERS])
def test_adapter_checkpoint_readers_refuse_pickled_code(module, fn, args, tmp_path, marker):
    import importlib
    try:
        read = getattr(importlib.import_module(module), fn)
    except (ImportError, AttributeError):
        pytest.fail(f"{module}.{fn} is not in this tree: a renamed reader must be listed in READERS, not skipped")
    for f in (torch_payload(tmp_path / "evil.pt", marker), raw_payload(tmp_path / "evil.pth", marker),
              torch_payload(tmp_path / "evil.safetensors", marker)):
        refused(f"{module}.{fn}: {f.name}", lambda f=f: read(f, *args), "cannot read")
    good = tmp_path / "good.pt"                               # a plain state dict loads (not a vacuous refusal)
    torch.save({"w": torch.ones(2)}, good)
    assert torch.equal(read(good, *args)["w"], torch.ones(2))


def test_flax_converter_npz_refuses_pickled_objects(tmp_path, marker):
    convert = pytest.importorskip("bench.convert")
    obj = np.empty(1, dtype=object)
    obj[0] = Payload(marker)
    np.savez(tmp_path / "tree.npz", **{"params/w": obj})
    refused("bench.convert.read_flax_tree: object .npz", lambda: convert.read_flax_tree(tmp_path / "tree.npz"),
            "pickle")


# -- hostile names in reports ---------------------------------------------------------------------------------------
XSS = ["<script>alert(1)</script>", "<img src=x onerror=alert(2)>", "\"><svg onload=alert(3)>",
       "'><iframe src=javascript:alert(4)>", "</pre></td></tr></table><script>alert(5)</script>"]


class Audit(HTMLParser):
    """Every tag, attribute and script of a page, as a browser would parse it."""

    def __init__(self):
        super().__init__()
        self.tags, self.scripts, self.attrs, self._in_script = [], [], [], False

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs += [(tag, k, v or "") for k, v in attrs]
        self._in_script = tag == "script"

    def handle_endtag(self, tag):
        self._in_script = False

    def handle_data(self, data):
        if self._in_script:
            self.scripts.append(data)


def _hostile_store(db: Path, suite: str) -> None:
    import io

    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(buf, format="PNG")
    with ResultStore(db) as st:
        run = st.begin_run(suite, XSS[0] + ".yaml", "0" * 64, {"git_sha": XSS[1], "device_name": XSS[2]})
        for i, model in enumerate(XSS[:3]):
            for j, dataset in enumerate((XSS[3],)):           # one dataset: each dataset costs a set of plots
                for steps in (1, 4):
                    cfg = {"model": {"id": model, "options": {"prompt": XSS[3]}}, "dataset": dataset,
                           "dataset_options": {"class_names": XSS, "prompt_template": XSS[4] + " {class_name}"}}
                    row = {"run_id": run, "suite": suite, "model_id": model, "adapter": "toy", "family": XSS[2],
                           "dataset": dataset, "steps": steps, "cfg": 1.0 + i, "solver": XSS[4], "seed": 42,
                           "plan": XSS[3], "n": 10, "status": "ok", "error": None, "config": cfg,
                           "provenance": {"weights": XSS[1], "class_name": XSS[0]}, "seconds": 1.0}
                    metrics = {k: (v, "src", XSS[0], {"note": XSS[1]}) for k, v in
                               (("fid", 10.0 + i + steps), ("is", 2.0 + j), ("clip_score", 20.0 + i),
                                ("pickscore", 1.0 + steps), ("kid", 0.1))}
                    st.write(f"k{i}{j}{steps}", row, metrics, {"nfe": (steps, "evals/image"),
                                                                "latency_s": (0.01 * steps, "s")},
                             [(0, 1, buf.getvalue())])
        st.write("failed", {**row, "status": "failed", "error": XSS[4] + XSS[1]}, {}, {})


@pytest.mark.parametrize("with_plots", [pytest.param(True, marks=pytest.mark.slow), False])
def test_report_escapes_hostile_names_everywhere(tmp_path, monkeypatch, with_plots):
    """The page, the Markdown and (slow: matplotlib) the SVG plots of a store full of hostile names."""
    suite = "<xss>suite</xss><script>alert(0)</script>"
    db = tmp_path / "b.duckdb"
    _hostile_store(db, suite)
    if not with_plots:
        from bench.report import plots
        monkeypatch.setattr(plots, "make_plots", lambda sdf, out, specs: ([], []))
    assert main(["report", "--db", str(db), "--out", str(tmp_path / "rep")]) == 0
    (d,) = [p for p in (tmp_path / "rep").iterdir() if p.is_dir()]
    assert d.resolve().parent == (tmp_path / "rep").resolve()       # the suite name made a folder inside --out
    html = (d / "index.html").read_text(encoding="utf-8")
    a = Audit()
    a.feed(html)
    assert a.tags.count("script") == 1 and all("alert(" not in s for s in a.scripts)
    assert not {"iframe", "svg", "xss"} & set(a.tags)
    bad_attrs = [(t, k, v) for t, k, v in a.attrs if k.startswith("on") or
                 (k in ("href", "src", "action", "formaction") and "javascript:" in v.lower())]
    assert not bad_attrs
    imgs = [v for t, k, v in a.attrs if t == "img" and k == "src"]
    assert imgs and all(v.startswith("data:image/png;base64,") or (d / v).is_file() for v in imgs)
    for x in XSS + [suite]:
        assert x not in html
    from html import escape
    assert escape(XSS[0]) in html and escape(suite) in html      # shown, as text
    md = (d / "leaderboard.md").read_text(encoding="utf-8")
    for x in XSS + [suite]:
        assert x not in md
    assert with_plots == any(d.glob("*.svg"))
    for svg in d.glob("*.svg"):                                   # plots: well-formed XML, no script, no handlers
        root = ET.parse(svg).getroot()
        for el in root.iter():
            assert not el.tag.endswith("script") and not el.tag.endswith("foreignObject"), svg
            assert not any(k.lower().startswith("on") for k in el.attrib), svg
    if not with_plots:
        REFUSED.extend(f"report: {x!r}" for x in XSS + [suite])


# -- paths in suites ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("value,climbs", [
    ("../data", True), ("..", True), ("a/../../b", True), ("./../b", True), ("a/b/../../../c", True),
    ("..\\..\\win", True), ("$STEPBENCH_DATA/../secret", True), ("${HOME}/../x", True), ("hf://../x", True),
    ("data/set", False), ("a/../b", False), ("./a", False), ("/abs/../anywhere", False), ("~/x/../../y", False),
    ("$STEPBENCH_DATA/imagenet", False), ("${STEPBENCH_DATA}", False), ("org/name", False), ("C:/x/../..", False),
    ("hf://org/name/file.pt", False), ("samples.npz", False), ("a..b/c", False), ("...", False)])
def test_climb_rule(value, climbs):
    assert climbs_out(value) is climbs


def _suite(extra_dataset: str = "", extra_model: str = "", metric_opts: str = "") -> str:
    return f"""suite: paths
samples: {{plan: per_class, n: 2}}
datasets:
  - {{id: mini-val, options: {{size: 20}}}}
{extra_dataset}
metrics:
  fid_is_kid: {{feature_extractor: toy-extractor{metric_opts}}}
models:
  - {{id: toy, adapter: toy, steps: [1], cfg: [1.0]}}
{extra_model}
"""


@pytest.mark.parametrize("text,key", [
    (_suite(extra_dataset="  - {id: f, source: imagefolder, options: {root: ../../outside}}"),
     "datasets[1].options.root"),
    (_suite(extra_dataset="  - {id: f, source: imagefolder, options: {root: data/../../x}}"),
     "datasets[1].options.root"),
    (_suite(extra_model="  - {id: s, adapter: samples, weights: ../samples.npz}"), "models[1].weights"),
    (_suite(extra_model="  - {id: s, adapter: samples, weights: '$STEPBENCH_DATA/../x.npz'}"), "models[1].weights"),
    (_suite(extra_model="  - {id: t, adapter: toy, steps: [1], cfg: [1.0], options: {vae: {path: ../vae}}}"),
     "models[1].options.vae.path"),
    (_suite(metric_opts=", feature_extractor_weights_path: ../../w.pth"),
     "metrics.fid_is_kid.feature_extractor_weights_path"),
])
def test_suite_paths_that_climb_out_are_refused(text, key, tmp_path):
    with pytest.raises(SuiteError) as e:
        Suite.parse(text, "p.yaml")
    # every problem of the file is reported (an unknown option may stand beside the path), one line each
    assert any(ln.startswith(f"p.yaml: {key}: relative path ") and "climbs out" in ln for ln in e.value.lines), \
        e.value.lines
    REFUSED.append(f"suite path: {key}")


def test_suite_paths_inside_or_absolute_are_accepted():
    for text in (_suite(extra_dataset="  - {id: f, source: imagefolder, options: {root: data/sets/../mine}}"),
                 _suite(extra_dataset="  - {id: f, source: imagefolder, options: {root: /abs/../anywhere}}"),
                 _suite(extra_model="  - {id: s, adapter: samples, weights: '$STEPBENCH_DATA/s.npz'}"),
                 _suite(extra_model="  - {id: s, adapter: samples, weights: ~/samples.npz}"),
                 _suite(metric_opts=", feature_extractor_weights_path: weights/pt_inception.pth")):
        assert Suite.parse(text, "p.yaml").count() >= 1


def test_weights_that_are_devices_are_refused_not_hashed_forever(tmp_path):
    from bench import provenance
    from bench.models.samples import Samples
    for dev in ("/dev/zero", "/dev/urandom"):
        if not Path(dev).exists():
            continue
        spec = ModelSpec(id="s", adapter="samples", weights=dev)
        refused(f"weights hash: {dev}", lambda spec=spec: provenance.weights_id(Samples(), spec),
                "not a regular file or folder")


def test_report_the_count():
    """Runs last in this module: the refusals above all ran (each matched its own message)."""
    if not REFUSED:
        pytest.skip("run with the rest of this module: it counts the refusals above")
    print(f"\nhostile inputs refused: {len(REFUSED)}")
    for r in REFUSED:
        print("  ", r)
    assert len(REFUSED) >= 25, len(REFUSED)
