"""Test helper: uint8 NHWC images as a torch Dataset of CHW tensors, the input torch-fidelity's calculate_metrics
takes, so our metrics can be compared with it on the very same images."""

import torch


class TorchFidelityImages(torch.utils.data.Dataset):
    def __init__(self, nhwc: torch.Tensor):
        self.x = nhwc.permute(0, 3, 1, 2).contiguous()

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i]
