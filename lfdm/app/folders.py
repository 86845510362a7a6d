"""Where the requests' files go: one folder per request under one work folder, deleted when old."""

from __future__ import annotations

import shutil
import tempfile
import time
import uuid
import weakref
from pathlib import Path


class RequestFolders:
    """One folder per request under `root`.

    Args:
        root: where request folders go; default a new folder in the system's temp folder, removed when the app
            exits (Gradio serves files from there once a handler returns them, and from nowhere else on disk).
        max_age_s: request folders older than this are deleted by `clean_up`.
    """

    def __init__(self, root: str | Path | None = None, *, max_age_s: float = 3600.0):
        if root is None:
            self.root = Path(tempfile.mkdtemp(prefix="lfdm-app-"))
            weakref.finalize(self, shutil.rmtree, self.root, ignore_errors=True)  # also runs when the app exits
        else:
            self.root = Path(root)
            self.root.mkdir(parents=True, exist_ok=True)
        self.max_age_s = max_age_s

    def new(self) -> tuple[str, Path]:
        """A new request's id (32 hex digits) and its folder (not created yet)."""
        request_id = uuid.uuid4().hex
        return request_id, self.root / request_id

    def folder(self, request_id: str) -> Path:
        return self.root / request_id

    def clean_up(self) -> list[str]:
        """Delete request folders older than `max_age_s`; returns the ids of those deleted."""
        deadline = time.time() - self.max_age_s
        deleted = []
        for folder in self.root.iterdir():
            if folder.is_dir() and folder.stat().st_mtime < deadline:
                shutil.rmtree(folder, ignore_errors=True)
                deleted.append(folder.name)
        return deleted
