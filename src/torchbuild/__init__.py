"""torchbuild: build PyTorch and its companion libraries from source into wheels."""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__"]
