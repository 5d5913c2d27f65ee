# One image for the `worker` and `app` services of docker-compose.yml.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    IMGSEARCH_DATA_DIR=/data
WORKDIR /opt/imgsearch

# pg_dump / pg_restore for `imgsearch backup` / `restore` with a PostgreSQL catalogue. pg_dump refuses a server
# newer than itself: Debian's client is 15 (bookworm) or 17 (trixie), docker-compose.yml's postgres is 15.
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
