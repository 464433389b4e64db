"""Weights downloader: the only code in the toolkit that fetches weight files.

LivePortrait files (and the two InsightFace files its repo ships) come from the Hugging Face repo
``KwaiVGI/LivePortrait`` through ``huggingface_hub``; everything else from its public release URL through
``urllib``. Every file is written beside its destination first (``<dest>.part`` or a staging folder under the
root), verified against the registry (size, sha256, md5 where known), then moved into place with
``os.replace``, so a half-written or corrupt file never sits at a registry path. A file without a published
sha256 is compared with its trust-on-first-use record in ``<root>/weights.lock.json`` when it has one, and its
size and sha256 are recorded there when it is installed (``force`` replaces an existing record: an explicit
decision to trust the new download). Interrupted HTTP downloads
resume with a ``Range`` request. ``$FRONTALIZE_DOWNLOAD_MIRROR`` (or ``mirror=``) replaces the scheme and
host of the release URLs, keeping their paths (tests point it at a local server).
"""

from __future__ import annotations

import http.client
import logging
import os
import re
import shutil
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit

from tqdm import tqdm

from frontalize.errors import FrontalizeError, WeightsMissingError
from frontalize.weights.lock import LOCK_FILENAME, WeightsLock, needs_lock
from frontalize.weights.registry import WeightFile, check_group, get_weight, group_keys
from frontalize.weights.store import DigestCache, FileDigests, check_file, file_digests, verify_weights

logger = logging.getLogger(__name__)

ENV_MIRROR = "FRONTALIZE_DOWNLOAD_MIRROR"
STAGING_DIRNAME = ".downloads"
_CHUNK = 1 << 20
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")


class DownloadError(FrontalizeError):
    """A download could not be completed (network unreachable, HTTP error, interrupted transfer); exit code 1."""

    exit_code = 1


def resolve_url(url: str, mirror: str | None = None) -> str:
    """``url`` with its scheme and host replaced by ``mirror`` (``mirror`` or ``$FRONTALIZE_DOWNLOAD_MIRROR``)."""
    base = mirror if mirror is not None else os.environ.get(ENV_MIRROR, "")
    return base.rstrip("/") + urlsplit(url).path if base else url


def _unreachable(url: str, reason: object, targets: Iterable[Path]) -> DownloadError:
    host = urlsplit(url).netloc or url
    where = ", ".join(str(path) for path in targets)
    text = str(reason).rstrip(". ")
    return DownloadError(f"cannot reach {host}: {text}; are you offline? copy the files by hand to {where}")


