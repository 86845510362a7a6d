"""The lfdm Gradio app (placeholder until the app lands): `python app.py`."""

import gradio as gr

with gr.Blocks(title="LFDM: latent flow diffusion for image-to-video") as demo:
    gr.Markdown("# LFDM\nConditional image-to-video generation with latent flow diffusion models.")

if __name__ == "__main__":
    demo.launch()
