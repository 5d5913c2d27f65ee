# One image for the `worker` and `app` services of docker-compose.yml.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    IMGSEARCH_DATA_DIR=/data
WORKDIR /opt/imgsearch

# pg_dump / pg_restore for `imgsearch backup` / `restore` with a PostgreSQL catalogue (Debian bookworm: 15, the
# major version of docker-compose.yml's postgres service; pg_dump refuses a newer server).
RUN apt-get update && apt-get install -y --no-install-recommends postgresql-client \
    && rm -rf /var/lib/apt/lists/*

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
