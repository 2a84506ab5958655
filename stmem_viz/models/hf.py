"""Load Hugging Face transformers models for attention views.

A model is named by a *spec*: ``bundled:NAME`` (a model shipped with the package), a local
``save_pretrained`` folder, or a Hugging Face Hub id such as ``gpt2``. Models are loaded with
the library's default attention implementation (sdpa); ``stmem_viz.models.capture`` switches
individual forward passes to a capturing implementation when weights are needed.

Only safetensors weights are read: pickled ``pytorch_model.bin`` files can run arbitrary code
when loaded, so folders that hold nothing else are refused.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlparse

import torch

from stmem_viz import StmemError
from stmem_viz.models.bundled import bundled_path, is_bundled_spec
from stmem_viz.models.device import resolve_device, resolve_dtype

if TYPE_CHECKING:
    import transformers

log = logging.getLogger(__name__)

ModelKind = Literal["encoder", "decoder", "encoder-decoder"]

HUB_PROBE_TIMEOUT_S = 3.0
_HEAD_KEYS = ("num_attention_heads", "n_head", "num_heads", "encoder_attention_heads")
_CONTEXT_KEYS = ("n_positions", "max_position_embeddings", "n_ctx", "seq_length")


@dataclass
class LoadedModel:
    """A model ready for inference, with the facts the app shows about it.

    For encoder-decoder models ``n_layers`` counts decoder layers and ``n_encoder_layers``
    encoder layers; for the other kinds ``n_encoder_layers`` is 0.
    """

    spec: str
    model: transformers.PreTrainedModel
    tokenizer: transformers.PreTrainedTokenizerBase
    kind: ModelKind
    n_layers: int
    n_encoder_layers: int
    n_heads: int
    n_kv_heads: int
    n_params: int
    device: torch.device
    dtype: torch.dtype
    memory_bytes: int
    max_positions: int | None

    def summary(self) -> dict[str, str]:
        """Human-readable rows for a "what is loaded" card, in display order."""
        config = self.model.config
        if self.kind == "encoder-decoder":
            layers = f"{self.n_encoder_layers} encoder + {self.n_layers} decoder"
        else:
            layers = str(self.n_layers)
        return {
            "model": self.spec,
            "architecture": type(self.model).__name__,
            "type": getattr(config, "model_type", "?"),
            "kind": self.kind,
            "layers": layers,
            "heads": str(self.n_heads),
            "kv heads": str(self.n_kv_heads),
            "parameters": _human_count(self.n_params),
            "memory": _human_bytes(self.memory_bytes),
            "context": "unlimited" if self.max_positions is None else f"{self.max_positions:,}",
            "device": str(self.device),
            "dtype": str(self.dtype).removeprefix("torch."),
            "vocabulary": f"{len(self.tokenizer):,}",
        }


def load_model(
    spec: str, device: str = "auto", dtype: str = "float32", trust_remote_code: bool = False
) -> LoadedModel:
    """Load a model and its tokenizer from a spec, in eval mode with gradients off.

    Args:
        spec: ``bundled:NAME``, a local folder, or a Hugging Face Hub id.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"``.
        dtype: ``"float32"``, ``"bfloat16"`` or ``"float16"``.
        trust_remote_code: allow model code shipped inside a hub repository to run.

    Returns:
        The loaded model with its summary facts.

    Raises:
        StmemError: the spec names nothing loadable, the files are damaged or unsafe, the hub
            cannot be reached, or the model has no attention layers.
    """
    from transformers import AutoConfig

    spec = (spec or "").strip()
    if not spec:
        raise StmemError("Enter a model: bundled:NAME, a local folder, or a Hugging Face Hub id.")
    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, torch_device)
    source, local = _resolve_source(spec)
    if local:
        _check_local_folder(Path(source))
    else:
        _check_hub_access(source)

    try:
        config = AutoConfig.from_pretrained(source, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, KeyError) as err:
        raise _load_error(spec, local, err, "its config") from err
    if _count_heads(config) == 0:
        raise StmemError(
            f"{spec} has no attention layers to show (model type "
            f"'{getattr(config, 'model_type', '?')}'). Choose a transformer model."
        )

    kind = _model_kind(config)
    model = _load_weights(spec, source, local, config, kind, torch_dtype, trust_remote_code)
    model.to(torch_device).eval()
    model.requires_grad_(False)
    if not any(_is_attention_class(m) for m in model.modules()):
        raise StmemError(f"{spec} has no attention layers to show. Choose a transformer model.")
    tokenizer = _load_tokenizer(spec, source, local, kind, trust_remote_code)
    return _describe(spec, model, tokenizer, kind, torch_device, torch_dtype)


def _resolve_source(spec: str) -> tuple[str, bool]:
    """(folder or hub id, whether it is a local folder)."""
    if is_bundled_spec(spec):
        return str(bundled_path(spec)), True
    path = Path(spec).expanduser()
    if path.is_dir():
        return str(path), True
    looks_like_path = (
        spec.startswith(("/", "./", "../", "~", "\\"))
        or spec.count("/") > 1
        or "\\" in spec
        or path.suffix in (".safetensors", ".bin", ".json")
    )
    if looks_like_path or path.exists():
        raise StmemError(f"No model folder at '{spec}'. Give a folder made by save_pretrained.")
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(spec)
    except HFValidationError as err:
        raise StmemError(
            f"'{spec}' is neither a local folder nor a valid Hugging Face Hub id "
            "(like 'gpt2' or 'org/name')."
        ) from err
    return spec, False


def _check_local_folder(folder: Path) -> None:
    """Refuse folders without a config, without weights, or with damaged safetensors."""
    if not (folder / "config.json").is_file():
        raise StmemError(
            f"The folder '{folder}' has no config.json; point to a folder written by "
            "save_pretrained (config.json plus model.safetensors)."
        )
    weights = sorted(folder.glob("*.safetensors"))
    if not weights:
        if any(folder.glob("pytorch_model*.bin")) or any(folder.glob("*.pt")):
            raise StmemError(
                f"'{folder}' only has pickled PyTorch weights (pytorch_model.bin); only "
                "safetensors weights are loaded. Convert it with "
                "model.save_pretrained(folder, safe_serialization=True)."
            )
        raise StmemError(f"'{folder}' has no model weights (model.safetensors).")
    from safetensors import safe_open

    for file in weights:
        try:
            with safe_open(str(file), framework="pt") as handle:
                handle.keys()
        except Exception as err:  # safetensors raises its own error types for bad headers
            raise StmemError(
                f"The weights file '{file.name}' in '{folder}' is damaged or not a safetensors "
                f"file ({err}). Save or download the model again."
            ) from err


def _hub_offline() -> bool:
    from huggingface_hub import constants

    flag = os.environ.get("HF_HUB_OFFLINE", os.environ.get("TRANSFORMERS_OFFLINE", ""))
    return constants.HF_HUB_OFFLINE or flag.strip().lower() in ("1", "true", "yes", "on")


def _check_hub_access(repo_id: str) -> None:
    """Fail within seconds when a hub model is neither cached nor reachable."""
    from huggingface_hub import constants, try_to_load_from_cache

    if isinstance(try_to_load_from_cache(repo_id, "config.json"), str):
        return
    unreachable = (
        f"Could not reach the Hugging Face Hub to download '{repo_id}' (offline or no network). "
        "Use a local folder or a bundled model."
    )
    if _hub_offline():
        raise StmemError(unreachable + " Hub access is switched off (HF_HUB_OFFLINE).")
    endpoint = urlparse(constants.ENDPOINT)
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    if not _reachable(endpoint.hostname or "", port, HUB_PROBE_TIMEOUT_S):
        raise StmemError(unreachable)


def _reachable(host: str, port: int, timeout: float) -> bool:
    """Whether a TCP connection to ``host:port`` opens within ``timeout`` seconds.

    The probe runs in a daemon thread so that a hanging DNS lookup, which socket timeouts do
    not cover, cannot hold the caller longer than ``timeout``.
    """
    result: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                result.append(True)
        except OSError as err:
            log.info("hub probe to %s:%d failed: %s", host, port, err)
            result.append(False)

    worker = threading.Thread(target=probe, name="stmem-hub-probe", daemon=True)
    worker.start()
    worker.join(timeout)
    return bool(result and result[0])


def _load_error(spec: str, local: bool, err: Exception, what: str) -> StmemError:
    """Turn a transformers/hub loading exception into a sentence a user can act on."""
    name = type(err).__name__
    text = str(err)
    if not local and ("RepositoryNotFound" in name or "404" in text or "not a valid" in text):
        return StmemError(
            f"No model '{spec}' found on the Hugging Face Hub. Check the spelling (e.g. "
            "'openai-community/gpt2') or use a local folder."
        )
    if not local and ("safetensors" in text.lower() or "EntryNotFound" in name):
        return StmemError(
            f"'{spec}' has no safetensors weights; only safetensors weights are loaded."
        )
    if "Unrecognized model" in text or "does not recognize this architecture" in text:
        return StmemError(
            f"This version of transformers does not know the architecture of '{spec}'. "
            "Upgrading transformers or passing trust_remote_code may help."
        )
    return StmemError(f"Could not load {what} from '{spec}': {name}: {text.splitlines()[0]}")


def _count_heads(config) -> int:
    text_config = config.get_text_config(decoder=True)
    for source in (text_config, config):
        for key in _HEAD_KEYS:
            value = getattr(source, key, None)
            if isinstance(value, int) and value > 0:
                return value
    return 0


def _model_kind(config) -> ModelKind:
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    )

    if getattr(config, "is_encoder_decoder", False):
        return "encoder-decoder"
    if getattr(config, "is_decoder", False):
        return "decoder"
    architectures = getattr(config, "architectures", None) or []
    if any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in architectures):
        return "decoder"
    model_type = getattr(config, "model_type", "")
    if model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES:
        return "encoder"
    if model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        return "decoder"
    return "encoder"


def _load_weights(spec, source, local, config, kind, dtype, trust_remote_code):
    from transformers import (
        AutoModel,
        AutoModelForCausalLM,
        AutoModelForMaskedLM,
        AutoModelForSeq2SeqLM,
    )

    architectures = getattr(config, "architectures", None) or []
    if kind == "encoder-decoder":
        auto = AutoModelForSeq2SeqLM
    elif kind == "decoder":
        auto = AutoModelForCausalLM
    elif any(a.endswith("ForMaskedLM") for a in architectures):
        auto = AutoModelForMaskedLM
    else:
        auto = AutoModel
    try:
        return auto.from_pretrained(
            source,
            config=config,
            dtype=dtype,
            use_safetensors=True,
            trust_remote_code=trust_remote_code,
        )
    except (OSError, ValueError, KeyError, RuntimeError) as err:
        raise _load_error(spec, local, err, "the weights") from err
    except Exception as err:  # safetensors' own errors for damaged files are not OSErrors
        if "safetensor" in type(err).__module__ + type(err).__name__.lower():
            raise StmemError(
                f"The weights of '{spec}' are damaged ({err}). Save or download the model again."
            ) from err
        raise


def _load_tokenizer(spec, source, local, kind, trust_remote_code):
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise _load_error(spec, local, err, "the tokenizer") from err
    if kind == "decoder" and tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _is_attention_class(module: torch.nn.Module) -> bool:
    name = type(module).__name__.lower()
    return "attention" in name or name.endswith("attn")


def _describe(spec, model, tokenizer, kind, device, dtype) -> LoadedModel:
    config = model.config
    text_config = config.get_text_config(decoder=True)
    n_heads = _count_heads(config)
    n_kv_heads = getattr(text_config, "num_key_value_heads", None) or n_heads
    if kind == "encoder-decoder":
        n_layers = _first_int(config, ("decoder_layers", "num_decoder_layers", "num_layers"))
        n_encoder_layers = _first_int(config, ("encoder_layers", "num_layers"))
    else:
        n_layers = _first_int(text_config, ("num_hidden_layers", "n_layer", "num_layers"))
        n_encoder_layers = 0
    tensors = list(model.parameters()) + list(model.buffers())
    max_positions = next(
        (v for k in _CONTEXT_KEYS if isinstance(v := getattr(text_config, k, None), int)), None
    )
    return LoadedModel(
        spec=spec,
        model=model,
        tokenizer=tokenizer,
        kind=kind,
        n_layers=n_layers,
        n_encoder_layers=n_encoder_layers,
        n_heads=n_heads,
        n_kv_heads=int(n_kv_heads),
        n_params=sum(p.numel() for p in model.parameters()),
        device=device,
        dtype=dtype,
        memory_bytes=sum(t.numel() * t.element_size() for t in tensors),
        max_positions=max_positions,
    )


def _first_int(config, keys: tuple[str, ...]) -> int:
    for key in keys:
        value = getattr(config, key, None)
        if isinstance(value, int):
            return value
    return 0


def _human_count(n: int) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(n)


def _human_bytes(n: int) -> str:
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"
