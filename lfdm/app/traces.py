"""The step traces the inspector shows.

`TraceStore` keeps each generation's step trace (the predicted clean flows and occlusion maps of its kept sampling
steps) in memory for a few recent runs and in `trace.npz` of the run's folder (`lfdm.app.folders`) for all, so the
inspector never re-runs the model, and renders one step of it (`view`).
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from lfdm.app import render
from lfdm.app.folders import RequestFolders
from lfdm.app.inputs import UserInputError

STRIP_TILE = 64  # pixels per frame in the inspector's strips (latent cells drawn as blocks)
TRACES_IN_MEMORY = 8  # a few recent traces in memory; the others are read back from disk
TRACE_FILE = "trace.npz"
_REQUEST_ID = re.compile(r"^[0-9a-f]{32}$")


@dataclass(frozen=True)
class StepView:
    """One sampling step of a trace: frame strips (uint8 (H, W, 3)) and, when asked, videos."""

    caption: str
    flow_strip: np.ndarray
    occlusion_strip: np.ndarray
    flow_video: Path | None = None
    occlusion_video: Path | None = None


class TraceStore:
    """Step traces by request id: the recent ones in memory, every one in its request folder's `TRACE_FILE`."""

    def __init__(self, folders: RequestFolders):
        self.folders = folders
        self._traces: OrderedDict[str, render.StepTrace] = OrderedDict()
        self._lock = threading.Lock()  # the inspector's events run beside generations

    def keep(self, request_id: str, trace: render.StepTrace) -> Path:
        """Save the trace in its request's folder and remember it; returns the file."""
        path = self.folders.folder(request_id) / TRACE_FILE
        trace.save(path)
        self._remember(request_id, trace)
        return path

    def get(self, request_id: str | None) -> render.StepTrace:
        """The trace of a request, from memory or its folder; UserInputError when there is none (any more)."""
        if not request_id or not _REQUEST_ID.match(str(request_id)):
            raise UserInputError("generate a video first; the inspector shows the steps of the last one.")
        with self._lock:
            trace = self._traces.get(request_id)
        if trace is None:
            path = self.folders.folder(request_id) / TRACE_FILE
            if not path.is_file():
                raise UserInputError("this video's steps have been cleaned up; generate it again.")
            trace = render.StepTrace.load(path)
        self._remember(request_id, trace)  # most recently used last
        return trace

    def forget(self, request_id: str | None = None) -> None:
        """Drop a trace from memory (None: every trace); files stay."""
        with self._lock:
            if request_id is None:
                self._traces.clear()
            else:
                self._traces.pop(request_id, None)

    def view(self, request_id: str | None, step: int, *, videos: bool, fps: float, size: int) -> StepView:
        """The predicted flows and occlusion maps at one traced step (1 = first; clamped to the steps kept), on the
        trace's one colour scale; `videos` also writes them as videos of side `size` in the request's folder."""
        trace = self.get(request_id)
        index = int(min(max(round(float(step)), 1), len(trace.steps))) - 1
        pictures = render.render_step(trace, index, tile=STRIP_TILE)
        view = StepView(pictures.caption, pictures.flow_strip, pictures.occlusion_strip)
        if videos:
            folder = self.folders.folder(request_id)
            flow_video, occlusion_video = render.write_step_videos(folder, trace, index, fps=fps, size=size)
            view = replace(view, flow_video=flow_video, occlusion_video=occlusion_video)
        return view

    def _remember(self, request_id: str, trace: render.StepTrace) -> None:
        with self._lock:
            self._traces[request_id] = trace
            self._traces.move_to_end(request_id)
            while len(self._traces) > TRACES_IN_MEMORY:
                self._traces.popitem(last=False)
