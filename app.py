"""The lfdm Gradio app: `python app.py [--model DIR_OR_REPO] [--host 127.0.0.1] [--port 7860] [--share]`.

Offers every pipeline folder under `checkpoints/` (and `--model`, a folder or a Hugging Face repo id, selected
first). Runs unchanged as a Hugging Face Space (see the front matter of README.md). Importing this file builds
`demo` without loading a model or starting a server; the page is built in `lfdm.app`.

A model that cannot be loaded, a bad option or a port in use ends the start with one `error: ...` line and exit
status 1, as `python -m lfdm` commands do.
"""

import argparse
import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

# Gradio keeps uploads and the files it serves in GRADIO_TEMP_DIR (default: one shared /tmp/gradio), where another
# Gradio app or a test run may clean up. Unless told otherwise, this app keeps its own (set before Gradio loads),
# and removes it when it exits.
if not os.environ.get("GRADIO_TEMP_DIR"):
    os.environ["GRADIO_TEMP_DIR"] = tempfile.mkdtemp(prefix="lfdm-app-gradio-")
    atexit.register(shutil.rmtree, os.environ["GRADIO_TEMP_DIR"], ignore_errors=True)

from lfdm.app import LAUNCH_OPTIONS, GenerationService, build_demo  # noqa: E402
from lfdm.commands.options import add_dtype_argument  # noqa: E402

ROOT = Path(__file__).resolve().parent


def create_service(model: str | None = None, dtype: str = "auto") -> GenerationService:
    return GenerationService.from_checkpoints(ROOT / "checkpoints", model=model, dtype=dtype)


def create_demo(service: GenerationService):
    return build_demo(service, examples_dir=ROOT / "assets" / "examples", driving_dir=ROOT / "assets" / "driving")


service = create_service(os.environ.get("LFDM_MODEL"))
demo = create_demo(service)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        """A bad option: one line, exit status 1 (argparse's default prints the usage and exits 2)."""
        self.exit(1, f"error: {message} (python app.py --help lists the options)\n")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = _Parser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model",
        default=os.environ.get("LFDM_MODEL"),
        help="pipeline folder or Hugging Face repo id (default: every folder under checkpoints/)",
    )
    parser.add_argument(
        "--host",
        default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
        help="address to listen on; 0.0.0.0 for every interface (env GRADIO_SERVER_NAME)",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
        help="port (env GRADIO_SERVER_PORT)",
    )
    parser.add_argument("--share", action="store_true", help="also open a public gradio.live link")
    add_dtype_argument(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    global service, demo
    args = parse_args(argv)
    try:
        if args.model != os.environ.get("LFDM_MODEL") or args.dtype != "auto":
            service = create_service(args.model, args.dtype)
            demo = create_demo(service)
        service.preload()  # the model loads once (and this machine's speed is measured), before the first visitor
        demo.launch(server_name=args.host, server_port=args.port, share=args.share, **LAUNCH_OPTIONS)
    except (ValueError, OSError) as error:  # UserInputError is a ValueError; a port in use is an OSError
        print(f"error: {' '.join(str(error).split())}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
