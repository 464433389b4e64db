"""io: image decode/encode (the only place that knows BGR), atomic writes and run manifests."""

from __future__ import annotations

from frontalize.io.atomic import atomic_write_bytes, atomic_write_text, remove_stale_temp_files
from frontalize.io.images import (
    DEFAULT_MAX_PIXELS,
    IMAGE_EXTENSIONS,
    DecodedImage,
    decode_image,
    encode_image,
    load_image,
    read_file_bytes,
    write_image,
)
from frontalize.io.manifest import ManifestWriter, export_csv, latest_rows, read_manifest

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "IMAGE_EXTENSIONS",
    "DecodedImage",
    "ManifestWriter",
    "atomic_write_bytes",
    "atomic_write_text",
    "decode_image",
    "encode_image",
    "export_csv",
    "latest_rows",
    "load_image",
    "read_file_bytes",
    "read_manifest",
    "remove_stale_temp_files",
    "write_image",
]
