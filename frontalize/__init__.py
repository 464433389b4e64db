"""frontalize: batch face frontalization with a LivePortrait engine, and identity-preservation evaluation."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
