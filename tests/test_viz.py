import numpy as np
import pytest
import torch

from lfdm.latents import identity_grid, resting_grid
from lfdm.viz import (
    GRID_COLOR,
    captioned_rows,
    color_wheel_legend,
    draw_grid,
    flow_magnitude_max,
    flow_to_color,
    make_color_wheel,
    occlusion_to_image,
    panel_grid,
    panel_strip,
    tile_grid,
)


def shifted_grid(dx, dy, size=8):
    """An absolute sampling grid (size, size, 2) displaced by (dx, dy) everywhere."""
    return resting_grid(size, size).numpy() + np.array([dx, dy], np.float32)


def test_color_wheel_matches_baker_segments():
    wheel = np.round(make_color_wheel() * 255).astype(int)
    assert wheel.shape == (55, 3), "15 + 6 + 4 + 11 + 13 + 6 hues"
    expected = {0: (255, 0, 0), 15: (255, 255, 0), 21: (0, 255, 0), 25: (0, 255, 255), 36: (0, 0, 255)}
    expected[49] = (255, 0, 255)
    for index, color in expected.items():
        assert tuple(wheel[index]) == color, f"hue {index}"
    assert tuple(wheel[20]) == (43, 255, 0) and tuple(wheel[54]) == (255, 0, 43)


@pytest.mark.parametrize(
    "dx, dy, color",
    [
        (0.3, 0.0, (255, 0, 0)),  # right: red
        (-0.3, 0.0, (0, 209, 255)),  # left: cyan-blue
        (0.0, 0.0, (255, 255, 255)),  # no motion: white
    ],
)
def test_known_displacement_gives_known_color(dx, dy, color):
    image = flow_to_color(shifted_grid(dx, dy), max_magnitude=0.3)
    assert image.shape == (8, 8, 3) and image.dtype == np.uint8
    assert (image == np.array(color, np.uint8)).all(), f"got {image[0, 0]} for displacement ({dx}, {dy})"


def test_quarter_length_displacement_is_pale():
    image = flow_to_color(shifted_grid(0.05, 0.0), max_magnitude=0.2)
    assert tuple(image[3, 3]) == (255, 191, 191), "1 - r (1 - colour) with r = 0.25 on red"


def test_vertical_directions_follow_image_orientation():
    down = flow_to_color(shifted_grid(0.0, 0.2))[0, 0].astype(int)
    up = flow_to_color(shifted_grid(0.0, -0.2))[0, 0].astype(int)
    assert down[0] > 200 and down[1] > 150 and down[2] < 60, f"down (+y) is yellow/orange in Middlebury: {down}"
    assert up[2] > 200 and up[1] < 60, f"up (-y) is blue/violet in Middlebury: {up}"


def test_one_normaliser_for_a_whole_sequence():
    sequence = np.stack([shifted_grid(0.05, 0.0), shifted_grid(0.2, 0.0)])
    assert flow_magnitude_max(sequence) == pytest.approx(0.2, abs=1e-6)
    together = flow_to_color(sequence)
    alone = flow_to_color(sequence[0])
    assert (alone[0, 0] == (255, 0, 0)).all(), "alone, the small motion gets full saturation"
    assert together[0, 0, 0, 1] > 150, "in the sequence the small motion stays pale (quarter of the maximum)"
    np.testing.assert_array_equal(together, flow_to_color(sequence, max_magnitude=0.2))


def test_longer_than_normaliser_is_darkened():
    image = flow_to_color(shifted_grid(0.4, 0.0), max_magnitude=0.2)
    assert tuple(image[0, 0]) == (191, 0, 0), "beyond the rim the colour is scaled by 0.75"


def test_torch_and_numpy_inputs_agree():
    grid = shifted_grid(0.1, -0.05)
    np.testing.assert_array_equal(flow_to_color(torch.from_numpy(grid)), flow_to_color(grid))


