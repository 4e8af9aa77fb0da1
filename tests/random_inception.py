"""torch-fidelity's inception-v3-compat built with random weights (its constructor would download the FID weights)."""

import torch


def random_inception(features: tuple[str, ...] = ("2048",), informative: bool = False, seed: int = 0):
    """The network with seeded random weights. ``informative``: variance-preserving init, because the default init
    shrinks activations to ~0 over its 90 layers and every image then gets nearly the same features."""
    import torch_fidelity.feature_extractor_inceptionv3 as inc
    orig, orig_load = inc.load_state_dict_from_url, inc.FeatureExtractorInceptionV3.load_state_dict
    inc.load_state_dict_from_url = lambda *a, **k: None
    inc.FeatureExtractorInceptionV3.load_state_dict = lambda self, sd: None
    try:
        torch.manual_seed(seed)
        net = inc.FeatureExtractorInceptionV3("inception-v3-compat", list(features))
    finally:
        inc.load_state_dict_from_url, inc.FeatureExtractorInceptionV3.load_state_dict = orig, orig_load
    if informative:
        with torch.no_grad():
            for mod in net.modules():
                if isinstance(mod, torch.nn.Conv2d):
                    torch.nn.init.kaiming_normal_(mod.weight, nonlinearity="relu")
                elif isinstance(mod, torch.nn.Linear):
                    torch.nn.init.normal_(mod.weight, std=mod.in_features ** -0.5)
    return net
