import numpy as np
import pytest

from lfdm.data.sampling import FRAME_SAMPLING_MODES, sample_frame_indices, sample_frame_pair


def rng(seed=0):
    return np.random.default_rng(seed)


def test_uniform_exact_values():
    np.testing.assert_array_equal(sample_frame_indices(10, 4, "uniform", rng()), [0, 3, 6, 9])
    np.testing.assert_array_equal(sample_frame_indices(11, 4, "uniform", rng()), [0, 3, 6, 10])  # int() truncates
    np.testing.assert_array_equal(sample_frame_indices(40, 40, "uniform", rng()), np.arange(40))
    np.testing.assert_array_equal(sample_frame_indices(5, 1, "uniform", rng()), [0])


def test_uniform_ignores_the_random_source():
    first = sample_frame_indices(97, 40, "uniform", rng(1))
    second = sample_frame_indices(97, 40, "uniform", rng(2))
    np.testing.assert_array_equal(first, second)


@pytest.mark.parametrize("mode", ["uniform", "random"])
def test_short_videos_repeat_the_last_frame(mode):
    np.testing.assert_array_equal(sample_frame_indices(3, 6, mode, rng()), [0, 1, 2, 2, 2, 2])
    np.testing.assert_array_equal(sample_frame_indices(1, 3, mode, rng()), [0, 0, 0])


@pytest.mark.parametrize("mode", FRAME_SAMPLING_MODES)
@pytest.mark.parametrize("num_video_frames", [1, 7, 40, 41, 120])
def test_every_mode_is_sorted_in_range_and_starts_at_frame_zero(mode, num_video_frames):
    generator = rng(num_video_frames)
    for _ in range(20):
        indices = sample_frame_indices(num_video_frames, 40, mode, generator)
        assert indices.shape == (40,) and indices.dtype == np.int64
        assert indices[0] == 0, "clips start at the conditioning frame"
        assert (np.diff(indices) >= 0).all(), "indices are sorted"
        assert indices.max() < num_video_frames


def test_random_keeps_ends_and_stays_between_uniform_neighbours():
    num_video_frames, num_frames = 120, 10
    uniform = sample_frame_indices(num_video_frames, num_frames, "uniform", rng())
    generator = rng(3)
    seen = set()
    for _ in range(200):
        indices = sample_frame_indices(num_video_frames, num_frames, "random", generator)
        assert indices[0] == 0 and indices[-1] == num_video_frames - 1, "first and last frames stay fixed"
        # Before sorting each interior index lies strictly between its uniform neighbours, so after sorting the
        # k-th index still lies in the open interval (u_{k-1}, u_{k+1}).
        assert (indices[1:-1] > uniform[:-2]).all() and (indices[1:-1] < uniform[2:]).all()
        seen.add(tuple(indices))
    assert len(seen) > 100, "the interior indices really move"


def test_random_with_one_frame_steps_is_uniform():
    np.testing.assert_array_equal(sample_frame_indices(40, 40, "random", rng()), np.arange(40))


def test_very_random_draws_with_replacement():
    generator = rng(4)
    draws = np.stack([sample_frame_indices(50, 40, "very_random", generator) for _ in range(200)])
    assert (draws[:, 0] == 0).all()
    assert any(len(np.unique(row)) < 40 for row in draws), "with replacement, repeats happen"
    assert draws[:, -1].min() < 49, "the last frame is not forced"
    assert len(np.unique(draws)) == 50, "every frame can be drawn"
    short = sample_frame_indices(3, 8, "very_random", rng(5))
    assert short.shape == (8,) and short.max() <= 2


def test_same_seed_same_indices():
    for mode in FRAME_SAMPLING_MODES:
        np.testing.assert_array_equal(
            sample_frame_indices(77, 16, mode, rng(9)), sample_frame_indices(77, 16, mode, rng(9))
        )


def test_pairs_are_ordered_and_may_coincide():
    generator = rng(6)
    pairs = np.stack([sample_frame_pair(5, generator) for _ in range(300)])
    assert (pairs[:, 0] <= pairs[:, 1]).all(), "the reference is never later than the driving frame"
    assert (pairs[:, 0] == pairs[:, 1]).any(), "drawn with replacement"
    assert pairs.min() == 0 and pairs.max() == 4


def test_bad_arguments_say_what_to_do():
    with pytest.raises(ValueError, match="very_random"):
        sample_frame_indices(10, 4, "linear", rng())
    with pytest.raises(ValueError, match="at least one"):
        sample_frame_indices(0, 4, "uniform", rng())
    with pytest.raises(ValueError, match="num_frames"):
        sample_frame_indices(10, 0, "uniform", rng())
