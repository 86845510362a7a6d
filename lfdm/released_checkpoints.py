"""Load the authors' released checkpoints (`RegionMM_*.pth`, `flowdiff_*.pth`) into our models.

Files are read with `torch.load(weights_only=True)` only: a `.pth` from the internet is untrusted, and the released
files hold nothing but tensors, numbers and strings. Loading is strict: every tensor is used and none is missing;
a mismatch raises one error that lists the missing, unexpected and wrongly shaped keys.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

import torch

from lfdm.models.lfae import LatentFlowAutoencoder


def read_checkpoint(checkpoint: str | os.PathLike | Mapping) -> Mapping:
    """A checkpoint dict from a path (read with `weights_only=True`) or the dict itself."""
    if isinstance(checkpoint, Mapping):
        return checkpoint
    path = os.fspath(checkpoint)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint {path!r} does not exist; pass the path of a released .pth file.")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # pickle errors come in many types; all mean "not a plain tensor checkpoint"
        raise ValueError(
            f"could not read {path!r} as a weights-only PyTorch checkpoint ({error}). Released LFDM checkpoints "
            "load this way; a file that does not is damaged or not a checkpoint."
        ) from error


def load_state_dict_strict(module: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], *, source: str) -> None:
    """Copy `state_dict` into `module`, or raise one ValueError listing missing, unexpected and mis-shaped keys."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    misshaped = sorted(
        f"{key}: checkpoint {tuple(state_dict[key].shape)} vs model {tuple(expected[key].shape)}"
        for key in set(expected) & set(state_dict)
        if tuple(state_dict[key].shape) != tuple(expected[key].shape)
    )
    if missing or unexpected or misshaped:
        lines = [f"{source} does not match the model built from the given parameters:"]
        for title, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", misshaped)):
            if keys:
                shown = keys[:20] + ([f"... and {len(keys) - 20} more"] if len(keys) > 20 else [])
                lines.append(f"  {title} ({len(keys)}): " + ", ".join(shown))
        lines.append("Check that the model parameters (the YAML config / preset) belong to this checkpoint.")
        raise ValueError("\n".join(lines))
    module.load_state_dict(state_dict, strict=True)


# --- stage one: the latent flow autoencoder (RegionMM_*.pth) -------------------------------------------------------

# Key mapping, official -> ours: the checkpoint holds one state dict per network, and inside each one our keys are
# the authors' keys. So the mapping is a prefix per sub-dict, nothing else:
#     checkpoint["generator"][key]         -> "generator." + key         (encoder, decoder, pixelwise flow predictor)
#     checkpoint["region_predictor"][key]  -> "region_predictor." + key
#     checkpoint["bg_predictor"][key]      -> "background_predictor." + key
# Every other top-level entry (`example`, `epoch`, `optimizer`, MRAA's `avd_network`) is training state, not model.
LFAE_NETWORKS = {
    "generator": "generator",
    "region_predictor": "region_predictor",
    "bg_predictor": "background_predictor",
}

# The authors' constructor defaults for keys a config may omit (LFAE/modules/*.py), then which values we support:
# only the options of the released MUG / MHAD / NATOPS configs.
_OFFICIAL_DEFAULTS = {
    "model_params": {"estimate_affine": False, "revert_axis_swap": True},
    "region_predictor_params": {"scale_factor": 1, "pca_based": False, "fast_svd": False, "pad": 3},
    "bg_predictor_params": {"bg_type": "zero"},
    "generator_params": {"skips": False, "pixelwise_flow_predictor_params": None},
    "pixelwise_flow_predictor_params": {
        "scale_factor": 1,
        "estimate_occlusion_map": False,
        "use_covar_heatmap": False,
        "use_deformed_source": True,
        "region_var": 0.01,  # only used without covariance heat maps, which we do not support
    },
}
_OFFICIAL_REQUIRED = {
    "model_params": (
        "num_regions",
        "num_channels",
        "region_predictor_params",
        "bg_predictor_params",
        "generator_params",
    ),
    "region_predictor_params": ("block_expansion", "max_features", "num_blocks", "temperature"),
    "bg_predictor_params": ("block_expansion", "max_features", "num_blocks"),
    "generator_params": ("block_expansion", "max_features", "num_down_blocks", "num_bottleneck_blocks"),
    "pixelwise_flow_predictor_params": ("block_expansion", "max_features", "num_blocks"),
}
_OFFICIAL_SUPPORTED = {
    "model_params": {"estimate_affine": True},
    "region_predictor_params": {"pca_based": True, "fast_svd": False},
    "bg_predictor_params": {"bg_type": "affine"},
    "generator_params": {"skips": True},
    "pixelwise_flow_predictor_params": {
        "estimate_occlusion_map": True,
        "use_covar_heatmap": True,
        "use_deformed_source": True,
    },
}
_OFFICIAL_IGNORED = {"model_params": ("avd_network_params",)}  # built by the authors' scripts, never trained


