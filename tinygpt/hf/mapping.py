"""Hugging Face transformers interop: our model config and weights <-> a transformers architecture's.

TinyGPT's options pick one of five transformers architectures (``architecture``):

    learned positions, LayerNorm, GELU or ReLU²      -> gpt2       (GPT2LMHeadModel)
    RoPE, LayerNorm, GELU or ReLU² (parallel or not) -> gpt_neox   (GPTNeoXForCausalLM)
    RoPE, RMSNorm, SwiGLU                            -> llama      (LlamaForCausalLM)
      ... with sliding_window                        -> mistral    (MistralForCausalLM)
      ... with qk_norm (and maybe sliding_window)    -> qwen3      (Qwen3ForCausalLM)

A combination none of them has is refused with one line naming the option (``model.logit_softcap``
too: Gemma 2 caps its logits, but its block has extra norms and scales the embedding). The weights are a copy:
names map module by module (``NAMES``), GPT-2's Conv1D weights are stored transposed, and our fused
``c_attn`` (rows [q | k | v]) is split into q/k/v projections (Llama family) or interleaved per head
(GPT-NeoX's ``query_key_value``: [q_h, k_h, v_h] for each head h).

The config side is plain data (dicts), so this module imports neither transformers nor safetensors;
``tinygpt.hf.export`` (writing a folder) and ``tinygpt.hf.init_from`` (reading one) do, when they are
used, after ``require_transformers`` has checked the installed version.
"""

import re
from dataclasses import dataclass
from typing import Any

import torch

from tinygpt.config.records import MODEL_ADDED
from tinygpt.errors import UserError
from tinygpt.model.mlp import swiglu_hidden_size

ARCHITECTURES = {  # model_type -> the transformers class for causal LM
    "gpt2": "GPT2LMHeadModel",
    "gpt_neox": "GPTNeoXForCausalLM",
    "llama": "LlamaForCausalLM",
    "mistral": "MistralForCausalLM",
    "qwen3": "Qwen3ForCausalLM",
}
GELU_TANH = "gelu_pytorch_tanh"  # F.gelu(approximate="tanh"), what GeluMLP computes
GELU_TANH_NAMES = (GELU_TANH, "gelu_new")  # the same function in transformers' ACT2FN
RELU2 = "relu2"  # transformers' ACT2FN name for relu(x)^2, what ReLU2MLP computes
ACTIVATIONS = {"GeluMLP": GELU_TANH, "ReLU2MLP": RELU2}  # our un-gated MLPs -> GPT-2 / GPT-NeoX's activation
MLP_OPTIONS = {"GeluMLP": "model/mlp=gelu", "ReLU2MLP": "model/mlp=relu2", "SwiGLU": "model/mlp=swiglu"}

