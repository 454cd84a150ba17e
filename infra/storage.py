"""Attachment bytes, stored by content hash behind a small interface.

DiskBlobStore is the default (a folder under the data directory); an S3-compatible store can
implement BlobStore later without touching the domain. Content addressing makes a retried upload
free and lets two records share one copy."""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
from abc import ABC, abstractmethod
from pathlib import Path


class BlobStore(ABC):
    @abstractmethod
    async def put(self, data: bytes) -> str:
        """Store `data`; return its key, the hex sha256 of the bytes."""

    @abstractmethod
    async def get(self, key: str) -> bytes | None:
        """The bytes under `key`, or None."""


class DiskBlobStore(BlobStore):
    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        if len(key) != 64 or any(c not in "0123456789abcdef" for c in key):
            raise ValueError("not a sha256 key")
        return self.root / key[:2] / key[2:4] / key

    async def put(self, data: bytes) -> str:
        key = hashlib.sha256(data).hexdigest()
        await asyncio.to_thread(self._write, self._path(key), data)
        return key

    @staticmethod
    def _write(path: Path, data: bytes) -> None:
        if path.exists():
            return  # same bytes, same name: already stored
        path.parent.mkdir(parents=True, exist_ok=True)
        # Write aside then rename: a reader never sees half a file, and a crash leaves only a temp file.
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".upload-")
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)

    async def get(self, key: str) -> bytes | None:
        try:
            path = self._path(key)
        except ValueError:
            return None
        return await asyncio.to_thread(lambda: path.read_bytes() if path.exists() else None)