def _official_section(params: Mapping, name: str) -> dict:
    """One section of the official `model_params` with defaults filled in; raises on unknown or unsupported keys."""
    if not isinstance(params, Mapping):
        raise ValueError(f"official `{name}` must be a mapping; got {type(params).__name__}.")
    known = set(_OFFICIAL_DEFAULTS[name]) | set(_OFFICIAL_REQUIRED[name]) | set(_OFFICIAL_IGNORED.get(name, ()))
    unknown = sorted(set(params) - known)
    if unknown:
        raise ValueError(f"unknown key(s) {unknown} in official `{name}`; known keys: {sorted(known)}.")
    missing = [key for key in _OFFICIAL_REQUIRED[name] if key not in params]
    if missing:
        raise ValueError(f"official `{name}` lacks the required key(s) {missing}.")
    section = {**_OFFICIAL_DEFAULTS[name], **params}
    for key, supported in _OFFICIAL_SUPPORTED.get(name, {}).items():
        if section[key] != supported:
            raise ValueError(
                f"official `{name}.{key}` = {section[key]!r} is not supported: lfdm implements the options of the "
                f"released LFDM configs ({key}: {supported!r})."
            )
    return section


def lfae_config_from_official(model_params: Mapping, image_size: int = 128) -> dict:
    """`LatentFlowAutoencoder` kwargs from the `model_params` of an official LFAE config (config/mug128.yaml).

    `image_size` is the config's `dataset_params.frame_shape` (128 for every released model). MRAA's layout, with
    the shared keys under `common_params`, is accepted too. Raises ValueError for unknown keys and for options
    that the released configs do not use (e.g. `bg_type: zero`, `pca_based: False`, `fast_svd: True`).
    """
    if not isinstance(model_params, Mapping):
        raise ValueError(f"model_params must be a mapping; got {type(model_params).__name__}.")
    flat = {**model_params, **model_params.get("common_params", {})}
    flat.pop("common_params", None)
    top = _official_section(flat, "model_params")
    region = _official_section(top["region_predictor_params"], "region_predictor_params")
    background = _official_section(top["bg_predictor_params"], "bg_predictor_params")
    generator = _official_section(top["generator_params"], "generator_params")
    if generator["pixelwise_flow_predictor_params"] is None:
        raise ValueError("official `generator_params.pixelwise_flow_predictor_params` is required.")
    flow = _official_section(generator["pixelwise_flow_predictor_params"], "pixelwise_flow_predictor_params")
    return {
        "image_size": int(image_size),
        "num_channels": top["num_channels"],
        "num_regions": top["num_regions"],
        "region_block_expansion": region["block_expansion"],
        "region_max_features": region["max_features"],
        "region_num_blocks": region["num_blocks"],
        "region_temperature": float(region["temperature"]),
        "region_scale_factor": float(region["scale_factor"]),
        "region_pad": region["pad"],
        "background_block_expansion": background["block_expansion"],
        "background_max_features": background["max_features"],
        "background_num_blocks": background["num_blocks"],
        "block_expansion": generator["block_expansion"],
        "max_features": generator["max_features"],
        "num_down_blocks": generator["num_down_blocks"],
        "num_bottleneck_blocks": generator["num_bottleneck_blocks"],
        "flow_block_expansion": flow["block_expansion"],
        "flow_max_features": flow["max_features"],
        "flow_num_blocks": flow["num_blocks"],
        "flow_scale_factor": float(flow["scale_factor"]),
        "revert_axis_swap": bool(top["revert_axis_swap"]),
    }


