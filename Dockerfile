# One image for every role of the league: `league referee|agent|coordinator ...` (compose.yaml).
#
#   docker build -t league:0.1.0 .
#   docker build -t league:0.1.0 --build-arg BASE_IMAGE=my-debian:bookworm .   # another Debian base
#
# BASE_IMAGE: any Debian bookworm (or later) root; python3 and python3-venv are installed
# from its apt sources when missing. Everything is installed at build time; a container
# downloads nothing. torch is the CPU build: pip takes torch==2.13.0+cpu from TORCH_INDEX_URL
# (PyTorch's CPU index; its +cpu wheel outranks PyPI's CUDA build) or from PIP_FIND_LINKS
# (a directory or URL holding the wheel; set TORCH_INDEX_URL= to skip the index), and the
# other dependencies from PyPI (PIP_INDEX_URL to use a mirror).
ARG BASE_IMAGE=debian:12.11-slim
FROM ${BASE_IMAGE}

ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG PIP_FIND_LINKS=
ARG PIP_INDEX_URL=https://pypi.org/simple

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    OMP_NUM_THREADS=1 \
    PATH=/opt/venv/bin:$PATH

RUN if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then \
        apt-get update \
        && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
        && rm -rf /var/lib/apt/lists/*; \
    fi \
    && python3 -m venv /opt/venv

WORKDIR /app

# Dependencies first (a layer that survives source edits): torch CPU, then pyproject's list.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install ${TORCH_INDEX_URL:+--extra-index-url "$TORCH_INDEX_URL"} "torch==2.13.0+cpu" \
    && pip install -r /tmp/requirements.txt \
    && python -c "import torch; assert not torch.version.cuda, 'torch is not the CPU build'"

# The project (league, agents, services) and the files its commands read relative to /app:
# configs/, results/ (checkpoints a league config may name), deploy/.
COPY . .
RUN pip install --no-deps . \
    && mkdir -p runs \
    && league --help > /dev/null

# No ENTRYPOINT: a service's command is the whole command line (`league referee ...`).
CMD ["league", "--help"]
