"""Download and verify the weight files of frontalize (thin CLI around ``frontalize.weights.download``).

Examples::

    python scripts/download_weights.py                              # every group into ./pretrained_weights
    python scripts/download_weights.py --only liveportrait gfpgan   # some groups
    python scripts/download_weights.py --weights-dir /data/w --list # what is present / missing
    python scripts/download_weights.py --verification-table         # README table: what each file is checked against

Files without a published sha256 are trusted on first use: their size and sha256 are recorded in
``<weights root>/weights.lock.json`` when they are downloaded (or first verified) and every later load is checked
against that record. ``--force`` downloads again and replaces the records.

Exit codes: 0 ok, 1 network failure, 2 usage error, 3 a file failed verification.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):
    # Run as `python scripts/download_weights.py` from a checkout: make the package importable without an install.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from frontalize.errors import FrontalizeError
from frontalize.weights import (
    GROUPS,
    check_group,
    download_weights,
    file_status,
    get_weight,
    group_keys,
    resolve_weights_root,
    verification_table,
)

logger = logging.getLogger("download_weights")


def build_parser() -> argparse.ArgumentParser:
    """Argument parser of the download script."""
    parser = argparse.ArgumentParser(
        description="Download (or list) the weight files frontalize uses, verifying sizes and checksums."
    )
    parser.add_argument(
        "--weights-dir", default=None, help="weights root (default: $FRONTALIZE_WEIGHTS, else ./pretrained_weights)"
    )
    parser.add_argument(
        "--only",
        nargs="+",
        action="extend",
        metavar="GROUP",
        default=None,
        help=f"groups to fetch, space- or comma-separated (default: all): {', '.join(GROUPS)}",
    )
    parser.add_argument("--list", action="store_true", help="print a table of the files and their status; no download")
    parser.add_argument("--force", action="store_true",
                        help="download again even when files are present and intact, and record the new downloads "
                             "in weights.lock.json in place of the checksums trusted on first use")
    parser.add_argument("--verification-table", action="store_true",
                        help="print the Markdown table of what each file is verified against (as in README); no "
                             "download")
    verbosity = parser.add_mutually_exclusive_group()
    verbosity.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors; no progress bars")
    verbosity.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--debug", action="store_true", help="debug logging and full tracebacks on errors")
    return parser


def _selected_groups(parser: argparse.ArgumentParser, only: list[str] | None) -> list[str]:
    if not only:
        return list(GROUPS)
    names = [name for value in only for name in value.split(",") if name]
    try:
        return list(dict.fromkeys(check_group(name) for name in names))
    except FrontalizeError as error:
        parser.error(str(error))


def _configure_logging(args: argparse.Namespace) -> None:
    level = logging.DEBUG if (args.verbose or args.debug) else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s: %(message)s", stream=sys.stderr, force=True)


def _format_table(groups: list[str], root: Path) -> str:
    keys = list(dict.fromkeys(key for group in groups for key in group_keys(group)))
    rows = [("key", "group", "size", "status", "path")]
    for key in keys:
        spec = get_weight(key)
        size = f"{spec.size / 1e6:.1f} MB" if spec.size is not None else "?"
        rows.append((key, spec.group, size, file_status(key, root), str(root / spec.relpath)))
    widths = [max(len(row[col]) for row in rows) for col in range(4)]
    return (
        "\n".join(
            "  ".join(cell.ljust(width) for cell, width in zip(row[:4], widths, strict=True)) + "  " + row[4]
            for row in rows
        )
        + "\n"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the download script.

    Args:
        argv: arguments without the program name (default: ``sys.argv[1:]``).

    Returns:
        Exit code: 0 ok, 1 network failure, 2 usage error, 3 verification failed, 130 interrupted.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    groups = _selected_groups(parser, args.only)
    _configure_logging(args)
    root = resolve_weights_root(args.weights_dir)
    if args.verification_table:
        sys.stdout.write(verification_table())
        return 0
    if args.list:
        sys.stdout.write(_format_table(groups, root))
        return 0
    try:
        fetched = download_weights(groups, root, force=args.force, progress=not args.quiet)
    except FrontalizeError as error:
        if args.debug:
            logger.exception("download failed")
        else:
            logger.error("%s", error)
        return error.exit_code
    except KeyboardInterrupt:
        logger.error("interrupted; partial downloads are kept and resume on the next run")
        return 130
    logger.info(
        "done: %d file(s) downloaded; every file of %s is present and verified under %s",
        len(fetched),
        ", ".join(groups),
        root,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