def _open(url: str, offset: int, timeout: float) -> http.client.HTTPResponse:
    """GET ``url``, asking for the bytes from ``offset`` on when resuming."""
    headers = {"User-Agent": "frontalize-weights/1"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    response: http.client.HTTPResponse = urllib.request.urlopen(
        urllib.request.Request(url, headers=headers), timeout=timeout
    )
    return response


def _resume_offset(response: http.client.HTTPResponse, offset: int, part: Path) -> int:
    """Byte offset the response body starts at: ``offset`` for a matching 206, 0 when the server sends it all.

    Raises:
        DownloadError: a 206 for another range than asked (the partial file is removed; a rerun starts over).
    """
    if response.status == 206:
        match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
        if not offset or match is None or int(match.group(1)) != offset:
            part.unlink(missing_ok=True)
            raise DownloadError(f"{response.url}: server answered another byte range than requested; rerun")
        return offset
    if offset:
        logger.info("server did not honour the resume request; restarting the download from byte 0")
    return 0


def _expected_total(response: http.client.HTTPResponse, start: int) -> int | None:
    length = response.headers.get("Content-Length")
    return start + int(length) if length is not None and length.isdigit() else None


def _copy_body(response: IO[bytes], handle: IO[bytes], bar: tqdm) -> None:
    while chunk := response.read(_CHUNK):
        handle.write(chunk)
        bar.update(len(chunk))


def _stream(url: str, part: Path, *, progress: bool, timeout: float, targets: list[Path]) -> None:
    """Bring ``part`` to the full content of ``url``, resuming from its current size when it exists.

    Raises:
        DownloadError: unreachable host, HTTP error, or a transfer that stopped early (``part`` is kept).
    """
    offset = part.stat().st_size if part.is_file() else 0
    try:
        response = _open(url, offset, timeout)
    except urllib.error.HTTPError as error:
        if error.code == 416 and offset:
            # The range starts at or past the end: the part is either complete or stale.
            reported = error.headers.get("Content-Range", "").rpartition("/")[2]
            if reported.isdigit() and int(reported) == offset:
                return
            part.unlink()
            _stream(url, part, progress=progress, timeout=timeout, targets=targets)
            return
        raise DownloadError(f"download of {url} failed: HTTP {error.code} {error.reason}") from error
    except (urllib.error.URLError, OSError) as error:
        raise _unreachable(url, getattr(error, "reason", error), targets) from error
    with response:
        start = _resume_offset(response, offset, part)
        total = _expected_total(response, start)
        with (
            open(part, "ab" if start else "wb") as handle,
            tqdm(
                total=total,
                initial=start,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=part.name[:-5],
                disable=not progress,
                leave=False,
            ) as bar,
        ):
            try:
                _copy_body(response, handle, bar)
            except (http.client.HTTPException, OSError) as error:
                raise DownloadError(
                    f"download of {url} interrupted after {handle.tell():,} bytes ({error}); "
                    f"{part} is kept: rerun to resume"
                ) from error
            got = handle.tell()
    if total is not None and got < total:
        raise DownloadError(
            f"download of {url} stopped early at {got:,} of {total:,} bytes; {part} is kept: rerun to resume"
        )


def _staged_problem(spec: WeightFile, size: int, digests: FileDigests, root: Path, force: bool) -> str | None:
    """What is wrong with a fetched file: published size/sha256/md5, then its trust-on-first-use record."""
    if spec.size is not None and size != spec.size:
        return f"size {size:,} ≠ {spec.size:,} bytes"
    if spec.sha256 is not None and digests.sha256 != spec.sha256.lower():
        return f"sha256 mismatch (got {digests.sha256[:12]}…, expected {spec.sha256[:12]}…)"
    if spec.md5 is not None and digests.md5 != spec.md5.lower():
        return f"md5 mismatch (got {digests.md5[:12]}…, expected {spec.md5[:12]}…)"
    entry = WeightsLock(root).get(spec) if needs_lock(spec) and not force else None
    if entry is not None and (size, digests.sha256) != (entry.size, entry.sha256):
        return (f"differs from the copy first recorded in {root / LOCK_FILENAME} (got size {size:,} bytes, sha256 "
                f"{digests.sha256[:12]}…; recorded {entry.describe()}); if the release really changed, rerun "
                "with --force to trust the new file")
    return None


def _verify_staged(spec: WeightFile, staged: Path, origin: str, root: Path, force: bool) -> FileDigests:
    """Check a fully fetched file against the registry and the lock; delete it and raise when it does not match.

    Returns:
        The digests of the staged file.

    Raises:
        WeightsMissingError: size, sha256 or md5 differ from the registry, or the file differs from its
            trust-on-first-use record (unless ``force``).
    """
    digests = file_digests(staged)
    problem = _staged_problem(spec, staged.stat().st_size, digests, root, force)
    if problem is not None:
        staged.unlink()
        raise WeightsMissingError(
            f"{spec.key}: the file fetched from {origin} failed verification ({problem}) "
            "and was deleted; rerun the download or copy a good file by hand"
        )
    return digests


def _install(spec: WeightFile, staged: Path, digests: FileDigests, root: Path, force: bool) -> Path:
    """Move a verified file into place, cache its digests (``os.replace`` keeps the mtime) and lock it."""
    dest = root / spec.relpath
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.replace(staged, dest)
    cache = DigestCache(root)
    cache.record(dest, digests)
    cache.save()
    if needs_lock(spec):
        lock = WeightsLock(root)
        lock.record(spec, dest.stat().st_size, digests.sha256, how="download", replace=force)
        lock.save()
    logger.info("installed %s", dest)
    return dest


def _fetch_file(spec: WeightFile, root: Path, *, progress: bool, mirror: str | None, timeout: float,
                force: bool) -> Path:
    """Download a plain-URL file into ``<dest>.part``, verify it, and move it to its registry path."""
    url = resolve_url(spec.source, mirror)
    dest = root / spec.relpath
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    logger.info("downloading %s from %s", spec.key, url)
    _stream(url, part, progress=progress, timeout=timeout, targets=[dest])
    return _install(spec, part, _verify_staged(spec, part, url, root, force), root, force)


def _extract_member(archive: zipfile.ZipFile, spec: WeightFile, root: Path, origin: str, force: bool) -> Path:
    """Extract ``spec.archive_member`` into ``<dest>.part``, verify it, and move it to its registry path."""
    dest = root / spec.relpath
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    member = spec.archive_member or ""
    try:
        with archive.open(member) as source, open(part, "wb") as target:
            shutil.copyfileobj(source, target, _CHUNK)
    except KeyError as error:
        raise WeightsMissingError(f"{spec.key}: {origin} has no member {member!r}") from error
    except (zipfile.BadZipFile, OSError) as error:
        part.unlink(missing_ok=True)
        raise WeightsMissingError(f"{spec.key}: cannot extract {member!r} from {origin}: {error}") from error
    return _install(spec, part, _verify_staged(spec, part, f"{origin}:{member}", root, force), root, force)


def _fetch_archive(
    url_key: str, specs: list[WeightFile], root: Path, *, progress: bool, mirror: str | None, timeout: float,
    force: bool,
) -> list[Path]:
    """Download a zip pack once, extract and verify the members ``specs`` need, then delete the zip."""
    url = resolve_url(url_key, mirror)
    staging = root / STAGING_DIRNAME
    staging.mkdir(parents=True, exist_ok=True)
    archive_path = staging / Path(urlsplit(url_key).path).name
    part = archive_path.with_name(archive_path.name + ".part")
    logger.info("downloading %s (for %s) from %s", archive_path.name, ", ".join(s.key for s in specs), url)
    _stream(url, part, progress=progress, timeout=timeout, targets=[root / spec.relpath for spec in specs])
    os.replace(part, archive_path)
    try:
        with zipfile.ZipFile(archive_path) as archive:
            return [_extract_member(archive, spec, root, url, force) for spec in specs]
    except zipfile.BadZipFile as error:
        raise WeightsMissingError(
            f"{url} is not a valid zip archive ({error}); it was deleted: rerun the download"
        ) from error
    finally:
        archive_path.unlink(missing_ok=True)


class _SilentTqdm(tqdm):  # type: ignore[type-arg]
    """tqdm that never draws; handed to huggingface_hub when progress bars are off."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs["disable"] = True
        super().__init__(*args, **kwargs)


def _fetch_hf(spec: WeightFile, root: Path, *, progress: bool, force: bool) -> Path:
    """Download one file from its Hugging Face repo into a staging folder, verify it, move it into place."""
    import huggingface_hub  # imported here: only downloads need it, and tests replace hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, HTTPError

    repo_id, filename = spec.hf_repo_and_filename
    staging = root / STAGING_DIRNAME / "hf"
    logger.info("downloading %s from huggingface.co/%s (%s)", spec.key, repo_id, filename)
    try:
        staged = Path(
            huggingface_hub.hf_hub_download(
                repo_id=repo_id, filename=filename, local_dir=staging, tqdm_class=None if progress else _SilentTqdm
            )
        )
    except (OSError, HTTPError, EntryNotFoundError) as error:
        raise _unreachable(f"https://huggingface.co/{repo_id}", _first_line(error), [root / spec.relpath]) from error
    digests = _verify_staged(spec, staged, f"huggingface.co/{repo_id}/{filename}", root, force)
    return _install(spec, staged, digests, root, force)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _remove_staging(root: Path) -> None:
    """Drop the Hugging Face staging folder and the staging root when nothing else (partial zips) is left."""
    staging = root / STAGING_DIRNAME
    shutil.rmtree(staging / "hf", ignore_errors=True)
    if staging.is_dir() and not any(staging.iterdir()):
        staging.rmdir()


def _needs_fetch(keys: list[str], root: Path, force: bool) -> list[WeightFile]:
    """Registry entries of ``keys`` that are missing or fail verification (all of them with ``force``)."""
    cache = DigestCache(root)
    lock = WeightsLock(root)
    todo = []
    try:
        for key in keys:
            spec = get_weight(key)
            problem = None if force else check_file(spec, root / spec.relpath, cache, lock)[0]
            if force or problem is not None:
                if problem not in (None, "missing"):
                    logger.warning("%s: %s; downloading it again", key, problem)
                todo.append(spec)
            else:
                logger.info("%s: already present and verified", key)
    finally:
        cache.save()
        lock.save()
    return todo


def download_weights(
    groups: Iterable[str],
    root: str | os.PathLike[str],
    *,
    force: bool = False,
    progress: bool = True,
    mirror: str | None = None,
    timeout: float = 60.0,
) -> list[Path]:
    """Download every file of ``groups`` that is missing or corrupt under ``root``, then verify them all.

    Args:
        groups: download groups (see ``GROUPS``); a file listed in several groups is fetched once.
        root: weights root folder (created when absent).
        force: download again even when the files are present and intact, and record the new downloads in the
            trust-on-first-use lock in place of earlier records.
        progress: draw tqdm progress bars.
        mirror: base URL replacing scheme and host of the release URLs (default ``$FRONTALIZE_DOWNLOAD_MIRROR``).
        timeout: socket timeout in seconds for each HTTP request.

    Returns:
        Paths of the files downloaded by this call (files already intact are not included).

    Raises:
        ConfigError: unknown group.
        DownloadError: network failure (exit code 1); partial downloads are kept for resuming.
        WeightsMissingError: a downloaded file failed verification (it is deleted).
    """
    keys = list(dict.fromkeys(key for group in groups for key in group_keys(check_group(group))))
    root_path = Path(root)
    root_path.mkdir(parents=True, exist_ok=True)
    todo = _needs_fetch(keys, root_path, force)
    archives: dict[str, list[WeightFile]] = {}
    fetched: list[Path] = []
    for spec in todo:
        if spec.is_huggingface:
            fetched.append(_fetch_hf(spec, root_path, progress=progress, force=force))
        elif spec.archive_member is not None:
            archives.setdefault(spec.source, []).append(spec)
        else:
            fetched.append(_fetch_file(spec, root_path, progress=progress, mirror=mirror, timeout=timeout,
                                       force=force))
    for url, specs in archives.items():
        fetched.extend(_fetch_archive(url, specs, root_path, progress=progress, mirror=mirror, timeout=timeout,
                                      force=force))
    _remove_staging(root_path)
    verify_weights(keys, root_path)
    return fetched