def test_identity_flow_is_white_not_nan():
    assert (flow_to_color(resting_grid(4, 4)) == 255).all(), "a grid that leaves the image in place is white"


def test_legend_centre_white_rim_coloured_outside_white():
    legend = color_wheel_legend(65)
    assert legend.shape == (65, 65, 3)
    assert (legend[32, 32] == 255).all(), "no motion at the centre"
    assert tuple(legend[32, 64]) == (255, 0, 0), "right edge = rightward motion at full length"
    assert (legend[0, 0] == 255).all() and (legend[64, 64] == 255).all(), "outside the disc is white"


def blue_mask(image):
    color = np.array(GRID_COLOR)
    return np.abs(image.astype(int) - color).sum(-1) < 120


def test_still_flow_draws_straight_lines():
    size, cells = 65, 5
    still = resting_grid(cells, cells)  # a flow that moves nothing lies on the lattice drawn underneath
    image = draw_grid(still, size)
    mask = blue_mask(image)
    margin = max(1.0, size / 64)
    unit = (still[0, :, 0].numpy() + 1) / 2  # grid coordinate -> [0, 1] across the picture
    positions = np.round(margin + unit * (size - 1 - 2 * margin)).astype(int)
    near_line = np.zeros((size, size), bool)
    for position in positions:
        near_line[max(position - 1, 0) : position + 2, :] = True
        near_line[:, max(position - 1, 0) : position + 2] = True
    assert mask.any(), "the grid lines are drawn"
    assert not (mask & ~near_line).any(), "every grid pixel lies on a straight lattice row or column"
    for position in positions[1:-1]:
        row_coverage = mask[position, positions[0] : positions[-1]].mean()
        assert row_coverage > 0.95, f"row {position} is one unbroken line ({row_coverage:.2f})"
    np.testing.assert_array_equal(mask, mask.T, err_msg="the identity lattice is symmetric")


def test_grid_is_drawn_y_down():
    identity = identity_grid(6, 6).numpy()
    moved = identity + np.array([0.0, 0.3], np.float32)  # every point samples lower in the image
    rows_identity = np.nonzero(blue_mask(draw_grid(identity, 64, lattice=False)))[0].mean()
    rows_moved = np.nonzero(blue_mask(draw_grid(moved, 64, lattice=False)))[0].mean()
    assert rows_moved > rows_identity + 3, "positive y must be drawn lower (image orientation, not plot orientation)"


def test_draw_grid_sequences_and_background():
    flows = torch.stack([identity_grid(4, 4), identity_grid(4, 4) * 0.5])
    images = draw_grid(flows, 32)
    assert images.shape == (2, 32, 32, 3) and images.dtype == np.uint8
    assert (images[:, 0, 0] == 255).all() or (images[:, 0, 0] > 200).all(), "light background"
    assert not np.array_equal(images[0], images[1])
    with pytest.raises(ValueError, match=r"\(h, w, 2\)"):
        draw_grid(np.zeros((4, 4, 3)), 32)


def test_grid_step_thins_the_lattice_but_keeps_the_border():
    full = blue_mask(draw_grid(identity_grid(9, 9), 64, lattice=False))
    thinned = blue_mask(draw_grid(identity_grid(9, 9), 64, step=3, lattice=False))
    assert thinned.sum() < 0.6 * full.sum()
    assert not (thinned & ~full).any(), "a thinned lattice is a subset of the full one"
    assert thinned[:, -3:].any() and thinned[-3:, :].any(), "the last row and column are always drawn"


def test_occlusion_white_is_visible_and_nearest_keeps_cells():
    occlusion = np.array([[[1.0, 0.0], [0.5, 1.0]]])  # (1, 2, 2)
    image = occlusion_to_image(occlusion, 8)
    assert image.shape == (1, 8, 8, 3)
    assert (image[0, :4, :4] == 255).all() and (image[0, :4, 4:] == 0).all() and (image[0, 4:, :4] == 128).all()
    assert (image[..., 0] == image[..., 2]).all(), "gray"
    assert occlusion_to_image(torch.ones(3, 2, 4, 4)).shape == (3, 2, 4, 4, 3)


