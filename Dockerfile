# One image for the `worker` and `app` services of docker-compose.yml.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    IMGSEARCH_DATA_DIR=/data
WORKDIR /opt/imgsearch

COPY pyproject.toml README.md ./
COPY ingest ingest
COPY search search
COPY models models
COPY ui ui
COPY db db
RUN pip install --upgrade pip && pip install .

VOLUME ["/data"]
EXPOSE 8501 8000
CMD ["imgsearch", "app", "--address", "0.0.0.0", "--port", "8501"]
