#!/usr/bin/env python
"""Run ``evaluate.py``'s ``main`` once in a fresh, light process and print its timings as one JSON line.

Why a separate process: the evaluator prepares images in a spawned child process when the recognizer holds the GIL
(dlib), and a spawned child re-imports the parent's ``__main__`` module. Run inside ``benchmark.py`` (whose module
imports torch and the benchmark code) that re-import costs seconds and CPU time that ``python evaluate.py`` never
pays; here ``__main__`` is as light as ``evaluate.py``. Interpreter start-up is not timed, like in-process runs.

Usage: ``python scripts/bench_eval_cli.py EVALUATE_ARGS...`` → last stdout line
``{"exit_code": …, "wall_s": …, "embedding_pass_s": …, "decoded": …, "embedded": …}`` (images decoded and
embeddings computed by the pass).
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any


def main(argv: list[str]) -> int:
    """Time ``frontalize.cli.evaluate.main(argv)`` and its embedding pass; print them as JSON."""
    from frontalize.cli import evaluate as cli
    from frontalize.evaluation import runner

    spent = {"embedding_pass_s": 0.0, "decoded": 0, "embedded": 0}
    original = runner.run_embedding_pass

    def timed_pass(*args: Any, **kwargs: Any) -> Any:
        began = time.perf_counter()
        try:
            store = original(*args, **kwargs)
        finally:
            spent["embedding_pass_s"] += time.perf_counter() - began
        spent["decoded"] += store.computed["decoded"]  # unique contents: byte-identical files count once
        spent["embedded"] += store.computed["embeddings"]
        return store

    runner.run_embedding_pass = timed_pass  # instrumentation only: same function, timed
    start = time.perf_counter()
    code = cli.main(argv)
    wall = time.perf_counter() - start
    sys.stdout.write(json.dumps({"exit_code": code, "wall_s": round(wall, 3), **spent,
                                 "embedding_pass_s": round(spent["embedding_pass_s"], 3)}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
