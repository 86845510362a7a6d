"""SynthFace, the procedural facial-expression video data set (public names; the code is in `lfdm.data.synthface`).

>>> video = render_video(7, "happiness", take=0, resolution=64, num_frames=32)
>>> video.shape, video.dtype
((32, 64, 64, 3), dtype('uint8'))
>>> dataset = SynthFaceDataset("train", resolution=64, num_frames=16, view="pair", length=10_000)
>>> sorted(dataset[0])
['driving', 'identity', 'label', 'label_index', 'reference']
"""

from lfdm.data import synthface
from lfdm.data.synthface import *  # noqa: F403 (this module is the package's public face)

__all__ = list(synthface.__all__)
