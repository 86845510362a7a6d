"""Background motion predictor: one affine transform per (reference, driving) pair.

State-dict keys are the authors' (`encoder.down_blocks.*`, `fc.*`); the checkpoints call this network
`bg_predictor`.
"""

from __future__ import annotations

import torch
from torch import nn

from lfdm.models.blocks import HourglassEncoder, hourglass_width


class BackgroundMotionPredictor(nn.Module):
    """(reference, driving) (B, C, H, W) each -> background affine (B, 3, 3), last row [0, 0, 1].

    The matrix maps driving-frame coordinates (x, y, 1) to reference-frame coordinates (a backward warp).
    Encoder of `num_blocks` DownBlocks on the channel-concatenated pair, spatial mean, then a linear layer to the
    six affine entries. The linear layer starts at the identity (weight 0, bias [1, 0, 0, 0, 1, 0]), as in the
    authors' code, so an untrained model sees a static background.
    """

    def __init__(self, *, num_channels: int, block_expansion: int, max_features: int, num_blocks: int):
        super().__init__()
        self.encoder = HourglassEncoder(
            block_expansion=block_expansion,
            in_channels=2 * num_channels,
            num_blocks=num_blocks,
            max_features=max_features,
        )
        self.fc = nn.Linear(hourglass_width(block_expansion, max_features, num_blocks), 6)
        with torch.no_grad():
            self.fc.weight.zero_()
            self.fc.bias.copy_(torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 0.0]))

    def forward(self, reference: torch.Tensor, driving: torch.Tensor) -> torch.Tensor:
        """reference, driving (B, C, H, W) in [0, 1] -> (B, 3, 3) affine (driving -> reference coordinates)."""
        features = self.encoder(torch.cat([reference, driving], dim=1))[-1].mean(dim=(2, 3))  # (B, C_max)
        rows = self.fc(features).view(-1, 2, 3)
        last_row = torch.tensor([0.0, 0.0, 1.0], device=rows.device, dtype=rows.dtype).expand(rows.shape[0], 1, 3)
        return torch.cat([rows, last_row], dim=1)
