"""The lfdm Gradio app: `python app.py [--model DIR_OR_REPO] [--host 127.0.0.1] [--port 7860] [--share]`.

Offers every pipeline folder under `checkpoints/` (and `--model`, a folder or a Hugging Face repo id, selected
first). Runs unchanged as a Hugging Face Space (see the front matter of README.md). Importing this file builds
`demo` without loading a model or starting a server; the page is built in `lfdm.app`.
"""

import argparse
import os
from pathlib import Path

from lfdm.app import LAUNCH_OPTIONS, GenerationService, build_demo
from lfdm.commands._options import add_dtype_argument

ROOT = Path(__file__).resolve().parent


def create_service(model: str | None = None, dtype: str = "auto") -> GenerationService:
    return GenerationService.from_checkpoints(ROOT / "checkpoints", model=model, dtype=dtype)


service = create_service(os.environ.get("LFDM_MODEL"))
demo = build_demo(service, examples_dir=ROOT / "assets" / "examples", driving_dir=ROOT / "assets" / "driving")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
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


if __name__ == "__main__":
    args = parse_args()
    if args.model != os.environ.get("LFDM_MODEL") or args.dtype != "auto":
        service = create_service(args.model, args.dtype)
        demo = build_demo(service, examples_dir=ROOT / "assets" / "examples", driving_dir=ROOT / "assets" / "driving")
    service.preload()  # the model loads once, before the first visitor
    demo.launch(server_name=args.host, server_port=args.port, share=args.share, **LAUNCH_OPTIONS)
