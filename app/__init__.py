"""TsallisPGD Explorer's Gradio app (layout and wiring only; the maths lives in :mod:`attack_engine`).

Importing this package turns off Gradio analytics and Hugging Face Hub telemetry/downloads *before* Gradio
is imported, so the app makes no outbound request (set the variables yourself to override).
"""

import os

for _k, _v in {
    "GRADIO_ANALYTICS_ENABLED": "False",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "DO_NOT_TRACK": "1",
    "TSALLIS_OFFLINE": "1",  # the model zoo's download-on-first-use stays off unless you set TSALLIS_OFFLINE=0
}.items():
    os.environ.setdefault(_k, _v)


def main(argv: list[str] | None = None) -> None:
    """Start the app on GRADIO_SERVER_NAME:GRADIO_SERVER_PORT (default 127.0.0.1:7860).

    Takes the CLI's model flags: ``python app.py --model FILE --arch … --classes … [--trusted]`` opens the
    explorer on your checkpoint (``--model <zoo id>`` on that model).
    """
    from app.launch import main as _main
    from app.own_model import model_id_from_argv

    _main(model_id_from_argv(argv))


def explore(model, class_names=None, palette=None, images=None, **kw):
    """Open the explorer on an ``nn.Module`` you hold (see :func:`app.launcher.explore`)."""
    from app.launcher import explore as _explore

    return _explore(model, class_names=class_names, palette=palette, images=images, **kw)
