"""The "About" tab: what the app shows and where the models come from."""

from __future__ import annotations

import gradio as gr

ABOUT = """
### What this app shows
An L∞ adversarial attack on a segmentation model changes every pixel of the image by at most ε and tries to make
as many pixels as possible wrong. All six attacks here take the same signed-gradient steps (PGD, or APGD with its
step-size control) and differ only in **how much each pixel's loss counts**:

| attack | per-pixel weight relative to CE |
|---|---|
| CE-PGD | 1 for every pixel |
| SegPGD | 1−λ on correct, λ on wrong pixels, λ growing over the run |
| CosPGD | cosine between the softmax and the one-hot label |
| JSPGD | derivative of the Jensen–Shannon divergence |
| MaskedPGD | 1 on correct pixels, 0 on wrong ones |
| TsallisPGD | p_y^(1−q) (≤ 1, smallest on wrong pixels): the gradient size peaks at p* = (1−q)/(2−q), so a low q focuses on uncertain-correct pixels and q = 1 is CE; the schedule moves q from −2 to 1 |

The **confidence histogram** with the weight curve is the heart of it: it shows where the attack puts its effort
and how pixels move from "confident and correct" to "wrong" as the iterations go.

Runs are recorded on the server per session (for a limited time and memory, see the README's limits); scrubbing and replay never recompute.
The examples come with precomputed runs (and attack comparisons) so they play instantly.

### Models
The bundled MediaPipe selfie models always work offline. The model list says for each model whether it is
*present*, would be *downloaded* on first use (and how large), is *not here* (downloads are off: the app starts with
`TSALLIS_OFFLINE=1`, analytics and telemetry off; `TSALLIS_OFFLINE=0` lets the zoo fetch weights), or is *not
offered on this host*. The hosted demo preloads the Hugging Face SegFormers (ADE20K, Cityscapes) at build time.
The **Debug classes** tab shows, for multi-class models, which classes fall first, which classes turn into which,
and how the flipped share depends on object size.
"""


def build() -> None:
    with gr.Tab("About", id="about"):
        gr.Markdown(ABOUT)
