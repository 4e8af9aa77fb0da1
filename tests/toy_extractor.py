"""A tiny random-initialised torch-fidelity feature extractor for tests (registered as 'toy-extractor')."""

import torch
import torch.nn.functional as F
from torch import nn
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY, register_feature_extractor


class ToyExtractor(FeatureExtractorBase):
    def __init__(self, name, features_list, **kwargs):
        super().__init__(name, features_list)
        g = torch.Generator().manual_seed(0)
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.fc = nn.Linear(8 * 4 * 4, 16)
        self.head = nn.Linear(16, 10, bias=False)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)

    @staticmethod
    def get_provided_features_list():
        return ("feat", "logits_unbiased")

    @staticmethod
    def get_default_feature_layer_for_metric(metric):
        return {"isc": "logits_unbiased"}.get(metric, "feat")

    @staticmethod
    def can_be_compiled():
        return False

    @staticmethod
    def get_dummy_input_for_compile():
        return torch.zeros(1, 3, 16, 16, dtype=torch.uint8)

    def forward(self, x):
        x = x.float() / 127.5 - 1
        h = F.adaptive_avg_pool2d(torch.relu(self.conv(x)), 4).flatten(1)
        feat = torch.tanh(self.fc(h))
        out = {"feat": feat, "logits_unbiased": self.head(feat)}
        return tuple(out[f] for f in self.features_list)


def register():
    if "toy-extractor" not in FEATURE_EXTRACTORS_REGISTRY:
        register_feature_extractor("toy-extractor", ToyExtractor)


register()
