"""mlplab: fully-connected neural networks on CIFAR-10 in NumPy."""

from __future__ import annotations

__version__ = "0.1.0"
