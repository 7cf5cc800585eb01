"""IR-50 backbone, stages 1-3, as used by POSTER++ and QCS.

Module and parameter names follow the MS-Celeb-1M ``ir50.pth`` file (``input_layer.*``,
``body1.*``, ``body2.*``, ``body3.*``; each unit has ``shortcut_layer`` and ``res_layer``), so
that file loads without renaming. The fourth stage and the embedding head of the face
recognition network (``output_layer``) are never used by QCS and are not built here.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class BottleneckIR(nn.Module):
    """Improved-residual unit: ``y = res(x) + shortcut(x)``.

    ``res = BN → conv3×3 → PReLU → conv3×3(stride) → BN``; the shortcut is a strided identity
    (``MaxPool2d(1, stride)``) when the width is unchanged, else ``conv1×1(stride) → BN``.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        if in_channels == out_channels:
            self.shortcut_layer = nn.MaxPool2d(1, stride)
        else:
            self.shortcut_layer = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )
        self.res_layer = nn.Sequential(
            nn.BatchNorm2d(in_channels),
            nn.Conv2d(in_channels, out_channels, 3, 1, 1, bias=False),
            nn.PReLU(out_channels),
            nn.Conv2d(out_channels, out_channels, 3, stride, 1, bias=False),
            nn.BatchNorm2d(out_channels),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.res_layer(x) + self.shortcut_layer(x)


class IRBackbone(nn.Module):
    """Stages 1-3 of IR-50; returns the three stage outputs.

    The input is first resized to ``input_size``² with nearest interpolation, as the official
    code does, so a 224-pixel image is read at 112 pixels (every second pixel). Each stage
    halves the resolution: 112 → 56 (``channels[0]``) → 28 (``channels[1]``) → 14 (``channels[2]``).
    """

    def __init__(self, channels=(64, 128, 256), units=(3, 4, 14), input_size: int = 112):
        super().__init__()
        self.input_size = input_size
        self.input_layer = nn.Sequential(
            nn.Conv2d(3, channels[0], 3, 1, 1, bias=False),
            nn.BatchNorm2d(channels[0]),
            nn.PReLU(channels[0]),
        )
        widths = (channels[0], *channels)
        for stage, n in enumerate(units):
            cin, cout = widths[stage], widths[stage + 1]
            blocks = [BottleneckIR(cin, cout, 2)] + [BottleneckIR(cout, cout, 1) for _ in range(n - 1)]
            setattr(self, f"body{stage + 1}", nn.Sequential(*blocks))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        x = self.input_layer(F.interpolate(x, size=self.input_size))
        x1 = self.body1(x)
        x2 = self.body2(x1)
        return x1, x2, self.body3(x2)
