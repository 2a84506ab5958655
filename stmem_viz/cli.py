"""The ``stmem-viz`` command line: the same library calls the app's pages make."""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
from pathlib import Path

from stmem_viz import StmemError

APP_PATH = Path(__file__).resolve().parent.parent / "app.py"


def _cmd_app(args: argparse.Namespace) -> int:
    if not APP_PATH.is_file():
        raise StmemError(f"The app file {APP_PATH} is missing; reinstall with 'pip install -e .'.")
    command = [sys.executable, "-m", "streamlit", "run", str(APP_PATH)]
    command += ["--server.port", str(args.port), "--server.address", args.address]
    command += ["--browser.gatherUsageStats", "false"]
    return subprocess.call(command, cwd=APP_PATH.parent)


def _cmd_models(args: argparse.Namespace) -> int:
    from stmem_viz.models.bundled import bundled_family, list_bundled
    from stmem_viz.models.device import available_devices

    names = list_bundled()
    print("Bundled models:")
    for name in names:
        print(f"  bundled:{name}  ({bundled_family(name)})")
    if not names:
        print("  (none)")
    print("Devices: " + ", ".join(available_devices()))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stmem-viz", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("app", help="start the Streamlit app")
    p.add_argument("--port", type=int, default=8501)
    p.add_argument("--address", default="127.0.0.1", help="interface to bind (default loopback)")
    p.set_defaults(func=_cmd_app)

    p = sub.add_parser("models", help="list the bundled models and the devices found")
    p.set_defaults(func=_cmd_models)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    try:
        return int(args.func(args) or 0)
    except StmemError as error:
        print(f"stmem-viz: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