# Our module -> theirs ({i}: the layer), per architecture family; the parameter suffix (.weight,
# .bias) is kept. c_attn is not here: it is split or interleaved (``to_hf_state``).
LLAMA_NAMES = {
    "transformer.wte": "model.embed_tokens",
    "transformer.h.{i}.ln_1": "model.layers.{i}.input_layernorm",
    "transformer.h.{i}.attn.c_proj": "model.layers.{i}.self_attn.o_proj",
    "transformer.h.{i}.attn.q_norm": "model.layers.{i}.self_attn.q_norm",
    "transformer.h.{i}.attn.k_norm": "model.layers.{i}.self_attn.k_norm",
    "transformer.h.{i}.ln_2": "model.layers.{i}.post_attention_layernorm",
    "transformer.h.{i}.mlp.gate_proj": "model.layers.{i}.mlp.gate_proj",
    "transformer.h.{i}.mlp.up_proj": "model.layers.{i}.mlp.up_proj",
    "transformer.h.{i}.mlp.down_proj": "model.layers.{i}.mlp.down_proj",
    "transformer.ln_f": "model.norm",
    "lm_head": "lm_head",
}
NEOX_NAMES = {
    "transformer.wte": "gpt_neox.embed_in",
    "transformer.h.{i}.ln_1": "gpt_neox.layers.{i}.input_layernorm",
    "transformer.h.{i}.attn.c_attn": "gpt_neox.layers.{i}.attention.query_key_value",
    "transformer.h.{i}.attn.c_proj": "gpt_neox.layers.{i}.attention.dense",
    "transformer.h.{i}.ln_2": "gpt_neox.layers.{i}.post_attention_layernorm",
    "transformer.h.{i}.mlp.c_fc": "gpt_neox.layers.{i}.mlp.dense_h_to_4h",
    "transformer.h.{i}.mlp.c_proj": "gpt_neox.layers.{i}.mlp.dense_4h_to_h",
    "transformer.ln_f": "gpt_neox.final_layer_norm",
    "lm_head": "lm_head",
}
GPT2_NAMES = {  # GPT-2's names are ours
    name: name
    for name in (
        "transformer.wte",
        "transformer.wpe",
        "transformer.h.{i}.ln_1",
        "transformer.h.{i}.attn.c_attn",
        "transformer.h.{i}.attn.c_proj",
        "transformer.h.{i}.ln_2",
        "transformer.h.{i}.mlp.c_fc",
        "transformer.h.{i}.mlp.c_proj",
        "transformer.ln_f",
        "lm_head",
    )
}
NAMES = {"gpt2": GPT2_NAMES, "gpt_neox": NEOX_NAMES, "llama": LLAMA_NAMES, "mistral": LLAMA_NAMES}
NAMES["qwen3"] = LLAMA_NAMES
QKV_PROJ = ("q_proj", "k_proj", "v_proj")  # the Llama family's attention inputs, split from c_attn
# Buffers some transformers versions saved with the weights (masks, RoPE tables): not weights.
IGNORED = re.compile(r".*(\.attn\.bias|\.attn\.masked_bias|rotary_emb\.inv_freq)$")


@dataclass(frozen=True)
class Options:
    """Our model config (cfg.model as a resolved dict), read as what decides the architecture."""

    norm: str  # "LayerNorm" | "RMSNorm"
    norm_eps: float
    norm_bias: bool  # LayerNorm's own bias (follows model.bias unless set apart)
    pos: str  # "LearnedPositions" | "RoPE"
    rope_base: float
    mlp: str  # "GeluMLP" | "ReLU2MLP" | "SwiGLU"
    mlp_hidden: int
    n_layer: int
    n_head: int
    n_kv_head: int
    n_embd: int
    block_size: int
    bias: bool
    tie_weights: bool
    qk_norm: bool
    parallel_block: bool
    sliding_window: int | None
    dropout: float
    logit_softcap: float | None


def class_name(part: dict[str, Any], key: str) -> str:
    target = part.get("_target_") if isinstance(part, dict) else None
    if not isinstance(target, str):
        raise UserError(f"{key} has no _target_; it is not a TinyGPT model config")
    return target.rsplit(".", 1)[-1]


# model options no transformers architecture has -> their off value (model.zero_init_proj is not
# here: it only sets the starting weights, and the trained model is a plain one)
NO_ARCHITECTURE = {key: MODEL_ADDED[key] for key in ("value_embeds", "unet_skips", "window_pattern")}


def refuse_speedrun_options(model: dict[str, Any]) -> None:
    """Refuse, naming it, a speedrun option that changes what the model computes (transformers has none)."""
    for key, off in NO_ARCHITECTURE.items():
        value = model.get(key, off)
        if value != off and not (key == "window_pattern" and "S" not in str(value)):  # all L: plain windows
            raise UserError(
                f"model.{key}={value} has no transformers architecture; export a run trained with "
                f"model.{key}={'null' if off is None else str(off).lower()}"
            )


