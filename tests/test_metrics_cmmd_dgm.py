"""CMMD and FD-DINOv2 (dgm-eval) on tiny random networks saved to a temp dir, each against an independent
transcription of its reference written here: google-research ``cmmd/`` (io_util's PIL crop and resize, distance.py's
biased MMD on full kernel matrices) and dgm-eval (torchvision ``Resize((224, 224), BICUBIC)`` + ``ToTensor`` +
``Normalize`` on PIL images, the hub DINOv2's position-embedding interpolation, ``fd.py``'s Frechet distance);
equal to 1e-6 relative. Also: identical sets give CMMD 0, batch-size and shard independence (bit for bit), one
reference pass per dataset x extractor, the dgm-eval FD equals torch-fidelity's FD when nothing is singular, and a
missing-weights error names the option."""

import math

import numpy as np
import pytest
import scipy.linalg
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision import transforms as TF

from bench.data.mini import MiniDataset
from bench.metrics import cmmd as cmmd_module
from bench.metrics.base import MetricError
from bench.metrics.cmmd import Cmmd, cmmd_preprocess
from bench.metrics.fd_dinov2_dgm import FdDinov2Dgm, frechet_distance, hub_position_embeddings
from tests.test_metrics_fid_extras import _feed, _gen
from tests.tiny_models import save_tiny_clip

CPU = torch.device("cpu")
BS = 16
CLIP_MEAN = np.array([0.48145466, 0.4578275, 0.40821073])   # scenic clip IMAGE_MEAN / IMAGE_STD
CLIP_STD = np.array([0.26862954, 0.26130258, 0.27577711])


# -- tiny networks ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_dinov2_518(tmp_path_factory):
    """A 2-layer random Dinov2Model with the real one's 518 px / patch 14 position grid (37 x 37), so a 224 px
    input interpolates it as with facebook/dinov2-large."""
    from transformers import Dinov2Config, Dinov2Model
    d = tmp_path_factory.mktemp("tiny-dinov2-518")
    torch.manual_seed(0)
    model = Dinov2Model(Dinov2Config(hidden_size=24, num_hidden_layers=2, num_attention_heads=2, mlp_ratio=2,
                                     patch_size=14, image_size=518))
    with torch.no_grad():       # weights large enough that the features depend on the images (init is tiny)
        for name, p in model.named_parameters():
            if "norm" not in name:
                p.normal_(0, 1.0 if "position" in name else 0.2)
    model.save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def tiny_clip_vision(tmp_path_factory):
    """A 2-layer random CLIPVisionModelWithProjection with a 48 px input (the 16 px images are resized up)."""
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection
    d = tmp_path_factory.mktemp("tiny-clip-vision")
    torch.manual_seed(0)
    CLIPVisionModelWithProjection(CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                                   num_attention_heads=2, image_size=48, patch_size=8,
                                                   projection_dim=16)).save_pretrained(d)
    return d


def _ref_images(ds):
    return torch.cat([x for x, _ in ds.reference_batches(64)])


def _chunked(fn, x):
    """``fn`` on chunks of exactly BS rows, the last zero-padded (the batch shape the metric uses)."""
    out = []
    for s in range(0, len(x), BS):
        c = x[s:s + BS]
        out.append(fn(torch.cat([c, c.new_zeros((BS - len(c), *c.shape[1:]))]))[:len(c)])
    return torch.cat(out)


# -- transcriptions of the references -----------------------------------------------------------------------------
def _cmmd_pixels(a: np.ndarray, size: int) -> np.ndarray:
    """io_util._read_image + embedding._clip_preprocess: centre crop, PIL bicubic, float32 / 255, CLIP mean/std."""
    im = Image.fromarray(a)
    w, h = im.size
    sq = min(w, h)
    top, left = (h - sq) // 2, (w - sq) // 2
    im = im.crop((left, top, left + sq, top + sq)).resize((size, size), resample=Image.BICUBIC)
    x = np.asarray(im).astype(np.float32) / 255.0
    return ((x - CLIP_MEAN.astype(np.float32)) / CLIP_STD.astype(np.float32)).astype(np.float32)


