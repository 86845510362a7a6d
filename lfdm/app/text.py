"""The words on the page."""

TITLE = "LFDM: latent flow diffusion for image-to-video"

HEADER = """\
# LFDM: one image + an action -> a video
Upload a picture or take one with your webcam (or pick an example), choose an action and press **Generate**. With
**Find the face** on, the largest face is found, framed the way the model's training faces are, animated, and
pasted back into your photo: the video has your photo's size. The model does not paint new pixels: it generates a
sequence of *latent optical flows* and *occlusion maps*, and every frame is your picture warped by them. Open the
**step inspector** below the results to watch that motion form out of noise.
"""

INSPECTOR_HELP = """\
Each sampling step predicts the final (clean) flows and occlusion maps from the current noisy sample. Move the
slider to see that prediction at every step; nothing is re-run. The colour scale is the same at every step, so
early steps look noisy and pale where the model is still unsure. Occlusion: white = the warped picture is kept,
black = the decoder paints that part in.
"""

COMPARE_HELP = """\
Generates every action the selected model knows for the image on the **Generate** tab, with the settings of its
*Advanced* section (same seed for every action), and shows them side by side.
"""

DRIVING_HELP = """\
Move a picture the way a driving video moves: the autoencoder estimates the motion between the driving video's
frames and warps your picture with it, one frame per driving frame (no sampling, so it takes seconds). Upload a clip,
record one with your webcam, or pick an example. *Find the driving face* follows the face in every driving frame and
frames it like the model's training faces, so the face's expression and head motion reach your picture, not the
camera's pan and zoom; a clip with no face found is refused unless you turn it off. *Relative motion* carries over
how the driving face moves from its first frame, so another face keeps its own shape; turn it off to take each
driving frame's pose and shape (right for the same face). Videos longer than {max_frames} frames are cut there.
Your picture's largest face is found and animated (*Find the face*), and the video has your picture's size.
"""

ABOUT = """\
## What LFDM is
*Latent Flow Diffusion Models* (Ni et al., "Conditional Image-to-Video Generation with Latent Flow Diffusion
Models", CVPR 2023) animate one image according to a class label. Training has two stages:

1. A **latent flow autoencoder** learns, without labels, to estimate the motion between two frames of a video as a
   dense *flow* (where each point of the first frame's feature map moves) and an *occlusion map* (what cannot be
   warped and has to be painted), and to rebuild the second frame from the first one with them.
2. A **3D U-Net diffusion model**, conditioned on the image's features and the label, learns to generate whole
   sequences of those flows and occlusion maps from noise.

To make a video, the diffusion model samples the flows and occlusion maps (a few steps with DPM-Solver++, DDIM or
UniPC, as many as the model's measured default, under **Quality**; the paper used 1000 DDPM steps), and the
autoencoder warps and decodes the image once per frame.
Because the pixels come from your image, the subject keeps its identity.

## What the models know
- The model shipped in `checkpoints/` is trained on **SynthFace**, procedurally drawn faces making facial
  expressions; it has never seen a photograph. What it does well and where it fails is measured in its model card
  (`checkpoints/README.md`), shown at the end of this page.
- A converted release of the authors' **MUG** model was trained on the MUG facial expression database: 465 videos
  of 26 people, frontal faces against a plain background, 128x128 pixels, 40 frames. Their **UTD-MHAD** (27 body
  actions, 4 people) and **NATOPS** (24 aircraft-handling gestures) models know whole-body motion of one person
  in a fixed indoor scene.
- The selected model's own numbers (size, frames, actions, model card) are shown under **Advanced** on the
  Generate tab, and the default model's at the end of this page.

## Photos
- **Find the face** (on by default) looks for faces with OpenCV's Haar cascades (frontal faces, turned up to about
  45 degrees; faces of at least 32 px). The largest face with two eyes is used; the preview under the picture shows
  its box, and a note says when no face or several faces were found. The face is turned and scaled so that its
  eyes sit where the training faces have theirs, and the model animates that crop.
- The flows are then upsampled to your photo's size (long side at most {max_resolution} px) and move your photo's
  own pixels; the model's decoder paints only where the occlusion map says something new appears (an opening
  mouth), and the crop fades back into the photo at its edge: frame 0 is your photo, and nothing far from the face
  moves.
- Without a face (or with *Find the face* off) the whole picture is animated, as the model's training frames were
  framed (resized, padded to a square), and rendered at your photo's size the same way. A model trained on whole
  pictures (the body-action models) always animates the whole picture: *Find the face* is hidden for it.

## Limits
- The model's own frames have its training resolution (shown under *Advanced*); the sharp photo-size video comes
  from warping your photo, so what the decoder paints (teeth, an open mouth) stays as blurry as the model's frames.
- The flow, occlusion and panel views show the model's own frames: the face crop it animated.
- Pictures unlike the training data (other faces, poses, lighting, backgrounds, or not a face at all) degrade:
  the motion becomes weak or wrong and the decoder smears what it has to paint in.
- Only motion is generated: no new objects, no camera moves, no sound; the action list is fixed by the model.
"""
