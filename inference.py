#!/usr/bin/env python
"""Frontalize every face image of a folder (thin entry point; see ``frontalize.cli.inference``)."""

from __future__ import annotations

import sys

from frontalize.cli.inference import build_parser, main

__all__ = ["build_parser", "main"]

if __name__ == "__main__":
    sys.exit(main())
