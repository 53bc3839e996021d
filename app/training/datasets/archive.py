"""Reading the entries of a zip or a folder of pictures without extracting anything: every path is checked
(no `..`, no absolute path, no link, no encryption) before a byte of it is read; see uploaded.py for the rest."""

from __future__ import annotations

import os
import re
import stat
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

# Entries of any kind (folders, skipped files): bounds the work of reading a central directory.
MAX_ENTRIES = 50_000


class ImportRefused(ValueError):
    """The archive or folder cannot become a data set; `reason` says which kind of refusal (the API maps it to a
    status: "too_large" 413, "taken" 409, "not_a_zip" 415, everything else 422)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Entry:
    """One file of the archive or folder, read only on demand."""

    parts: tuple[str, ...]  # path inside the archive or folder, e.g. ("cats", "tom.jpg")
    size: int  # declared uncompressed bytes
    read: Callable[[int], bytes]  # reads at most n bytes


def open_zip(source: str | Path | IO[bytes]) -> zipfile.ZipFile:
    """The zip, or ImportRefused if it is not one."""
    try:
        return zipfile.ZipFile(source)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError):
        raise ImportRefused("not_a_zip", "The file is not a zip archive; zip the folder of class folders "
                                         "(e.g. cats/, dogs/) and send that.") from None


def zip_entries(archive: zipfile.ZipFile) -> Iterator[Entry]:
    infos = archive.infolist()
    if len(infos) > MAX_ENTRIES:
        raise ImportRefused("too_large", f"The archive has {len(infos):,} entries; at most {MAX_ENTRIES:,} "
                                         "are read.")
    for info in infos:
        name = info.filename
        parts = PurePosixPath(name.replace("\\", "/")).parts
        if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name) or ".." in parts:
            raise ImportRefused("unsafe", f"The archive holds a path that leaves its folder ({name[:80]!r}); "
                                          "it was refused and nothing was written.")
        if stat.S_ISLNK(info.external_attr >> 16):
            raise ImportRefused("unsafe", f"The archive holds a symbolic link ({name[:80]!r}); links are "
                                          "refused, zip the pictures themselves.")
        if info.is_dir():
            continue
        if info.flag_bits & 0x1:
            raise ImportRefused("unsafe", f"{name[:80]!r} is encrypted; zip the pictures without a password.")

        def read(n: int, info: zipfile.ZipInfo = info) -> bytes:
            with archive.open(info) as f:
                return f.read(n)

        yield Entry(parts, info.file_size, read)


def folder_entries(root: Path) -> Iterator[Entry]:
    count = 0
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for filename in sorted(filenames) + [d for d in dirnames if (Path(dirpath) / d).is_symlink()]:
            path = Path(dirpath) / filename
            count += 1
            if count > MAX_ENTRIES:
                raise ImportRefused("too_large", f"The folder has more than {MAX_ENTRIES:,} files.")
            parts = path.relative_to(root).parts
            if path.is_symlink():
                yield Entry(parts, -1, lambda n: b"")  # size -1: skipped as a link, never followed
                continue

            def read(n: int, path: Path = path) -> bytes:
                with path.open("rb") as f:
                    return f.read(n)

            yield Entry(parts, path.stat().st_size, read)