def read_options(model: dict[str, Any]) -> Options:
    """The options of a resolved model config (``effective_config.json``'s ``model``)."""
    refuse_speedrun_options(model)
    norm, pos, mlp = model["norm"], model["pos"], model["mlp"]
    n_embd = model["n_embd"]
    mlp_kind = class_name(mlp, "model.mlp")
    if mlp_kind == "SwiGLU":
        hidden = swiglu_hidden_size(n_embd, mlp.get("multiple_of", 64))
    else:
        hidden = mlp.get("expansion", 4) * n_embd
    return Options(
        norm=class_name(norm, "model.norm"),
        norm_eps=norm.get("eps", 1e-5),
        norm_bias=norm.get("bias", True),
        pos=class_name(pos, "model.pos"),
        rope_base=pos.get("base", 10000.0),
        mlp=mlp_kind,
        mlp_hidden=hidden,
        n_layer=model["n_layer"],
        n_head=model["n_head"],
        n_kv_head=model.get("n_kv_head") or model["n_head"],
        n_embd=n_embd,
        block_size=model["block_size"],
        bias=model.get("bias", True),
        tie_weights=model.get("tie_weights", True),
        qk_norm=model.get("qk_norm", False),
        parallel_block=model.get("parallel_block", False),
        sliding_window=model.get("sliding_window"),
        dropout=model.get("dropout", 0.0),
        logit_softcap=model.get("logit_softcap"),
    )


def refuse(option: str, arch_hint: str, fix: str) -> None:
    raise UserError(f"{option} has no transformers architecture {arch_hint}; {fix}")


def gelu_family_checks(o: Options, where: str, other: str) -> None:
    """GPT-2 and GPT-NeoX: LayerNorm, GELU, biases everywhere, full multi-head attention."""
    for option, bad, fix in (
        ("model/norm=rmsnorm", o.norm != "LayerNorm", f"use model/norm=layernorm, or {other}"),
        ("model/mlp=swiglu", o.mlp not in ACTIVATIONS, f"use model/mlp=gelu, or {other}"),
        ("model.qk_norm=true", o.qk_norm, f"use model.qk_norm=false, or {other}"),
        (f"model.sliding_window={o.sliding_window}", o.sliding_window is not None, f"drop it, or {other}"),
        (f"model.n_kv_head={o.n_kv_head}", o.n_kv_head != o.n_head, f"use model.n_kv_head=null, or {other}"),
        ("model.bias=false", not (o.bias and o.norm_bias), f"use model.bias=true, or {other}"),
    ):
        if bad:
            refuse(option, where, fix)


def architecture(o: Options) -> str:
    """The transformers model_type that computes exactly what a model with options ``o`` computes."""
    if o.norm not in ("LayerNorm", "RMSNorm") or o.pos not in ("LearnedPositions", "RoPE"):
        refuse(f"model.norm={o.norm} / model.pos={o.pos}", "for export", "use the parts in conf/model/")
    if o.mlp not in MLP_OPTIONS:
        refuse(f"model.mlp={o.mlp}", "for export", "use model/mlp=gelu, relu2 or swiglu")
    if o.logit_softcap is not None:  # Gemma 2 caps logits, but its block adds norms and an embedding scale
        refuse(f"model.logit_softcap={o.logit_softcap}", "for export", "train with model.logit_softcap=null")
    if o.pos == "LearnedPositions":
        if o.parallel_block:
            refuse("model.parallel_block=true", "with learned positions", "use model/pos=rope (GPT-NeoX)")
        gelu_family_checks(o, "with learned positions (GPT-2)", "model/pos=rope model=llama (Llama family)")
        return "gpt2"
    if o.norm == "LayerNorm":
        gelu_family_checks(o, "with LayerNorm and RoPE (GPT-NeoX)", "model/norm=rmsnorm (Llama family)")
        return "gpt_neox"
    return llama_family(o)


def llama_family(o: Options) -> str:
    where = "with RMSNorm (Llama, Mistral, Qwen3)"
    if o.mlp != "SwiGLU":
        refuse(MLP_OPTIONS[o.mlp], where, "use model/mlp=swiglu, or model/norm=layernorm (GPT-NeoX)")
    if o.parallel_block:
        refuse("model.parallel_block=true", where, "use model/norm=layernorm model/mlp=gelu (GPT-NeoX)")
    if o.qk_norm:
        if o.bias:
            refuse("model.bias=true", "with qk_norm (Qwen3 has no MLP biases)", "use model.bias=false")
        return "qwen3"
    if o.sliding_window is not None:
        if o.bias:
            refuse("model.bias=true", "with sliding_window (Mistral has no biases)", "use model.bias=false")
        return "mistral"
    return "llama"


