"""The Gradio app's work: `GenerationService` (requests in, files out; its pieces are listed in `lfdm.app.service`)
and `build_demo` (the page).

`app.py` at the top of the repository only parses flags and launches; everything it shows is built here.
"""

from lfdm.app.inputs import DrivingSettings, GenerationSettings, UserInputError
from lfdm.app.models import NO_MODEL_MESSAGE, find_pipelines
from lfdm.app.runs import GenerationStopped
from lfdm.app.service import GenerationService
from lfdm.app.ui import LAUNCH_OPTIONS, build_demo

__all__ = [
    "LAUNCH_OPTIONS",
    "NO_MODEL_MESSAGE",
    "DrivingSettings",
    "GenerationService",
    "GenerationSettings",
    "GenerationStopped",
    "UserInputError",
    "build_demo",
    "find_pipelines",
]
