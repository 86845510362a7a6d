"""Behaviour of the space-time U-Net (`FlowUNet3D`) and its attention layers, on toy sizes."""

from __future__ import annotations

import pytest
import torch

from lfdm.models.attention import RelativePositionBias, RotaryEmbedding, TemporalAttention, apply_rotary
from lfdm.models.unet3d import FlowUNet3D, UNet3DOutput

TINY = {
    "dim": 8,
    "dim_mults": (1, 2),
    "feature_channels": 4,
    "label_dim": 16,
    "attn_heads": 2,
    "attn_dim_head": 8,
    "spatial_attn_dim_head": 8,
    "resnet_groups": 4,
}


def tiny_unet(**overrides) -> FlowUNet3D:
    torch.manual_seed(0)
    return FlowUNet3D(**{**TINY, **overrides}).eval()


def inputs(batch: int = 2, frames: int = 3, size: int = 8, seed: int = 1):
    generator = torch.Generator().manual_seed(seed)
    sample = torch.randn(batch, 3, frames, size, size, generator=generator)
    features = torch.randn(batch, TINY["feature_channels"], size, size, generator=generator)
    label = torch.randn(batch, TINY["label_dim"], generator=generator)
    timestep = torch.tensor([999, 5][:batch])
    return sample, timestep, features, label


def test_predicts_noise_of_the_sample_shape():
    sample, timestep, features, label = inputs()
    with torch.no_grad():
        out = tiny_unet()(sample, timestep, features, label)
    assert isinstance(out, UNet3DOutput) and out.sample.shape == sample.shape
    assert torch.isfinite(out.sample).all()


def test_dict_and_tuple_outputs_match():
    unet, args = tiny_unet(), inputs()
    with torch.no_grad():
        as_dict = unet(*args).sample
        (as_tuple,) = unet(*args, return_dict=False)
    torch.testing.assert_close(as_dict, as_tuple, rtol=0, atol=0)


def test_no_label_means_the_zero_null_embedding():
    unet = tiny_unet()
    sample, timestep, features, label = inputs()
    assert "null_label_embedding" not in unet.state_dict()
    with torch.no_grad():
        unconditional = unet(sample, timestep, features, None).sample
        zeros = unet(sample, timestep, features, torch.zeros_like(label)).sample
        conditional = unet(sample, timestep, features, label).sample
    torch.testing.assert_close(unconditional, zeros, rtol=0, atol=0)
    assert (unconditional - conditional).abs().max() > 1e-4, "the label must change the prediction"


def test_learned_null_label_is_a_saved_parameter():
    unet = tiny_unet(learn_null_label=True)
    sample, timestep, features, _ = inputs()
    assert isinstance(unet.null_label_embedding, torch.nn.Parameter)
    assert unet.null_label_embedding.shape == (1, TINY["label_dim"])
    assert "null_label_embedding" in unet.state_dict()
    explicit = unet.null_label_embedding.detach().expand(2, -1)
    with torch.no_grad():
        torch.testing.assert_close(
            unet(sample, timestep, features, None).sample, unet(sample, timestep, features, explicit).sample
        )


def test_drop_label_replaces_only_the_marked_samples():
    unet = tiny_unet(learn_null_label=True)
    sample, timestep, features, label = inputs()
    with torch.no_grad():
        dropped = unet(sample, timestep, features, label, drop_label=torch.tensor([True, False])).sample
        unconditional = unet(sample, timestep, features, None).sample
        conditional = unet(sample, timestep, features, label).sample
    torch.testing.assert_close(dropped[0], unconditional[0], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(dropped[1], conditional[1], atol=1e-6, rtol=1e-5)


def test_one_timestep_is_shared_by_the_batch():
    unet = tiny_unet()
    sample, _, features, label = inputs()
    with torch.no_grad():
        shared = unet(sample, 7, features, label).sample
        per_sample = unet(sample, torch.tensor([7, 7]), features, label).sample
    torch.testing.assert_close(shared, per_sample, rtol=0, atol=0)


def test_every_parameter_gets_a_gradient():
    unet = tiny_unet(learn_null_label=True).train()
    sample, timestep, features, label = inputs()
    unet(sample, timestep, features, label, drop_label=torch.tensor([True, False])).sample.square().mean().backward()
    without = [name for name, p in unet.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert without == [], f"parameters that do not affect the output: {without}"


def test_nearest_upsampling_variant_has_its_own_layout():
    unet = tiny_unet(upsample="nearest", padding_mode="reflect")
    assert unet.up_levels[0].resample.conv.kernel_size == (1, 3, 3)
    assert unet.up_levels[0].resample.conv.padding_mode == "reflect"
    sample, timestep, features, label = inputs()
    with torch.no_grad():
        assert unet(sample, timestep, features, label).sample.shape == sample.shape


def test_any_number_of_frames_works():
    unet = tiny_unet()
    for frames in (1, 5):
        sample, timestep, features, label = inputs(frames=frames)
        with torch.no_grad():
            assert unet(sample, timestep, features, label).sample.shape == sample.shape


def test_frame_embedding_tells_identical_frames_apart_up_to_num_frames():
    plain, positioned = tiny_unet(num_frames=4), tiny_unet(num_frames=4, frame_embedding=True)
    sample, timestep, features, label = inputs(frames=1)
    still = sample.expand(-1, -1, 4, -1, -1).contiguous()  # the same noisy frame four times
    with torch.no_grad():
        same = plain(still, timestep, features, label).sample
        told_apart = positioned(still, timestep, features, label).sample
    torch.testing.assert_close(same[:, :, 0], same[:, :, 3])  # attention over equal frames cannot tell them apart
    assert (told_apart[:, :, 0] - told_apart[:, :, 3]).abs().max() > 1e-3
    code = positioned.frame_positions[0, :, :, 0, 0]  # (dim, frames): sin then cos of the frame index
    torch.testing.assert_close(code[:, 0], torch.cat([torch.zeros(4), torch.ones(4)]))
    assert set(plain.state_dict()) == set(positioned.state_dict()) - {"frame_positions"}
    with pytest.raises(ValueError, match="at most 4 frames"):
        positioned(*inputs(frames=5))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"sample": torch.zeros(2, 2, 3, 8, 8)}, "`sample` must be"),
        ({"features": torch.zeros(2, 5, 8, 8)}, "`image_features` must be"),
        ({"label": torch.zeros(2, 17)}, "`label_embedding` must be"),
        ({"sample": torch.zeros(2, 3, 3, 7, 7), "features": torch.zeros(2, 4, 7, 7)}, "multiples of 2"),
        ({"timestep": torch.tensor([1, 2, 3])}, "`timestep` must be"),
    ],
)
def test_wrong_inputs_are_explained(change, message):
    sample, timestep, features, label = inputs()
    args = {"sample": sample, "timestep": timestep, "features": features, "label": label, **change}
    with pytest.raises(ValueError, match=message):
        tiny_unet()(args["sample"], args["timestep"], args["features"], args["label"])