def to_hf_config(model: dict[str, Any], vocab_size: int) -> dict[str, Any]:
    """The transformers config (as config.json's keys, ``model_type`` included) of our model config."""
    o = read_options(model)
    arch = architecture(o)
    common = dict(
        model_type=arch,
        architectures=[ARCHITECTURES[arch]],
        vocab_size=vocab_size,
        tie_word_embeddings=o.tie_weights,
    )
    if arch == "gpt2":
        return dict(common, **gpt2_config(o))
    rope = dict(
        common,
        hidden_size=o.n_embd,
        intermediate_size=o.mlp_hidden,
        num_hidden_layers=o.n_layer,
        num_attention_heads=o.n_head,
        max_position_embeddings=o.block_size,
        attention_dropout=o.dropout,
        rope_parameters={"rope_type": "default", "rope_theta": o.rope_base},
    )
    if arch == "gpt_neox":
        rope["rope_parameters"]["partial_rotary_factor"] = 1.0  # NeoX's default rotates a quarter
        return dict(
            rope,
            layer_norm_eps=o.norm_eps,
            hidden_act=ACTIVATIONS[o.mlp],
            use_parallel_residual=o.parallel_block,
            attention_bias=True,
            hidden_dropout=o.dropout,
        )
    return dict(rope, **llama_config(o, arch))


def gpt2_config(o: Options) -> dict[str, Any]:
    return dict(
        n_positions=o.block_size,
        n_embd=o.n_embd,
        n_layer=o.n_layer,
        n_head=o.n_head,
        n_inner=o.mlp_hidden,
        activation_function=ACTIVATIONS[o.mlp],
        layer_norm_epsilon=o.norm_eps,
        resid_pdrop=o.dropout,
        embd_pdrop=o.dropout,
        attn_pdrop=o.dropout,
    )


