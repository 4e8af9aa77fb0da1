"""Adapters for the miniature world's three generators (bench/mini/): MiniSiT, MiniMeanFlow, MiniDistill.

Conventions (see mini_training/generators.py): images in [-1, 1], x_t = (1 - t) * x_data + t * noise,
t = 1 is noise; ``s.steps`` = N intervals on linspace(1, 0, N + 1); ``s.cfg`` = guidance scale w
(w == 1: no guidance). Label 10 is the null class.

- MiniSiT       velocity ODE, Euler (default) or Heun (2 evaluations per step except the last, which is
                Euler into t = 0). True CFG: cond and uncond rows in one batched forward of 2B rows.
                NFE/image = N (euler) or 2N - 1 (heun), doubled when w != 1.
- MiniMeanFlow  average-velocity jumps z_r = z_t - (t - r) u(z_t, r, t); inference CFG on u as above.
                NFE/image = N, doubled when w != 1.
- MiniDistill   one-step solution operator with w as a network input (trained on w in [1, 5]; other values
                are extrapolation): x0 = x_t - t * f(x_t, t, label, w). N > 1: jump to 0, re-noise to the next
                t with fresh per-sample noise, jump again. NFE/image = N for every w.

Randomness: only bench.noise.gaussian(s.seed, sample_ids, (3, 16, 16), stream=...), stream "mini/init" for
the initial noise and "mini/renoise/<k>" for the k-th re-noising, so images depend only on (seed, sample id).
Network forwards are batch-invariant on CPU (bench.mini.nets.MIN_ROWS), so images are bit-identical across
batch sizes.

The three adapters take no model options (an option given is an error naming it); ``weights`` is a manifest name
of bench/mini/weights or a ``.safetensors`` file with its config beside it (default: the shipped weights); any
other path is refused saying so (`bench.mini.weights.entry`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import torch
from safetensors.torch import load_file
from torch import nn

from bench import noise
from bench.mini import weights as mini_weights
from bench.mini.nets import MiniUNet, make_config
from bench.models.base import Generator, ModelSpec, SamplerSettings, to_uint8_nhwc
from bench.models.checkpoint import check_settings, class_inputs
from bench.options import NoOptions

NUM_CLASSES = 10
NULL_LABEL = 10
SHAPE = (3, 16, 16)
INIT_STREAM = "mini/init"


def renoise_stream(k: int) -> str:
    return f"mini/renoise/{k}"


class _MiniGenerator(Generator):
    """What the three mini adapters share: loading, weights identity, settings checks and the CFG forward."""
    Options = NoOptions
    weights_name: ClassVar[str] = ""            # shipped weights name in bench/mini/weights/manifest.json
    second_time: ClassVar[str | None] = None    # the network's second input ("r", "w") or none
    solvers: ClassVar[tuple[str, ...]] = ()

    def __init__(self) -> None:
        self.net: MiniUNet | None = None
        self.device = torch.device("cpu")
        self.config: dict[str, Any] = {}

    # ------------------------------------------------------------------ loading
    def _read(self, spec: ModelSpec) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        if spec.weights is None:
            return mini_weights.load(self.weights_name)
        path = Path(spec.weights)
        if path.suffix == ".safetensors":
            if not path.exists():
                raise FileNotFoundError(f"{self.__class__.__name__}: weights file {path} does not exist")
            cfg_path = next((p for p in (path.with_suffix(".json"), path.parent / "config.json") if p.exists()), None)
            if cfg_path is None:
                raise FileNotFoundError(f"{self.__class__.__name__}: no config beside {path} "
                                        f"(expected {path.with_suffix('.json').name} or config.json)")
            cfg = json.loads(cfg_path.read_text())
            cfg = cfg.get("config", cfg)     # a manifest entry or a bare config
            sd = {k: (v.float() if v.is_floating_point() else v) for k, v in load_file(str(path)).items()}
            return sd, cfg
        return mini_weights.load(spec.weights)     # a manifest name

    def load(self, spec: ModelSpec, device: torch.device) -> None:
        self.parse_options(spec.options)          # none accepted: refuse any key instead of ignoring it
        sd, cfg = self._read(spec)
        net_cfg = {k: v for k, v in cfg.items() if k in make_config()}
        if net_cfg.get("second_time") != self.second_time:
            raise ValueError(f"{self.__class__.__name__}: weights {spec.weights or self.weights_name!r} are a "
                             f"{cfg.get('kind', '?')!r} network (second input {net_cfg.get('second_time')!r}), "
                             f"this adapter needs second input {self.second_time!r}")
        # built on the meta device and given the file's tensors (strict: every parameter must be in the file), so
        # no random initialisation is computed only to be overwritten (~2-3 ms of a ~12 ms load, measured)
        with torch.device("meta"):
            net = MiniUNet(net_cfg)
        net.load_state_dict(sd, assign=True)
        self.device = torch.device(device)
        # channels-last: about 1.3-1.6x faster convolutions on CPU at these sizes (measured); the network puts its
        # input in the same layout
        self.net = net.to(self.device, memory_format=torch.channels_last).eval()
        for p in self.net.parameters():
            p.requires_grad_(False)
        self.config = cfg

    def weights_id(self, spec: ModelSpec) -> str:
        if spec.weights is None or not str(spec.weights).endswith(".safetensors"):
            return "sha256:" + mini_weights.entry(spec.weights or self.weights_name)["sha256"]
        return "sha256:" + mini_weights.sha256_file(Path(spec.weights))

    def requirements(self, spec: ModelSpec) -> list:
        """A ``.safetensors`` file given as weights; shipped weights (a manifest name) are checked on load."""
        from bench.preflight import weights
        if spec.weights is None or not str(spec.weights).endswith(".safetensors"):
            return []
        return [weights(spec.weights, "mini weights")]

    def networks(self) -> list[nn.Module]:
        return [self._require()]

    def _require(self) -> MiniUNet:
        if self.net is None:
            raise RuntimeError(f"{self.__class__.__name__}: call load() before generating")
        return self.net

    # ------------------------------------------------------------------ settings
    def _check(self, s: SamplerSettings) -> None:
        check_settings(self.__class__.__name__, s, self.solvers)

    @staticmethod
    def _guided(s: SamplerSettings) -> bool:
        return float(s.cfg) != 1.0

    def _inputs(self, labels: torch.Tensor, sample_ids: torch.Tensor,
                s: SamplerSettings) -> tuple[torch.Tensor, torch.Tensor]:
        self._check(s)
        labels, ids = class_inputs(self.__class__.__name__, labels, sample_ids, NUM_CLASSES, self.device)
        x = noise.gaussian(s.seed, ids, SHAPE, stream=INIT_STREAM, device=self.device)
        return labels, x

    def _cfg_forward(self, x: torch.Tensor, t: float, labels: torch.Tensor, w: float,
                     second: float | None = None) -> torch.Tensor:
        """Network output at (x, t[, second]) with CFG w: one forward of B rows (w == 1) or 2B rows."""
        net = self._require()
        b = x.shape[0]
        if w == 1.0:
            tt = torch.full((b,), t, device=x.device)
            sec = None if second is None else torch.full((b,), second, device=x.device)
            return net(x, tt, labels, sec)
        tt = torch.full((2 * b,), t, device=x.device)
        sec = None if second is None else torch.full((2 * b,), second, device=x.device)
        out = net(torch.cat([x, x]), tt, torch.cat([labels, torch.full_like(labels, NULL_LABEL)]), sec)
        cond, uncond = out[:b], out[b:]
        return uncond + w * (cond - uncond)


class MiniSiT(_MiniGenerator):
    """Mini flow-matching model (SiT's family): velocity ODE with Euler or Heun and true CFG."""
    family = "flow"
    version = "mini-sit-2"
    weights_name = "sit"
    second_time = None
    solvers = ("euler", "heun")
    guidance = "true CFG on the velocity with null class 10 (cfg 1 = none; 2 NFE per evaluation otherwise)"

    def nfe_per_image(self, s: SamplerSettings) -> int:
        self._check(s)
        per_eval = 2 if self._guided(s) else 1
        evals = s.steps if (s.solver or "euler") == "euler" else 2 * s.steps - 1
        return evals * per_eval

    def generate(self, labels: torch.Tensor, sample_ids: torch.Tensor, s: SamplerSettings) -> torch.Tensor:
        with torch.inference_mode():
            labels, x = self._inputs(labels, sample_ids, s)
            w, heun = float(s.cfg), (s.solver or "euler") == "heun"
            ts = torch.linspace(1, 0, int(s.steps) + 1).tolist()
            for k in range(s.steps):
                t, t_next = ts[k], ts[k + 1]
                v = self._cfg_forward(x, t, labels, w)
                x_euler = x + (t_next - t) * v
                if heun and k < s.steps - 1:
                    v2 = self._cfg_forward(x_euler, t_next, labels, w)
                    x = x + (t_next - t) * 0.5 * (v + v2)
                else:
                    x = x_euler
            return to_uint8_nhwc(x)


class MiniMeanFlow(_MiniGenerator):
    """Mini MeanFlow model: average-velocity jumps on linspace(1, 0, N + 1), optional inference CFG."""
    family = "meanflow"
    version = "mini-meanflow-2"
    weights_name = "meanflow"
    second_time = "r"
    solvers = ("jump",)
    guidance = "inference CFG on the average velocity with null class 10 (cfg 1 = none; 2 NFE per step otherwise)"

    def nfe_per_image(self, s: SamplerSettings) -> int:
        self._check(s)
        return s.steps * (2 if self._guided(s) else 1)

    def generate(self, labels: torch.Tensor, sample_ids: torch.Tensor, s: SamplerSettings) -> torch.Tensor:
        with torch.inference_mode():
            labels, z = self._inputs(labels, sample_ids, s)
            ts = torch.linspace(1, 0, int(s.steps) + 1).tolist()
            for k in range(s.steps):
                t, r = ts[k], ts[k + 1]
                u = self._cfg_forward(z, t, labels, float(s.cfg), second=r)
                z = z - (t - r) * u
            return to_uint8_nhwc(z)


class MiniDistill(_MiniGenerator):
    """Mini one-step student (SoFlow / iMF-like): guidance scale is a network input, 1 NFE per step."""
    family = "solution-operator"
    version = "mini-distill-2"
    weights_name = "distill"
    second_time = "w"
    solvers = ("jump-renoise",)
    guidance = "guidance scale fed to the network as an input, like iMF (1 NFE per step for every value)"

    def nfe_per_image(self, s: SamplerSettings) -> int:
        self._check(s)
        return s.steps

    def generate(self, labels: torch.Tensor, sample_ids: torch.Tensor, s: SamplerSettings) -> torch.Tensor:
        net = self._require()
        with torch.inference_mode():
            labels, x = self._inputs(labels, sample_ids, s)
            b = x.shape[0]
            w = torch.full((b,), float(s.cfg), device=self.device)
            ts = torch.linspace(1, 0, int(s.steps) + 1).tolist()
            x0 = x
            for k in range(s.steps):
                t = ts[k]
                if k > 0:
                    eps = noise.gaussian(s.seed, torch.as_tensor(sample_ids).reshape(-1).cpu(), SHAPE,
                                         stream=renoise_stream(k), device=self.device)
                    x = (1 - t) * x0 + t * eps
                x0 = x - t * net(x, torch.full((b,), t, device=self.device), labels, w)
            return to_uint8_nhwc(x0)
