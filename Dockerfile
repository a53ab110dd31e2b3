# Lumi on a CUDA runtime base: models use the GPU when the container is given one (--gpus all),
# and the CPU otherwise. onnxruntime-gpu replaces the CPU build (it falls back to the CPU by itself).
FROM nvidia/cuda:12.4.1-cudnn-runtime-ubuntu22.04

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    YOLO_OFFLINE=1 \
    YOLO_AUTOINSTALL=false \
    DATA_DIR=/data \
    WEB_HOST=0.0.0.0 \
    WEB_PORT=8080

RUN apt-get update \
 && apt-get install -y --no-install-recommends python3.11 python3.11-venv python3-pip curl ca-certificates nodejs npm \
 && rm -rf /var/lib/apt/lists/* \
 && python3.11 -m venv /opt/lumi

WORKDIR /app
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY cogs ./cogs
COPY inference ./inference
COPY storage ./storage
# The viewer's three.js comes from the npm registry at build time and is served by Lumi (no CDN).
RUN cd bot/web/static && npm ci --no-audit --no-fund --loglevel=error
# Editable install: the web server serves its static files from the source tree.
RUN /opt/lumi/bin/pip install --upgrade pip \
 && /opt/lumi/bin/pip install -e ".[ml]" \
 && /opt/lumi/bin/pip install --no-deps "ultralytics>=8.3,<9" "fer>=25.10,<26" "facenet-pytorch>=2.6,<3" \
 && /opt/lumi/bin/pip uninstall -y onnxruntime \
 && /opt/lumi/bin/pip install "onnxruntime-gpu>=1.18"

RUN useradd --create-home --uid 10001 lumi && mkdir -p /data && chown lumi:lumi /data
USER lumi
VOLUME ["/data"]
EXPOSE 8080
ENV PATH=/opt/lumi/bin:$PATH

HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD curl -fsS http://127.0.0.1:8080/healthz || exit 1

CMD ["lumi", "run"]