def test_panel_strip_layout_and_captions():
    frames = np.zeros((3, 16, 16, 3), np.uint8)
    flows = flow_to_color(np.stack([shifted_grid(0.1 * t, 0.0) for t in range(3)]))  # (3, 8, 8, 3)
    strip = panel_strip(
        {"input": torch.ones(16, 16, 3), "generated": frames, "flow": flows}, scale=2, caption_height=10, gap=2
    )
    assert strip.shape == (3, 10 + 32, 3 * 32 + 2 * 2, 3)
    assert (strip[:, 10:, :32] == 255).all(), "a float image in [0, 1] is shown in every frame"
    assert (strip[:, 10:, 34:66] == 0).all()
    assert (strip[:, :10, :32] < 128).any(), "a caption is written"
    flow_tile = strip[1, 10:, 68:]
    assert (flow_tile[:, :] == flows[1, 0, 0]).all(), "nearest up-sampling keeps the flat flow colour"


def test_panel_strip_interpolation_choice():
    checker = (np.indices((4, 4)).sum(0) % 2 * 255).astype(np.uint8)[..., None].repeat(3, -1)
    nearest = panel_strip([("c", checker)], scale=4, caption_height=12)
    bicubic = panel_strip([("c", checker)], scale=4, caption_height=12, interpolation="bicubic")
    assert set(np.unique(nearest[0, 12:])) == {0, 255}
    assert len(np.unique(bicubic[0, 12:])) > 2
    with pytest.raises(ValueError, match="interpolation"):
        panel_strip([("c", checker)], interpolation="bilinear")


def test_panel_strip_rejects_mismatched_frame_counts():
    with pytest.raises(ValueError, match="same number of frames"):
        panel_strip([("a", np.zeros((2, 8, 8, 3))), ("b", np.zeros((3, 8, 8, 3)))])
    with pytest.raises(ValueError, match="empty"):
        panel_strip({})


def test_tile_grid_fills_rows_left_to_right_with_white_gaps():
    tiles = np.stack([np.full((4, 6, 3), value, np.uint8) for value in (10, 20, 30)])
    grid = tile_grid(tiles, columns=2, gap=1)
    assert grid.shape == (4 + 1 + 4, 6 + 1 + 6, 3)
    assert grid[0, 0, 0] == 10 and grid[0, 7, 0] == 20 and grid[5, 0, 0] == 30, "row by row"
    assert (grid[4] == 255).all() and (grid[:, 6] == 255).all() and (grid[5:, 7:] == 255).all(), "gaps and the rest"
    assert tile_grid(tiles).shape == (4, 3 * 6 + 2 * 2, 3), "one row by default"


def test_captioned_rows_put_a_caption_column_left_of_each_row():
    rows = [("smile", np.zeros((8, 10, 3), np.uint8)), ("frown", np.zeros((5, 10, 3), np.uint8))]
    picture = captioned_rows(rows, caption_width=30, gap=2)
    assert picture.shape == (8 + 2 + 5, 30 + 10, 3)
    assert (picture[:8, 30:] == 0).all() and (picture[8:10] == 255).all()
    assert (picture[:8, :30] < 255).any(), "the caption is drawn"


def test_panel_grid_is_the_strip_frames_as_rows_under_one_caption_bar():
    frames = np.random.default_rng(0).random((3, 8, 8, 3))
    strip = panel_strip({"a": frames, "b": frames}, scale=2)
    grid = panel_grid({"a": frames, "b": frames}, scale=2)
    caption = strip.shape[1] - 16
    assert grid.shape == (caption + 3 * 16, strip.shape[2], 3)
    np.testing.assert_array_equal(grid[: caption + 16], strip[0])
    np.testing.assert_array_equal(grid[caption + 32 :], strip[2, caption:])
