"""The sinusoidal position table of "Attention is all you need" (Vaswani et al. 2017, 3.5).

Transcribed from huggingface/transformers, src/transformers/models/distilbert/modeling_distilbert.py,
`_create_sinusoidal_embeddings` (the DeepSpeed ZeRO-3 wrapper `create_sinusoidal_embeddings`
around it is left out). Interleaved: even dims sin, odd dims cos, angles in float64 numpy.
"""

import numpy as np
import torch


def create_sinusoidal_embeddings(n_pos: int, dim: int, out: torch.Tensor):
    position_enc = np.array([[pos / np.power(10000, 2 * (j // 2) / dim) for j in range(dim)] for pos in range(n_pos)])
    out.requires_grad = False
    out[:, 0::2] = torch.FloatTensor(np.sin(position_enc[:, 0::2]))
    out[:, 1::2] = torch.FloatTensor(np.cos(position_enc[:, 1::2]))
    out.detach_()
    return out
