#!/usr/bin/env python
"""Measure identity preservation of frontalized trees (thin entry point; see ``frontalize.cli.evaluate``)."""

from __future__ import annotations

import sys

from frontalize.cli.evaluate import build_parser, main

__all__ = ["build_parser", "main"]

if __name__ == "__main__":
    sys.exit(main())
