# Docker Space / any container host: the explorer in hosted mode on port 7860, CPU, as uid 1000.
#   docker build -t tsallispgd-explorer .
#   docker run --rm -p 7860:7860 tsallispgd-explorer            # then open http://localhost:7860
# Limits are environment variables (README, "Hosting, limits and hosted mode"), e.g. -e TSALLIS_MAX_STEPS=200.
FROM python:3.11-slim

# Hugging Face runs Docker Spaces as uid 1000 with HOME=/home/user (spaces-sdks-docker#permissions)
RUN useradd -m -u 1000 user
USER user
ENV HOME=/home/user \
    PATH=/home/user/app/.venv/bin:/home/user/.local/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu
WORKDIR $HOME/app

# 1. Dependencies, installed by the project's own set-up script (the one CI runs); this layer is rebuilt only when
#    the requirement files change.  The extra index makes torch==X resolve to its small CPU build (X+cpu).
COPY --chown=user requirements.txt requirements-mm.txt ./
COPY --chown=user scripts/setup_env.sh scripts/
RUN bash scripts/setup_env.sh

# 2. The app, with its bundled model weights and examples: the default model needs no download.
COPY --chown=user . .

# 3. The multi-class Hugging Face SegFormers the demo offers (the README's preload_from_hub list), into the hub
#    cache at build time; the zoo finds them there with HF_HUB_OFFLINE=1 and hosted mode offers them.
RUN HF_HUB_OFFLINE=0 HF_HUB_DISABLE_TELEMETRY=1 python -m attack_engine.models.hub_preload

# 4. Optional further zoo models, downloaded now (build time), never at request time; hosted mode then offers them:
#    docker build --build-arg TSALLIS_PRELOAD="hf-segformer-b0-ade" .
ARG TSALLIS_PRELOAD=""
RUN for m in $TSALLIS_PRELOAD; do \
      TSALLIS_OFFLINE=0 HF_HUB_OFFLINE=0 TRANSFORMERS_OFFLINE=0 \
      python -c "import sys; from attack_engine.models import load_model; load_model(sys.argv[1])" "$m" || exit 1; \
    done

ENV GRADIO_SERVER_NAME=0.0.0.0 \
    GRADIO_SERVER_PORT=7860 \
    GRADIO_ANALYTICS_ENABLED=False \
    HF_HUB_DISABLE_TELEMETRY=1 \
    HF_HUB_OFFLINE=1 \
    DO_NOT_TRACK=1 \
    TSALLIS_OFFLINE=1 \
    TSALLIS_HOSTED=1
EXPOSE 7860

# The project's start script (set-up is already done, so it only checks and starts `python app.py`).
CMD ["bash", "scripts/app.sh"]
