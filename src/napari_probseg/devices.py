"""Device choice shared by training, inference and the widgets."""
from __future__ import annotations

import torch


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        from .validation import OptionError

        raise OptionError("device 'cuda' was asked for but no CUDA GPU is available; use 'cpu' or 'auto'")
    return torch.device(name)


def cpu_supports_bf16() -> bool:
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except Exception:
        return False
