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


def _parse_tasks(text: str) -> list[int]:
    try:
        tasks = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise StmemError(f"--tasks takes task numbers like 1,2,3; got '{text}'.") from None
    if not tasks or any(t not in (1, 2, 3) for t in tasks):
        raise StmemError(f"--tasks takes task numbers among 1, 2 and 3; got '{text}'.")
    return tasks


def _parse_sizes(items: list[str]) -> dict[str, int]:
    sizes = {}
    for item in items:
        key, _, value = item.partition("=")
        try:
            sizes[key.strip()] = int(value)
        except ValueError:
            raise StmemError(f"--size takes NAME=INTEGER, e.g. slots=20; got '{item}'.") from None
    return sizes


def _cmd_train(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from stmem_viz.models.train import train

    tasks, sizes = _parse_tasks(args.tasks), _parse_sizes(args.size)
    bar = tqdm(total=1, desc=args.family, unit="step", file=sys.stderr, dynamic_ncols=True)

    def report(progress) -> bool:
        bar.total = progress.total_steps
        bar.n = progress.step
        accuracy = "-" if progress.val_accuracy is None else f"{progress.val_accuracy:.3f}"
        bar.set_postfix(epoch=progress.epoch, loss=f"{progress.loss:.4f}", val_acc=accuracy)
        return True

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    options = {
        "lr": args.lr,
        "batch_size": args.batch_size,
        "min_sentences": args.min_sentences,
        "max_sentences": args.max_sentences,
        "time_limit_s": args.time_limit,
    }
    with bar:
        result = train(
            args.family,
            tasks=tasks,
            n_stories=args.stories,
            epochs=args.epochs,
            seed=args.seed,
            device=args.device,
            out=args.out,
            babi_dir=args.babi_dir,
            sizes=sizes,
            progress=report,
            **{k: v for k, v in options.items() if v is not None},
        )
    final = result.history[-1].val_accuracy if result.history else None
    print(f"wrote {result.out}" + ("" if final is None else f" (validation accuracy {final:.3f})"))
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    import json

    from stmem_viz.models.evaluate import evaluate

    rows = evaluate(
        args.model,
        tasks=_parse_tasks(args.tasks),
        n=args.n,
        seed=args.seed,
        babi_file=args.babi_file,
        device=args.device,
    )
    for row in rows:
        if args.json:
            print(json.dumps(row))
        else:
            print(
                f"{row['model']}  task {row['task']}  n={row['n']}  accuracy {row['accuracy']:.3f}"
            )
    return 0


def _cmd_trace(args: argparse.Namespace) -> int:
    from stmem_viz.analysis.memory import load_story_file, trace_arrays
    from stmem_viz.models.story_models import load_story_model
    from stmem_viz.plots.export import arrays_npz

    story = load_story_file(args.story, args.index)
    model = load_story_model(args.model, device=args.device)
    trace = model.trace(list(story.sentences), story.question)
    if trace.unknown_words:
        print(f"warning: unknown words read as <unk>: {trace.unknown_words}", file=sys.stderr)
    Path(args.out).write_bytes(arrays_npz(**trace_arrays(trace, model.vocab)))
    print(f"wrote {args.out} ({model.family}, {len(story.sentences)} sentences)")
    return 0


def _cmd_forget(args: argparse.Namespace) -> int:
    import json

    from tqdm import tqdm

    from stmem_viz.analysis import forgetting as fg

    depths = fg.parse_depths(args.depths) if args.depths else fg.DEFAULT_DEPTHS
    options = {"n": args.n, "seed": args.seed, "task": args.task, "span": args.span}
    settings = fg.make_settings(
        args.experiment, args.grid, depths=depths, text=args.text or "", **options
    )
    out = Path(args.out)
    if out.suffix.lower() not in (".csv", ".parquet"):
        raise StmemError(f"--out must end in .csv or .parquet; got '{out.name}'.")
    subjects = [fg.load_subject(spec, args.device) for spec in args.models]
    for subject in subjects:
        fg.check_subject(settings, subject)
    n_chunks = len(fg.plan_chunks(settings, args.models))
    bar = tqdm(total=n_chunks, desc=args.experiment, unit="chunk", file=sys.stderr)

    def progress(done: int, total: int) -> bool:
        bar.update(done - bar.n)
        return True

    try:
        result = fg.run_experiment(settings, subjects, progress=progress)
    finally:
        bar.close()
    if out.suffix.lower() == ".parquet":
        result.samples.to_parquet(out, index=False)
    else:
        result.samples.to_csv(out, index=False)
    if args.json:
        for line in result.json_lines():
            print(json.dumps(line))
    else:
        print(result.fits.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
        print(f"wrote {len(result.samples)} samples to {out}", file=sys.stderr)
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

    p = sub.add_parser("train", help="train a story model on generated stories or bAbI files")
    p.add_argument("family", choices=["story-entnet", "story-memn2n", "story-gpt"])
    p.add_argument("--tasks", default="1,2,3", help="bAbI tasks, e.g. 1,2,3")
    p.add_argument("--stories", type=int, default=10000, help="training stories per task")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--babi-dir", default=None, help="train on the qa*_train.txt files here")
    p.add_argument(
        "--size",
        action="append",
        default=[],
        metavar="NAME=N",
        help="network size, e.g. slots=20 dim=100 (entnet), hops=3 (memn2n), num_hidden_layers=2",
    )
    p.add_argument("--lr", type=float, default=None, help="learning rate")
    p.add_argument("--batch-size", type=int, default=None, help="stories per step")
    p.add_argument("--min-sentences", type=int, default=None, help="shortest generated story")
    p.add_argument("--max-sentences", type=int, default=None, help="longest generated story")
    p.add_argument(
        "--time-limit", type=float, default=None, help="stop after this many seconds of training"
    )
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--out", required=True, help="folder to write the checkpoint to")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("eval", help="accuracy of a story model on fresh stories or a bAbI file")
    p.add_argument("model", help="bundled:NAME or a trained model's folder")
    p.add_argument("--tasks", default="1,2,3")
    p.add_argument("--n", type=int, default=1000, help="stories per task")
    p.add_argument("--seed", type=int, default=12345)
    p.add_argument("--babi-file", default=None, help="evaluate on this bAbI file instead")
    p.add_argument("--device", default="auto")
    p.add_argument("--json", action="store_true", help="one JSON line per task")
    p.set_defaults(func=_cmd_eval)

    p = sub.add_parser("trace", help="write a memory network's trace of one story to an .npz file")
    p.add_argument("model", help="bundled:story-entnet, bundled:story-memn2n or a model folder")
    p.add_argument(
        "--story", required=True, help="bAbI file, or one sentence per line ending with a question"
    )
    p.add_argument("--index", type=int, default=None, help="story of a multi-story file (from 0)")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", required=True, help="output .npz file")
    p.set_defaults(func=_cmd_trace)

    p = sub.add_parser("forget", help="forgetting curves and half-lives of one or more models")
    p.add_argument("models", nargs="+", metavar="MODEL", help="bundled:NAME, folder or hub id")
    p.add_argument("--experiment", required=True, help="distance, depth-length, passkey, ...")
    p.add_argument("--grid", default=None, help="e.g. 0,1,2,4 (default: per experiment)")
    p.add_argument("--depths", default=None, help="fact depths in %% (depth-length, passkey)")
    p.add_argument("--n", type=int, default=20, help="samples per grid point")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--task", type=int, default=1, help="bAbI task of the stories")
    p.add_argument("--span", type=int, default=16, help="copied span in tokens (copy-gap)")
    p.add_argument("--text", default=None, help="text for position-nll (default: generated)")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", required=True, help="samples file: .csv or .parquet")
    p.add_argument("--json", action="store_true", help="one JSON line per model")
    p.set_defaults(func=_cmd_forget)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    if not args.verbose and args.command != "app":
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()  # keep stderr to our own lines
    try:
        return int(args.func(args) or 0)
    except (StmemError, OSError) as error:
        print(f"stmem-viz: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
