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


def _cmd_attention(args: argparse.Namespace) -> int:
    from stmem_viz.models.capture import capture_attention
    from stmem_viz.models.hf import load_model
    from stmem_viz.plots.export import arrays_npz

    loaded = load_model(args.model, args.device, args.dtype, args.trust_remote_code)
    n_layers = loaded.n_layers if loaded.kind != "encoder-decoder" else loaded.n_encoder_layers
    limit = min(n_layers, loaded.n_layers)
    if not 0 <= args.layer < limit:
        raise StmemError(f"--layer must be between 0 and {limit - 1} for {args.model}.")
    captured = capture_attention(
        loaded, args.text, target=args.target, layers=[args.layer], max_tokens=args.max_tokens
    )
    if captured.truncated:
        print(
            f"warning: text truncated from {captured.n_input_tokens} to {args.max_tokens} tokens",
            file=sys.stderr,
        )
    if loaded.kind == "encoder-decoder":
        arrays = {
            "encoder_tokens": captured.tokens,
            "decoder_tokens": captured.target_tokens,
            "encoder_attention": captured.weights[("encoder", args.layer)],
            "decoder_attention": captured.weights[("decoder", args.layer)],
            "cross_attention": captured.weights[("cross", args.layer)],
        }
    else:
        arrays = {"tokens": captured.tokens, "attention": captured.weights[("self", args.layer)]}
    Path(args.out).write_bytes(arrays_npz(**arrays))
    print(f"wrote {args.out}")
    return 0


def _add_model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cuda, cpu")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    p.add_argument(
        "--trust-remote-code", action="store_true", help="run code shipped with a hub model"
    )


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

    p = sub.add_parser("attention", help="write one layer's attention weights to an .npz file")
    p.add_argument("model", help="bundled:NAME, a local folder, or a Hugging Face hub id")
    p.add_argument("--text", required=True, help="input text (the source for encoder-decoders)")
    p.add_argument("--target", default=None, help="decoder text for encoder-decoder models")
    p.add_argument("--layer", type=int, default=0)
    p.add_argument("--max-tokens", type=int, default=512)
    p.add_argument("--out", required=True, help="output .npz file")
    _add_model_options(p)
    p.set_defaults(func=_cmd_attention)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    try:
        return int(args.func(args) or 0)
    except (StmemError, OSError) as error:
        print(f"stmem-viz: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
