"""3DDFA_V2's MobileNetV1 backbone (Guo et al., "Towards Fast, Accurate and Stable 3D Dense Face
Alignment", ECCV 2020), written for torch from the published architecture: a 3x3 stride-2 stem, 13
depthwise-separable blocks (conv_dw 3x3 + BN + ReLU, conv_sep 1x1 + BN + ReLU), global average pooling and
two linear heads (62 3DMM parameters, 136 landmark values). Widths are read from the checkpoint, so the
same class loads any width multiplier."""
from __future__ import annotations

import torch
from torch import nn

from ..core.errors import ModelError

#: where the weight layers come from: torch.nn headless. Inside ComfyUI its model management can hand in
#: comfy.ops (manual_cast, for VRAM management and dtype casting) through ``ops=`` (issue 11's bridge); the
#: layers are built through this namespace, never named directly, so that switch is one argument.
DEFAULT_OPS = nn

#: (block name, stride) in order; the channel counts come from the weights
BLOCKS = (("dw2_1", 1), ("dw2_2", 2), ("dw3_1", 1), ("dw3_2", 2), ("dw4_1", 1), ("dw4_2", 2), ("dw5_1", 1),
          ("dw5_2", 1), ("dw5_3", 1), ("dw5_4", 1), ("dw5_5", 1), ("dw5_6", 2), ("dw6", 1))


class DepthWiseBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, ops=DEFAULT_OPS) -> None:
        super().__init__()
        self.conv_dw = ops.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False)
        self.bn_dw = nn.BatchNorm2d(cin)
        self.conv_sep = ops.Conv2d(cin, cout, 1, 1, 0, bias=False)
        self.bn_sep = nn.BatchNorm2d(cout)

    def forward(self, x):
        x = torch.relu(self.bn_dw(self.conv_dw(x)))
        return torch.relu(self.bn_sep(self.conv_sep(x)))


class MobileNetV1(nn.Module):
    def __init__(self, widths: list[int], n_params: int = 62, n_landmarks: int = 136, ops=DEFAULT_OPS) -> None:
        super().__init__()
        self.conv1 = ops.Conv2d(3, widths[0], 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        for (name, stride), cin, cout in zip(BLOCKS, widths[:-1], widths[1:]):
            setattr(self, name, DepthWiseBlock(cin, cout, stride, ops))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc_param = ops.Linear(widths[-1], n_params)
        self.fc_lm = ops.Linear(widths[-1], n_landmarks) if n_landmarks else None

    @classmethod
    def from_checkpoint(cls, path) -> "MobileNetV1":
        """The network of a 3DDFA_V2 ``.pth`` checkpoint (a verified file: read with the safe loader; a
        ``state_dict`` entry and DataParallel's ``module.`` prefixes accepted), in eval mode on the CPU."""
        from .tflite_torch import load_state_dict

        ckpt = load_state_dict(path)
        state = ckpt.get("state_dict", ckpt)
        return cls.from_state_dict({k.removeprefix("module."): v for k, v in state.items()}).eval()

    @classmethod
    def from_state_dict(cls, state: dict) -> "MobileNetV1":
        try:
            widths = [state["conv1.weight"].shape[0]] + [state[f"{n}.conv_sep.weight"].shape[0] for n, _ in BLOCKS]
            n_lm = state["fc_lm.weight"].shape[0] if "fc_lm.weight" in state else 0
            net = cls(widths, state["fc_param.weight"].shape[0], n_lm)
            missing, unexpected = net.load_state_dict(state, strict=False)
        except (KeyError, RuntimeError) as exc:
            raise ModelError(f"not a 3DDFA_V2 MobileNetV1 checkpoint: {exc}") from None
        missing = [m for m in missing if not m.endswith("num_batches_tracked")]
        if missing or unexpected:
            raise ModelError(f"3DDFA_V2 checkpoint mismatch: missing {missing}, unexpected {unexpected}")
        return net

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        for name, _ in BLOCKS:
            x = getattr(self, name)(x)
        x = torch.flatten(self.avgpool(x), 1)
        lm = self.fc_lm(x) if self.fc_lm is not None else x[:, :0]
        return self.fc_param(x), lm
