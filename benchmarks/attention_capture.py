"""Cost of looking at attention: one captured layer versus flipping the whole model to eager.

Builds a GPT-2-shaped model from a config (random weights, no download) and times, side by side
in one run, for each input length:

- ``sdpa``: a plain forward with the default fused attention (no weights returned);
- ``capture``: stmem-viz's capture of one layer (weights and raw scores), sdpa elsewhere;
- ``eager``: the whole model in eager attention with ``output_attentions=True``.

Prints the median time of each, the ratios, and the bytes of attention each one hands back.
Run: ``python benchmarks/attention_capture.py [--lengths 512,2048] [--repeats 3]``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

from stmem_viz.models.capture import run_with_attention
from stmem_viz.models.hf import LoadedModel


def _model(layers: int, heads: int, width: int, positions: int) -> LoadedModel:
    torch.manual_seed(0)
    config = GPT2Config(
        n_layer=layers,
        n_head=heads,
        n_embd=width,
        n_positions=positions,
        vocab_size=1000,
        bos_token_id=0,
        eos_token_id=0,
    )
    model = GPT2LMHeadModel(config).eval()
    vocab = {f"w{i}": i for i in range(1000)}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="w0"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    return LoadedModel(
        spec="benchmark-gpt2",
        model=model,
        tokenizer=PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="w0"),
        kind="decoder",
        n_layers=layers,
        n_encoder_layers=0,
        n_heads=heads,
        n_kv_heads=heads,
        n_params=sum(p.numel() for p in model.parameters()),
        device=torch.device("cpu"),
        dtype=torch.float32,
        memory_bytes=0,
        max_positions=positions,
    )


def _median_time(function, repeats: int) -> float:
    function()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _measure(loaded: LoadedModel, ids: torch.Tensor, layer: int, repeats: int):
    """Median seconds of sdpa, capture and eager forwards, and bytes of attention kept."""
    model = loaded.model
    held = {}

    def sdpa() -> None:
        with torch.inference_mode():
            model(input_ids=ids, use_cache=False)

    def capture() -> None:
        kept = []
        run_with_attention(
            loaded, {"input_ids": ids}, lambda stack, i, w, e: kept.extend([w, e]), layers=[layer]
        )
        held["capture"] = sum(t.numel() * t.element_size() for t in kept)

    def eager() -> None:
        model.set_attn_implementation("eager")
        try:
            with torch.inference_mode():
                out = model(input_ids=ids, use_cache=False, output_attentions=True)
            held["eager"] = sum(a.numel() * a.element_size() for a in out.attentions)
        finally:
            model.set_attn_implementation("sdpa")

    times = [_median_time(f, repeats) for f in (sdpa, capture, eager)]
    return (*times, held)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", default="512,2048")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--width", type=int, default=256)
    args = parser.parse_args()
    lengths = [int(n) for n in args.lengths.split(",")]
    loaded = _model(args.layers, args.heads, args.width, max(lengths))
    print(
        f"GPT-2 shape: {args.layers} layers, {args.heads} heads, width {args.width}; "
        f"CPU threads {torch.get_num_threads()}"
    )
    print(
        f"{'tokens':>7} {'sdpa ms':>9} {'capture ms':>11} {'eager ms':>9} "
        f"{'capture/sdpa':>13} {'eager/capture':>14} {'capture MiB':>12} {'eager MiB':>10}"
    )
    for n in lengths:
        ids = torch.randint(0, 1000, (1, n))
        t_sdpa, t_capture, t_eager, held = _measure(loaded, ids, args.layers // 2, args.repeats)
        print(
            f"{n:>7} {t_sdpa * 1e3:>9.1f} {t_capture * 1e3:>11.1f} {t_eager * 1e3:>9.1f} "
            f"{t_capture / t_sdpa:>13.2f} {t_eager / t_capture:>14.2f} "
            f"{held['capture'] / 2**20:>12.1f} {held['eager'] / 2**20:>10.1f}"
        )


if __name__ == "__main__":
    main()
