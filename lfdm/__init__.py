"""lfdm: Latent Flow Diffusion Models (Ni et al., CVPR 2023) for conditional image-to-video generation.

One image and an action label in, a video out: a diffusion model generates a sequence of latent optical flows and
occlusion maps, and a latent flow autoencoder warps the image with them. See README.md for the commands.
"""

__version__ = "0.1.0"
