"""compress: make a PyTorch model small and fast on an edge device, and prove it."""

__version__ = "0.1.0"