def _mmd_reference(x: np.ndarray, y: np.ndarray) -> float:
    """cmmd/distance.py ``mmd`` on full matrices (float64 here)."""
    gamma = 1 / (2 * 10 ** 2)
    xs, ys = np.diag(x @ x.T), np.diag(y @ y.T)
    k_xx = np.mean(np.exp(-gamma * (-2 * x @ x.T + xs[:, None] + xs[None, :])))
    k_xy = np.mean(np.exp(-gamma * (-2 * x @ y.T + xs[:, None] + ys[None, :])))
    k_yy = np.mean(np.exp(-gamma * (-2 * y @ y.T + ys[:, None] + ys[None, :])))
    return 1000 * (k_xx + k_yy - 2 * k_xy)


def _clip_embeddings(folder, images: torch.Tensor) -> np.ndarray:
    from transformers import CLIPVisionModelWithProjection
    model = CLIPVisionModelWithProjection.from_pretrained(str(folder)).eval()
    size = model.config.image_size

    def fn(chunk):
        x = torch.from_numpy(np.stack([_cmmd_pixels(a, size) for a in chunk.numpy()])).permute(0, 3, 1, 2)
        with torch.no_grad():
            e = model(pixel_values=x).image_embeds
        return e / torch.linalg.norm(e, dim=-1, keepdim=True)

    return _chunked(fn, images).double().numpy()


def _hub_interpolate_pos_encoding(pos, npatch, w, h, patch=14, offset=0.1):
    """dinov2/models/vision_transformer.py ``interpolate_pos_encoding`` (interpolate_antialias=False)."""
    N = pos.shape[1] - 1
    if npatch == N and w == h:
        return pos
    pos = pos.float()
    w0, h0, M = w // patch, h // patch, int(math.sqrt(N))
    grid = F.interpolate(pos[:, 1:].reshape(1, M, M, -1).permute(0, 3, 1, 2), mode="bicubic", antialias=False,
                         scale_factor=(float(w0 + offset) / M, float(h0 + offset) / M))
    return torch.cat((pos[:, 0].unsqueeze(0), grid.permute(0, 2, 3, 1).reshape(1, -1, pos.shape[-1])), dim=1)


def _dgm_features(folder, images: torch.Tensor) -> np.ndarray:
    """DINOv2Encoder.transform on PIL images, the hub model's forward (its position rule), float64 rows."""
    from transformers import Dinov2Model
    model = Dinov2Model.from_pretrained(str(folder)).eval()
    emb = model.embeddings
    emb.interpolate_pos_encoding = lambda e, height, width: _hub_interpolate_pos_encoding(
        emb.position_embeddings, e.shape[1] - 1, height, width)
    tf = TF.Compose([TF.Resize((224, 224), TF.InterpolationMode.BICUBIC), TF.ToTensor()])
    norm = TF.Normalize(np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225]))

    def fn(chunk):
        x = torch.stack([norm(tf(Image.fromarray(a).convert("RGB"))) for a in chunk.numpy()])
        with torch.no_grad():
            return model(pixel_values=x).pooler_output
    return _chunked(fn, images).double().numpy()


def _dgm_fd(reps1: np.ndarray, reps2: np.ndarray, eps=1e-6) -> float:
    """dgm_eval/metrics/fd.py ``compute_FD_with_reps`` (reps1: the real set)."""
    mu1, mu2 = np.mean(reps1, axis=0), np.mean(reps2, axis=0)
    sigma1, sigma2 = np.cov(reps1, rowvar=False), np.cov(reps2, rowvar=False)
    covmean = scipy.linalg.sqrtm(sigma1.dot(sigma2))
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = scipy.linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        covmean = covmean.real
    diff = mu1 - mu2
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


