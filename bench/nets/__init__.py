"""Network definitions (``nn.Module`` only, no file I/O, no adapters), with the parameter names and shapes of the
official checkpoints, so those load with ``load_state_dict(strict=True)``.

- dit.py        DiT / SiT backbone and its parts (shared by meanflow.py and soflow.py)
- meanflow.py   MeanFlow's DiT with a second time embedding
- soflow.py     SoFlow's DiT (solution operator) and its ``Soflow`` wrapper
- imf.py        iMF's in-context-conditioned transformer
- rae.py        RAE's DiT^DH stage-2 denoiser and ViT pixel decoder (and the shared DDT parts)
- scale_rae.py  Scale-RAE's diffusion head

The adapters that read checkpoints into these and sample with them are in bench/models/.
"""
