"""Attachment bytes, stored by content hash behind a small interface.

DiskBlobStore is the default (a folder under the data directory); an S3-compatible store can
implement BlobStore later without touching the domain. Content addressing makes a retried upload
free and lets two records share one copy."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import tempfile
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from pathlib import Path

_CHUNK = 256 * 1024


class BlobStore(ABC):
    @abstractmethod
    async def put(self, data: bytes) -> str:
        """Store `data`; return its key, the hex sha256 of the bytes."""

    @abstractmethod
    async def get(self, key: str) -> bytes | None:
        """The bytes under `key`, or None."""

    def writer(self) -> BlobWriter:
        """A blob written piece by piece (an export file larger than memory should hold); this
        default keeps the pieces in memory, a store that can stream overrides it."""
        return _BufferedWriter(self)

    async def chunks(self, key: str) -> AsyncIterator[bytes] | None:
        """The bytes under `key` in pieces, or None."""
        data = await self.get(key)
        if data is None:
            return None

        async def pieces() -> AsyncIterator[bytes]:
            yield data

        return pieces()

    @abstractmethod
    async def delete(self, key: str) -> None:
        """Forget `key` (the caller knows nothing else refers to it); missing is fine."""


class BlobWriter(ABC):
    @abstractmethod
    async def write(self, data: bytes) -> None: ...

    @abstractmethod
    async def close(self) -> str:
        """Store what was written; return its key (the hex sha256 of all of it)."""

    @abstractmethod
    async def abort(self) -> None:
        """Drop what was written."""


class _BufferedWriter(BlobWriter):
    def __init__(self, store: BlobStore) -> None:
        self._store = store
        self._parts: list[bytes] = []

    async def write(self, data: bytes) -> None:
        self._parts.append(data)

    async def close(self) -> str:
        return await self._store.put(b"".join(self._parts))

    async def abort(self) -> None:
        self._parts.clear()


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

    def writer(self) -> BlobWriter:
        return _DiskWriter(self)

    async def chunks(self, key: str) -> AsyncIterator[bytes] | None:
        try:
            path = self._path(key)
        except ValueError:
            return None
        try:
            handle = await asyncio.to_thread(path.open, "rb")
        except FileNotFoundError:
            return None

        async def pieces() -> AsyncIterator[bytes]:
            try:
                while piece := await asyncio.to_thread(handle.read, _CHUNK):
                    yield piece
            finally:
                handle.close()

        return pieces()

    async def delete(self, key: str) -> None:
        path = self._path(key)
        await asyncio.to_thread(path.unlink, True)


class _DiskWriter(BlobWriter):
    """Appends to a temporary file beside the store while hashing; close renames it to its key."""

    def __init__(self, store: DiskBlobStore) -> None:
        self._store = store
        self._hash = hashlib.sha256()
        self._pending: list[bytes] = []
        self._size = 0
        store.root.mkdir(parents=True, exist_ok=True)
        fd, self._tmp = tempfile.mkstemp(dir=store.root, prefix=".stream-")
        self._fh = os.fdopen(fd, "wb")

    async def write(self, data: bytes) -> None:
        self._hash.update(data)
        self._pending.append(data)
        self._size += len(data)
        if self._size >= _CHUNK:
            await self._flush()

    async def _flush(self) -> None:
        block, self._pending, self._size = b"".join(self._pending), [], 0
        await asyncio.to_thread(self._fh.write, block)

    async def close(self) -> str:
        await self._flush()
        key = self._hash.hexdigest()
        path = self._store._path(key)

        def finish() -> None:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()
            path.parent.mkdir(parents=True, exist_ok=True)
            os.replace(self._tmp, path)

        await asyncio.to_thread(finish)
        return key

    async def abort(self) -> None:
        def drop() -> None:
            self._fh.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._tmp)

        await asyncio.to_thread(drop)