# -- CMMD ---------------------------------------------------------------------------------------------------------
def _equals_reference(tmp_path, cls, folder, rows, formula):
    """The metric's value on 24 generated vs 30 reference images == ``formula(rows(ref), rows(gen))``."""
    ref, (gen, labels) = MiniDataset("mini-val", 30), _gen(24)
    m = cls({"model": str(folder), "batch_size": BS}, CPU, tmp_path)
    ours = _feed(m.accumulator(ref), gen, labels, 10).result()[cls.name]
    assert ours == pytest.approx(formula(rows(folder, _ref_images(ref)), rows(folder, gen)), rel=1e-6)
    assert ours > 1e-3
    return m, ref


def test_cmmd_equals_the_reference_formula_and_is_zero_on_identical_sets(tmp_path, tiny_clip_vision):
    m, ref = _equals_reference(tmp_path, Cmmd, tiny_clip_vision, _clip_embeddings, _mmd_reference)
    same = _ref_images(ref)              # the reference images themselves, fed in other batches: exactly 0
    zero = _feed(m.accumulator(ref), same, ref.labels(), 7).result()["cmmd"]
    assert abs(zero) <= 1e-12, zero
    d = m.describe()
    assert d["input_size"] == 48 and "sigma=10" in d["kernel"] and d["weights"].startswith("sha256:")


def test_cmmd_preprocessing_crops_non_square_images_like_io_util():
    rng = np.random.default_rng(0)
    for h, w in ((20, 31), (33, 18), (16, 16)):
        a = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        ours = cmmd_preprocess(torch.from_numpy(a)[None], 48)[0].permute(1, 2, 0).numpy()
        np.testing.assert_array_equal(ours, _cmmd_pixels(a, 48))


def test_cmmd_loads_the_vision_tower_of_a_full_clip_checkpoint(tmp_path):
    from transformers import CLIPModel
    (tmp_path / "clip").mkdir()
    folder = save_tiny_clip(tmp_path / "clip")                 # a CLIPModel folder, as the hub repo is
    images, _ = _gen(6)
    m = Cmmd({"model": str(folder), "batch_size": 4}, CPU, tmp_path)
    ours = m.embeddings(images)
    x = torch.from_numpy(np.stack([_cmmd_pixels(a, 32) for a in images.numpy()])).permute(0, 3, 1, 2)
    with torch.no_grad():
        f = CLIPModel.from_pretrained(str(folder)).eval().get_image_features(pixel_values=x)
    f = getattr(f, "pooler_output", f)
    torch.testing.assert_close(ours, f / f.norm(dim=-1, keepdim=True), rtol=1e-5, atol=1e-6)