def llama_config(o: Options, arch: str) -> dict[str, Any]:
    """The Llama family's own keys: GQA, RMSNorm, SiLU, and per architecture biases or the window."""
    keys = dict(num_key_value_heads=o.n_kv_head, head_dim=o.n_embd // o.n_head, rms_norm_eps=o.norm_eps)
    keys["hidden_act"] = "silu"
    if arch == "llama":
        return dict(keys, attention_bias=o.bias, mlp_bias=o.bias)
    if arch == "mistral":
        return dict(keys, sliding_window=o.sliding_window)
    window = o.sliding_window is not None  # Qwen3: every layer slides, or none
    return dict(
        keys,
        attention_bias=False,
        use_sliding_window=window,
        sliding_window=o.sliding_window,
        max_window_layers=0 if window else o.n_layer,
        layer_types=["sliding_attention" if window else "full_attention"] * o.n_layer,
    )


def require_transformers() -> None:
    """Refuse transformers older than 5 in one line: 4.x reads neither the tokenizer_config.json 5.x
    writes (``TokenizersBackend``) nor ``rope_parameters`` (it would use another RoPE base unwarned)."""
    import transformers

    major = transformers.__version__.split(".")[0]
    if not major.isdigit() or int(major) < 5:
        raise UserError(
            f"transformers {transformers.__version__} is installed; TinyGPT's Hugging Face folders need "
            "transformers>=5: pip install -e '.[hf]' (or pip install -U transformers)"
        )


# ---- weights ------------------------------------------------------------------------------------


def rename(name: str, table: dict[str, str]) -> str | None:
    """``name`` (a parameter) through ``table`` (module -> module, {i} for the layer), or None."""
    module, _, param = name.rpartition(".")
    layer = re.search(r"\.(\d+)(\.|$)", module)
    key = module if layer is None else module[: layer.start(1)] + "{i}" + module[layer.end(1) :]
    target = table.get(key)
    if target is None:
        return None
    return f"{target.format(i=layer.group(1)) if layer else target}.{param}"


def qkv_sizes(o: Options) -> list[int]:
    head_dim = o.n_embd // o.n_head
    return [o.n_head * head_dim, o.n_kv_head * head_dim, o.n_kv_head * head_dim]


def per_head(qkv: torch.Tensor, n_head: int) -> torch.Tensor:
    """Our rows [q | k | v] -> GPT-NeoX's [q_0 k_0 v_0 | q_1 k_1 v_1 | ...] (weight or bias)."""
    q, k, v = (t.reshape(n_head, -1, *t.shape[1:]) for t in qkv.chunk(3))  # (nh, hd, ...)
    return torch.stack([q, k, v], dim=1).reshape(qkv.shape)


def from_per_head(qkv: torch.Tensor, n_head: int) -> torch.Tensor:
    """GPT-NeoX's per-head [q_h k_h v_h] rows -> ours [q | k | v]."""
    heads = qkv.reshape(n_head, 3, -1, *qkv.shape[1:])  # (nh, 3, hd, ...)
    return torch.cat([heads[:, j].reshape(-1, *qkv.shape[1:]) for j in range(3)])


def conv1d(name: str, arch: str, tensor: torch.Tensor) -> torch.Tensor:
    """GPT-2 stores its block's linear weights as Conv1D, (in, out): the transpose of nn.Linear's."""
    if arch == "gpt2" and ".h." in name and name.endswith(".weight") and tensor.dim() == 2:
        return tensor.t()
    return tensor


def to_hf_state(state: dict[str, torch.Tensor], model: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Our state dict -> the transformers architecture's (``to_hf_config``'s), tensors contiguous."""
    o = read_options(model)
    arch = architecture(o)
    out: dict[str, torch.Tensor] = {}
    for name, tensor in state.items():
        if arch in ("llama", "mistral", "qwen3") and ".attn.c_attn." in name:
            prefix = name.replace("transformer.h.", "model.layers.").split(".attn.")[0]
            for proj, part in zip(QKV_PROJ, tensor.split(qkv_sizes(o)), strict=True):
                out[f"{prefix}.self_attn.{proj}.{name.rsplit('.', 1)[1]}"] = part.contiguous()
            continue
        if arch == "gpt_neox" and ".attn.c_attn." in name:
            tensor = per_head(tensor, o.n_head)
        target = rename(name, NAMES[arch])
        if target is None:
            raise ValueError(f"no {arch} name for TinyGPT parameter {name}")
        out[target] = conv1d(name, arch, tensor).contiguous()
    return out


def from_hf_state(
    state: dict[str, torch.Tensor], model: dict[str, Any], source: str
) -> dict[str, torch.Tensor]:
    """A transformers state dict (as in model.safetensors) -> ours, for our model config ``model``.

    A tied lm_head missing from the file (transformers leaves it out) is the embedding; a name we
    have no place for is refused, naming it.
    """
    o = read_options(model)
    arch = architecture(o)
    if arch == "gpt2" and not any(k.startswith("transformer.") for k in state):
        state = {k if k.startswith("lm_head.") else f"transformer.{k}": v for k, v in state.items()}
    inverse = {theirs: ours for ours, theirs in NAMES[arch].items()}
    out: dict[str, torch.Tensor] = {}
    qkv: dict[str, dict[str, torch.Tensor]] = {}
    for name, tensor in state.items():
        proj = re.match(r"model\.layers\.(\d+)\.self_attn\.([qkv]_proj)\.(weight|bias)$", name)
        if proj:
            ours = f"transformer.h.{proj.group(1)}.attn.c_attn.{proj.group(3)}"
            qkv.setdefault(ours, {})[proj.group(2)] = tensor
            continue
        if IGNORED.match(name):
            continue
        ours = rename(name, inverse)
        if ours is None:
            raise UserError(f"{source} holds {name}, which has no place in a TinyGPT {arch} model")
        tensor = conv1d(ours, arch, tensor)
        out[ours] = from_per_head(tensor, o.n_head) if arch == "gpt_neox" and ".c_attn." in ours else tensor
    for ours, parts in qkv.items():
        if set(parts) != set(QKV_PROJ):
            raise UserError(f"{source} lacks some of q_proj, k_proj, v_proj for {ours}")
        out[ours] = torch.cat([parts[p] for p in QKV_PROJ])
    if o.tie_weights:
        out.setdefault("lm_head.weight", out.get("transformer.wte.weight"))
    return out


# ---- their config -> ours (import) --------------------------------------------------------------


def our_model(
    norm: dict[str, Any], pos: dict[str, Any], mlp: dict[str, Any], **options: Any
) -> dict[str, Any]:
    """A resolved TinyGPT model config (as conf/model/*.yaml compose it) with the given parts."""
    defaults = dict(n_kv_head=None, dropout=0.0, qk_norm=False, parallel_block=False, sliding_window=None)
    # the options added since 0.1, off as transformers has them (no document mask, no soft-cap, ...)
    defaults |= MODEL_ADDED
    parts = dict(norm=norm, pos=pos, mlp=mlp)
    return {"_target_": "tinygpt.model.GPT", "_partial_": True, **defaults, **options, **parts}


def part(target: str, **options: Any) -> dict[str, Any]:
    return {"_target_": target, "_partial_": True, **options}


def require(ok: bool, source: str, what: str) -> None:
    if not ok:
        raise UserError(f"{source}: {what}; TinyGPT cannot import this model")


def rope_theta(c: dict[str, Any], source: str) -> float:
    """The RoPE base of a config, refusing scaled or partial rotary embeddings (ours rotate every dim)."""
    rope = c.get("rope_parameters") or {}
    require(
        rope.get("rope_type", "default") == "default", source, f"it scales RoPE ({rope.get('rope_type')})"
    )
    require(not c.get("rope_scaling"), source, "it scales RoPE (rope_scaling)")
    partial = rope.get("partial_rotary_factor", c.get("rotary_pct", 1.0))
    require(partial == 1.0, source, f"it rotates a part of each head ({partial}), TinyGPT rotates all of it")
    return float(rope.get("rope_theta", c.get("rope_theta", 10000.0)))


def multiple_of(n_embd: int, hidden: int, source: str) -> int:
    """SwiGLU's ``multiple_of`` giving ``hidden`` (the rounding TinyGPT's SwiGLU sizes itself by)."""
    for m in (64, 256, 128, 32, 16, 8, 4, 2, 1, hidden):  # TinyGPT's default first
        if swiglu_hidden_size(n_embd, m) == hidden:
            return m
    raise UserError(
        f"{source}: intermediate_size={hidden} is below the smallest SwiGLU width TinyGPT builds for "
        f"hidden_size={n_embd} ({swiglu_hidden_size(n_embd, 1)}); TinyGPT cannot import this model"
    )


def from_hf_config(c: dict[str, Any], source: str) -> dict[str, Any]:
    """Our model config for a transformers config (``PretrainedConfig.to_dict()``, defaults filled in)."""
    arch = c.get("model_type")
    if arch not in ARCHITECTURES:
        raise UserError(
            f"{source}: model_type {arch!r} is not one TinyGPT imports; it imports {', '.join(ARCHITECTURES)}"
        )
    if arch == "gpt2":
        return gpt2_model(c, source)
    heads, n_embd = c["num_attention_heads"], c["hidden_size"]
    require(n_embd % heads == 0, source, f"hidden_size={n_embd} is not a multiple of the {heads} heads")
    require(
        c.get("head_dim") in (None, n_embd // heads), source, f"head_dim={c.get('head_dim')} != hidden/heads"
    )
    shape = dict(
        n_layer=c["num_hidden_layers"],
        n_head=heads,
        n_embd=n_embd,
        block_size=c["max_position_embeddings"],
        tie_weights=bool(c.get("tie_word_embeddings")),
    )
    pos = part("tinygpt.model.RoPE", base=rope_theta(c, source))
    if arch == "gpt_neox":
        return neox_model(c, source, pos, shape)
    return llama_model(c, source, pos, shape)


def neox_model(c: dict[str, Any], source: str, pos: dict[str, Any], shape: dict[str, Any]) -> dict[str, Any]:
    n_embd = c["hidden_size"]
    mlp_target = ungated_mlp(c.get("hidden_act"), source)
    require(c.get("attention_bias", True), source, "its attention has no biases")
    require(c["intermediate_size"] % n_embd == 0, source, "intermediate_size is no multiple of hidden_size")
    norm = part("torch.nn.LayerNorm", eps=c["layer_norm_eps"], bias=True)
    mlp = part(mlp_target, expansion=c["intermediate_size"] // n_embd)
    return our_model(norm, pos, mlp, bias=True, parallel_block=bool(c["use_parallel_residual"]), **shape)


def llama_model(c: dict[str, Any], source: str, pos: dict[str, Any], shape: dict[str, Any]) -> dict[str, Any]:
    """Llama, Mistral or Qwen3: RMSNorm, SwiGLU, GQA; Qwen3 adds QK-norm, Mistral a sliding window."""
    arch, heads = c["model_type"], c["num_attention_heads"]
    require(c.get("hidden_act") == "silu", source, f"its activation is {c.get('hidden_act')}, not silu")
    norm = part("torch.nn.RMSNorm", eps=c["rms_norm_eps"])
    mlp = part(
        "tinygpt.model.SwiGLU", multiple_of=multiple_of(c["hidden_size"], c["intermediate_size"], source)
    )
    bias = bool(c.get("attention_bias", False))
    require(bias == bool(c.get("mlp_bias", bias)), source, "attention_bias and mlp_bias differ")
    require(not (arch == "qwen3" and bias), source, "attention_bias=true (Qwen3's MLP has no biases)")
    kv = c.get("num_key_value_heads") or heads
    kv = None if kv == heads else kv  # as our configs say plain multi-head
    window_size = window(c, source)
    return our_model(
        norm, pos, mlp, bias=bias, n_kv_head=kv, qk_norm=arch == "qwen3", sliding_window=window_size, **shape
    )


def window(c: dict[str, Any], source: str) -> int | None:
    """The sliding window of a Mistral or Qwen3 config, if every layer has it (TinyGPT's layers agree)."""
    if c["model_type"] == "mistral":
        return c.get("sliding_window")
    if c["model_type"] != "qwen3" or not c.get("use_sliding_window"):
        return None
    kinds = set(c.get("layer_types") or [])
    require(kinds == {"sliding_attention"}, source, f"its layers mix attention kinds ({sorted(kinds)})")
    return c["sliding_window"]


def ungated_mlp(activation: Any, source: str) -> str:
    """Our MLP class (a ``_target_``) for GPT-2's or GPT-NeoX's activation name, refusing other ones."""
    if activation in GELU_TANH_NAMES:
        return "tinygpt.model.GeluMLP"
    require(activation == RELU2, source, f"its activation is {activation}")
    return "tinygpt.model.ReLU2MLP"


def gpt2_model(c: dict[str, Any], source: str) -> dict[str, Any]:
    n_embd, n_inner = c["n_embd"], c.get("n_inner") or 4 * c["n_embd"]
    mlp_target = ungated_mlp(c.get("activation_function"), source)
    require(n_inner % n_embd == 0, source, f"n_inner={n_inner} is no multiple of n_embd={n_embd}")
    require(c.get("scale_attn_weights", True), source, "it does not scale attention scores")
    require(not c.get("scale_attn_by_inverse_layer_idx"), source, "it scales attention by layer")
    return our_model(
        part("torch.nn.LayerNorm", eps=c["layer_norm_epsilon"], bias=True),
        part("tinygpt.model.LearnedPositions"),
        part(mlp_target, expansion=n_inner // n_embd),
        n_layer=c["n_layer"],
        n_head=c["n_head"],
        n_embd=n_embd,
        block_size=c["n_positions"],
        bias=True,
        tie_weights=bool(c.get("tie_word_embeddings", True)),
    )