@pytest.mark.parametrize(
    ("change", "message"),
    [({"resnet_groups": 3}, "resnet_groups"), ({"upsample": "bilinear"}, "upsample"), ({"dim_mults": ()}, "level")],
)
def test_wrong_config_is_explained(change, message):
    with pytest.raises(ValueError, match=message):
        FlowUNet3D(**{**TINY, **change})


@pytest.mark.parametrize("variant", [{}, {"learn_null_label": True, "upsample": "nearest"}])
def test_save_pretrained_round_trip(tmp_path, variant):
    unet = tiny_unet(**variant)
    unet.save_pretrained(tmp_path)
    loaded = FlowUNet3D.from_pretrained(tmp_path).eval()
    assert loaded.config.upsample == unet.config.upsample and tuple(loaded.config.dim_mults) == (1, 2)
    sample, timestep, features, label = inputs()
    with torch.no_grad():
        for condition in (label, None):  # None: the null embedding, saved or rebuilt as zeros
            expected = unet(sample, timestep, features, condition).sample
            torch.testing.assert_close(loaded(sample, timestep, features, condition).sample, expected, rtol=0, atol=0)


# --- attention layers ---------------------------------------------------------------------------------------------


def test_temporal_attention_equals_explicit_softmax_attention():
    torch.manual_seed(0)
    channels, heads, dim_head, frames = 6, 2, 8, 5
    attention = TemporalAttention(channels, heads, dim_head)
    x = torch.randn(1, channels, frames, 2, 3)
    bias = torch.randn(heads, frames, frames)
    angles = RotaryEmbedding(dim_head)(frames)
    with torch.no_grad():
        out = attention(x, position_bias=bias, rotary_angles=angles)
        tokens = x.permute(0, 3, 4, 2, 1).reshape(6, frames, channels)  # (h w) sequences of frames
        q, k, v = attention.to_qkv(tokens).reshape(6, frames, 3, heads, dim_head).permute(2, 0, 3, 1, 4)
        q, k = apply_rotary(q * dim_head**-0.5, angles), apply_rotary(k, angles)
        weights = (q @ k.transpose(-1, -2) + bias).softmax(dim=-1)
        expected = attention.to_out((weights @ v).permute(0, 2, 1, 3).reshape(6, frames, heads * dim_head))
        expected = expected.reshape(1, 2, 3, frames, channels).permute(0, 4, 3, 1, 2)
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=1e-5)


def test_rotary_scores_depend_only_on_the_frame_offset():
    angles = RotaryEmbedding(8)(6)
    query, key = torch.randn(8), torch.randn(8)
    rotated_q = apply_rotary(query.expand(6, 8), angles)
    rotated_k = apply_rotary(key.expand(6, 8), angles)
    scores = rotated_q @ rotated_k.T  # (i, j)
    torch.testing.assert_close(scores[0, 2], scores[3, 5], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(scores[4, 1], scores[5, 2], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(rotated_q.norm(dim=-1), query.norm().expand(6), atol=1e-5, rtol=1e-5)


def test_relative_position_buckets_are_exact_near_and_capped_far():
    bias = RelativePositionBias(heads=1)
    offsets = torch.tensor([0, 1, 7, -1, -7, 8, 31, 32, 1000, -1000])
    # keys before the query (negative offset) use the lower half 0-15, keys after it the upper half 16-31
    assert bias.bucket(offsets).tolist() == [0, 17, 23, 1, 7, 24, 31, 31, 31, 15]