def test_a_checkpoint_missing_a_weight_is_refused_not_completed_at_random(tmp_path, tiny_clip_vision):
    from safetensors.torch import load_file, save_file
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_bytes((tiny_clip_vision / "config.json").read_bytes())
    weights = load_file(str(tiny_clip_vision / "model.safetensors"))
    del weights["visual_projection.weight"]
    save_file(weights, str(broken / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(MetricError, match="cmmd: option model: .* does not hold every weight .*visual_projection"):
        Cmmd({"model": str(broken)}, CPU, tmp_path).model


# -- FD-DINOv2 (dgm-eval) -----------------------------------------------------------------------------------------
def test_fd_dinov2_dgm_equals_dgm_eval_with_the_same_network(tmp_path, tiny_dinov2_518):
    m, _ = _equals_reference(tmp_path, FdDinov2Dgm, tiny_dinov2_518, _dgm_features, _dgm_fd)
    d = m.describe()
    assert "PIL bicubic" in d["resize"] and "0.1" in d["position_embeddings"] and d["singular_offset"] == 1e-6


def test_position_embeddings_follow_the_hub_model_not_transformers_resize():
    torch.manual_seed(1)
    pos = torch.randn(1, 1 + 37 * 37, 8)
    ours = hub_position_embeddings(pos, 224, 14)
    assert torch.equal(ours, _hub_interpolate_pos_encoding(pos, 16 * 16, 224, 224))
    grid = pos[:, 1:].reshape(1, 37, 37, 8).permute(0, 3, 1, 2)   # transformers' rule: size=(16, 16)
    by_size = F.interpolate(grid, size=(16, 16), mode="bicubic", align_corners=False).permute(0, 2, 3, 1)
    assert (ours[:, 1:] - by_size.reshape(1, 256, 8)).abs().max() > 1e-2     # the two rules really differ
    same = torch.randn(1, 1 + 16 * 16, 8)
    assert hub_position_embeddings(same, 224, 14) is same


def test_dgm_frechet_distance_equals_torch_fidelity_when_nothing_is_singular_and_falls_back(monkeypatch):
    from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric
    g = torch.Generator().manual_seed(0)
    real, gen = torch.randn(300, 16, generator=g), torch.randn(200, 16, generator=g) * 1.1 + 0.2
    ours = frechet_distance(real, gen)
    assert ours == pytest.approx(_dgm_fd(real.double().numpy(), gen.double().numpy()), rel=1e-12)
    tf = fid_statistics_to_metric(fid_features_to_statistics(real.double()), fid_features_to_statistics(gen.double()),
                                  verbose=False)["frechet_inception_distance"]
    assert ours == pytest.approx(tf, rel=1e-6)
    calls = []
    real_sqrtm = scipy.linalg.sqrtm

    def flaky(a):                       # the first product "singular": dgm-eval retries with 1e-6 on the diagonals
        calls.append(a)
        return np.full_like(a, np.nan) if len(calls) == 1 else real_sqrtm(a)

    monkeypatch.setattr(scipy.linalg, "sqrtm", flaky)
    fallback = frechet_distance(real, gen)
    assert len(calls) == 2
    monkeypatch.undo()
    r, q = real.double().numpy(), gen.double().numpy()
    s1, s2 = np.cov(r, rowvar=False) + 1e-6 * np.eye(16), np.cov(q, rowvar=False) + 1e-6 * np.eye(16)
    mu = r.mean(0) - q.mean(0)
    want = mu @ mu + np.trace(s1 - 1e-6 * np.eye(16)) + np.trace(s2 - 1e-6 * np.eye(16)) \
        - 2 * np.trace(real_sqrtm(s1 @ s2).real)
    assert fallback == pytest.approx(want, rel=1e-9)


def test_fd_dinov2_dgm_extras_use_its_features_and_its_distance(tmp_path, tiny_dinov2_518):
    ref = MiniDataset("mini-val", 30)
    gen, labels = _gen(40)
    on = {"density_coverage": True, "fd_inf": True, "fd_inf_points": 4}
    m = FdDinov2Dgm({"model": str(tiny_dinov2_518), "batch_size": BS, **on}, CPU, tmp_path)
    got = _feed(m.accumulator(ref), gen, labels, 10).result()
    real, fake = _dgm_features(tiny_dinov2_518, _ref_images(ref)), _dgm_features(tiny_dinov2_518, gen)
    d_rr = np.sqrt(((real[:, None] - real[None]) ** 2).sum(-1))         # clovaai prdc, k = 5
    d_rf = np.sqrt(((real[:, None] - fake[None]) ** 2).sum(-1))
    radii = np.sort(d_rr, axis=1)[:, 5]
    assert got["density_dinov2_dgm"] == pytest.approx((d_rf < radii[:, None]).sum(0).mean() / 5, rel=1e-6)
    assert got["coverage_dinov2_dgm"] == pytest.approx((d_rf.min(1) < radii).mean(), rel=1e-6)
    sizes = np.linspace(min(5000, max(40 // 10, 2)), 40, 4).astype("int32")   # dgm-eval compute_FD_infinity,
    rng = np.random.default_rng(2020)                                          # seeded (fd_inf_seed)
    fds = [_dgm_fd(real, fake[rng.choice(40, int(n), replace=False)]) for n in sizes]
    slope, intercept = np.polyfit(1.0 / sizes, fds, 1)
    assert got["fd_dinov2_dgm_inf"] == pytest.approx(intercept, rel=1e-6)
    assert got["fd_dinov2_dgm_inf_slope"] == pytest.approx(slope, rel=1e-6)
    assert got["fd_dinov2_dgm"] == pytest.approx(_dgm_fd(real, fake), rel=1e-6)
    assert FdDinov2Dgm.validate_options(on) == {"model": "facebook/dinov2-large", "batch_size": 64, **on}


# -- both ---------------------------------------------------------------------------------------------------------
def _metrics(tmp_path, clip, dino):
    return [Cmmd({"model": str(clip), "batch_size": BS}, CPU, tmp_path),
            FdDinov2Dgm({"model": str(dino), "batch_size": BS}, CPU, tmp_path)]


def test_values_identical_for_two_batch_sizes_and_merged_shards(tmp_path, tiny_clip_vision, tiny_dinov2_518):
    ref = MiniDataset("mini-val", 30)
    images, labels = _gen(40)
    for m in _metrics(tmp_path, tiny_clip_vision, tiny_dinov2_518):
        a = _feed(m.accumulator(ref), images, labels, 3).result()
        b = _feed(m.accumulator(ref), images, labels, 64).result()
        perm = torch.randperm(40, generator=torch.Generator().manual_seed(1))
        merged = m.accumulator(ref)
        for idx in perm.split(15):                           # shards in any order, via state() / add_state()
            merged.add_state(_feed(m.accumulator(ref), images[idx], labels[idx], 4, idx).state())
        assert a == b == merged.result(), m.name


def test_reference_computed_once_per_dataset_and_extractor(tmp_path, tiny_clip_vision, tiny_dinov2_518, monkeypatch):
    passes = []
    orig = MiniDataset.reference_batches
    monkeypatch.setattr(MiniDataset, "reference_batches", lambda self, bs: passes.append(self.name) or orig(self, bs))
    sums = []
    orig_sum = cmmd_module.kernel_sum
    monkeypatch.setattr(cmmd_module, "kernel_sum", lambda x, y, *a: sums.append((len(x), len(y))) or orig_sum(x, y, *a))
    val, v2 = MiniDataset("mini-val", 20), MiniDataset("mini-v2", 20)
    images, labels = _gen(12)
    for i, m in enumerate(_metrics(tmp_path, tiny_clip_vision, tiny_dinov2_518)):
        first = _feed(m.accumulator(val), images, labels, 12).result()
        assert _feed(m.accumulator(val), images, labels, 5).result() == first          # same object: no new pass
        again = _metrics(tmp_path, tiny_clip_vision, tiny_dinov2_518)[i]              # a new run: the disk cache
        assert _feed(again.accumulator(val), images, labels, 12).result() == first
        assert passes == ["mini-val"] and m.cache.computed == 1 and again.cache.computed == 0, m.name
        again.accumulator(v2)                                                         # another dataset: one pass
        assert passes == ["mini-val", "mini-v2"], m.name
        passes.clear()
    # CMMD's reference term sum k(y, y) is computed once per reference set (then read from the cache entry)
    assert sums.count((20, 20)) == 2 and sums.count((12, 12)) == 3 and sums.count((20, 12)) == 3


def test_missing_weights_and_bad_options_name_the_option(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    for cls, default in ((Cmmd, "openai/clip-vit-large-patch14-336"), (FdDinov2Dgm, "facebook/dinov2-large")):
        with pytest.raises(MetricError, match=f"{cls.name}: option model \\(.*{default}.*huggingface-cli download"):
            cls({}, CPU, tmp_path).version_key()
        req = cls.requirements(cls.validate_options({}))
        assert "option model" in req[0].what and req[0].check().missing
        with pytest.raises(MetricError, match=f"{cls.name}: modle: unknown option \\(did you mean 'model'\\?\\)"):
            cls({"modle": "x"}, CPU, tmp_path)
        with pytest.raises(MetricError, match="batch_size"):
            cls({"batch_size": 0}, CPU, tmp_path)
        assert cls.validate_options({}) == {"model": default, "batch_size": 64}