def lfae_state_dict_from_official(checkpoint: str | os.PathLike | Mapping) -> dict[str, torch.Tensor]:
    """Our `LatentFlowAutoencoder` state dict from an official LFAE checkpoint (path or dict), by the key mapping
    above. Raises ValueError when one of the three networks is missing from the checkpoint."""
    state = read_checkpoint(checkpoint)
    absent = [name for name in LFAE_NETWORKS if not isinstance(state.get(name), Mapping)]
    if absent:
        raise ValueError(
            f"the checkpoint has no {absent} state dict(s) (top-level keys: {sorted(state)}); an LFAE checkpoint "
            "(RegionMM_*.pth) has `generator`, `region_predictor` and `bg_predictor`."
        )
    return {
        f"{ours}.{key}": tensor for official, ours in LFAE_NETWORKS.items() for key, tensor in state[official].items()
    }


def lfae_state_dict_to_official(state_dict: Mapping[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    """The inverse mapping: our state dict -> {"generator": ..., "region_predictor": ..., "bg_predictor": ...}."""
    official: dict[str, dict[str, torch.Tensor]] = {name: {} for name in LFAE_NETWORKS}
    for key, tensor in state_dict.items():
        prefix, _, rest = key.partition(".")
        matches = [name for name, ours in LFAE_NETWORKS.items() if ours == prefix]
        if not matches:
            raise ValueError(f"{key!r} belongs to none of the LFAE networks {sorted(LFAE_NETWORKS.values())}.")
        official[matches[0]][rest] = tensor
    return official


def load_official_lfae(
    checkpoint: str | os.PathLike | Mapping, model_params: Mapping, *, image_size: int = 128
) -> LatentFlowAutoencoder:
    """An eval-mode `LatentFlowAutoencoder` with the weights of an official checkpoint (`RegionMM_*.pth`).

    checkpoint: path (read with `torch.load(weights_only=True)`) or the loaded dict; model_params: the
    `model_params` mapping of the matching official YAML config; image_size: its frame size. Loading is strict:
    a ValueError lists the missing, unexpected and wrongly shaped keys.
    """
    model = LatentFlowAutoencoder(**lfae_config_from_official(model_params, image_size))
    source = checkpoint if not isinstance(checkpoint, Mapping) else "the LFAE checkpoint"
    load_state_dict_strict(model, lfae_state_dict_from_official(checkpoint), source=str(source))
    return model.eval()


# --- stage two: the flow diffusion U-Net (flowdiff_*.pth) ----------------------------------------------------------

UNET_PREFIX = "denoise_fn."
# The official U-Net constructor arguments we translate, and the values of those we do not (always these in the
# released models). Keys not given take the released MUG model's values.
_OFFICIAL_UNET_DEFAULTS = {
    "dim": 64,
    "dim_mults": (1, 2, 4, 8),
    "channels": 259,
    "attn_heads": 8,
    "attn_dim_head": 32,
    "init_kernel_size": 7,
    "resnet_groups": 8,
    "learn_null_cond": False,
    "use_deconv": True,
    "padding_mode": "zeros",
}
_OFFICIAL_UNET_FIXED = {
    "out_grid_dim": 2,
    "out_conf_dim": 1,
    "use_bert_text_cond": True,
    "init_dim": None,
    "use_sparse_linear_attn": True,
    "use_final_activation": False,
    "cond_dim": None,
}

# Our U-Net key -> the official key (inside `denoise_fn.`), applied in order. The official model nests its layers
# as Residual(`fn`) -> PreNorm(`fn`, `norm`) -> EinopsToAndFrom(`fn`) -> attention (the linear spatial attention
# has no EinopsToAndFrom) and indexes the layers of a level 0-4.
_UNET_KEY_RULES = (
    (r"^time_embedding\.linear_1\.", "time_mlp.1."),
    (r"^time_embedding\.linear_2\.", "time_mlp.3."),
    (r"^relative_position_bias\.embedding\.", "time_rel_pos_bias.relative_attention_bias."),
    (r"^null_label_embedding$", "null_cond_emb"),
    (r"^down_levels\.", "downs."),
    (r"^up_levels\.", "ups."),
    (r"^mid_resnet(\d)\.", r"mid_block\1."),
    (r"^flow_head\.", "final_conv."),
    (r"^occlusion_head\.", "occlusion_map."),
    (r"^(init_temporal|mid_spatial|mid_temporal)_attention\.attention\.", r"\1_attn.fn.fn.fn."),
    (r"^(init_temporal|mid_spatial|mid_temporal)_attention\.norm\.", r"\1_attn.fn.norm."),
    (r"\.resnet1\.", ".0."),
    (r"\.resnet2\.", ".1."),
    (r"\.spatial_attention\.attention\.", ".2.fn.fn."),
    (r"\.spatial_attention\.norm\.", ".2.fn.norm."),
    (r"\.temporal_attention\.attention\.", ".3.fn.fn.fn."),
    (r"\.temporal_attention\.norm\.", ".3.fn.norm."),
    (r"^(downs\.\d+)\.resample\.conv\.", r"\1.4."),
    (r"\.film\.1\.", ".mlp.1."),
    (r"\.block(\d)\.conv\.", r".block\1.proj."),
    (r"\.shortcut\.", ".res_conv."),
)


def unet_config_from_official(unet_params: Mapping) -> dict:
    """`FlowUNet3D` keyword arguments from the official `Unet3D` constructor arguments.

    `channels` is 3 + the image-feature channels; `learn_null_cond`, `use_deconv` and `padding_mode` select the
    NATOPS variant (learned null label, nearest + convolution up-sampling). Raises ValueError for arguments that
    the released models never used (other output heads, no label conditioning, ...).
    """
    unknown = sorted(set(unet_params) - set(_OFFICIAL_UNET_DEFAULTS) - set(_OFFICIAL_UNET_FIXED))
    if unknown:
        raise ValueError(
            f"unknown official Unet3D arguments {unknown}; expected keys of {sorted(_OFFICIAL_UNET_DEFAULTS)}."
        )
    fixed = dict(_OFFICIAL_UNET_FIXED)
    if unet_params.get("init_dim") == unet_params.get("dim", _OFFICIAL_UNET_DEFAULTS["dim"]):
        fixed["init_dim"] = unet_params["init_dim"]  # init_dim = dim is the default spelled out
    unsupported = {key: unet_params[key] for key, value in fixed.items() if unet_params.get(key, value) != value}
    if unsupported:
        raise ValueError(
            f"unsupported official Unet3D settings {unsupported}; the released models use {_OFFICIAL_UNET_FIXED}."
        )
    params = {**_OFFICIAL_UNET_DEFAULTS, **{k: v for k, v in unet_params.items() if k in _OFFICIAL_UNET_DEFAULTS}}
    return {
        "dim": int(params["dim"]),
        "dim_mults": tuple(int(m) for m in params["dim_mults"]),
        "sample_channels": 3,
        "feature_channels": int(params["channels"]) - 3,
        "label_dim": 768,
        "attn_heads": int(params["attn_heads"]),
        "attn_dim_head": int(params["attn_dim_head"]),
        "spatial_attn_dim_head": 32,
        "init_kernel_size": int(params["init_kernel_size"]),
        "resnet_groups": int(params["resnet_groups"]),
        "learn_null_label": bool(params["learn_null_cond"]),
        "upsample": "deconv" if params["use_deconv"] else "nearest",
        "padding_mode": str(params["padding_mode"]),
    }


def official_unet_keys(unet) -> dict[str, str]:
    """Our state-dict key -> the official key (without `denoise_fn.`) for a `FlowUNet3D`."""
    nearest = unet.config.upsample == "nearest"
    mapping = {}
    for key in unet.state_dict():
        official = key
        for pattern, replacement in _UNET_KEY_RULES:
            official = re.sub(pattern, replacement, official)
        # up-sampling: ConvTranspose3d at index 4, or Sequential(Upsample, Conv3d) whose conv is 4.1
        official = re.sub(r"^(ups\.\d+)\.resample\.conv\.", r"\1.4.1." if nearest else r"\1.4.", official)
        mapping[key] = official
    return mapping


def official_rotary_keys(unet) -> list[str]:
    """The official keys of the rotary frequencies: one copy per temporal attention (without `denoise_fn.`)."""
    from lfdm.models.attention import TemporalAttention

    mapping = official_unet_keys(unet)
    return [
        mapping[f"{name}.to_qkv.weight"].replace("to_qkv.weight", "rotary_emb.freqs")
        for name, module in unet.named_modules()
        if isinstance(module, TemporalAttention)
    ]


class _OfficialLayout:
    """A U-Net seen under the official key names (`denoise_fn.` prefix included), so that the strict loader
    checks and reports in the names of the checkpoint. The rotary frequencies are checked, not loaded: ours are
    computed, and every official copy must equal them."""

    def __init__(self, unet):
        self.unet = unet
        self.keys = {ours: UNET_PREFIX + theirs for ours, theirs in official_unet_keys(unet).items()}
        self.rotary_keys = [UNET_PREFIX + key for key in official_rotary_keys(unet)]

    def state_dict(self) -> dict[str, torch.Tensor]:
        ours = self.unet.state_dict()
        layout = {theirs: ours[key] for key, theirs in self.keys.items()}
        layout.update({key: self.unet.rotary_embedding.inverse_frequencies for key in self.rotary_keys})
        return layout

    def load_state_dict(self, state_dict: Mapping[str, torch.Tensor], strict: bool = True) -> None:
        frequencies = self.unet.rotary_embedding.inverse_frequencies
        wrong = [key for key in self.rotary_keys if not torch.allclose(state_dict[key].float(), frequencies, rtol=1e-6)]
        if wrong:
            raise ValueError(f"rotary frequencies {wrong} differ from 1/10000^(2i/d); this is not an LFDM checkpoint.")
        self.unet.load_state_dict({key: state_dict[theirs] for key, theirs in self.keys.items()}, strict=strict)


def load_official_unet(checkpoint: str | os.PathLike | Mapping, unet_params: Mapping):
    """A `FlowUNet3D` with the weights of an official diffusion checkpoint (`flowdiff_*.pth`).

    `checkpoint`: the path of the file or the dict it holds (key `diffusion`: the U-Net under `denoise_fn.` plus the
    12 schedule buffers, which must equal lfdm's schedule). `unet_params`: the official `Unet3D` arguments (see
    `unet_config_from_official`). Strict: every checkpoint tensor is used and every model tensor is filled.
    """
    from lfdm.models.unet3d import FlowUNet3D
    from lfdm.schedulers import SCHEDULE_BUFFER_NAMES, check_schedule_buffers

    source = checkpoint if isinstance(checkpoint, Mapping) else os.fspath(checkpoint)
    source = "the checkpoint" if isinstance(source, Mapping) else f"checkpoint {source!r}"
    contents = read_checkpoint(checkpoint)
    if "diffusion" not in contents:
        raise ValueError(
            f"{source} has no 'diffusion' entry (it has {sorted(contents)}); pass a released flowdiff_*.pth "
            "(an LFAE RegionMM_*.pth goes to load_official_lfae)."
        )
    state = dict(contents["diffusion"])
    check_schedule_buffers(state, source=source)
    for name in SCHEDULE_BUFFER_NAMES:
        del state[name]
    unet = FlowUNet3D(**unet_config_from_official(unet_params))
    load_state_dict_strict(_OfficialLayout(unet), state, source=source)
    return unet.eval()
