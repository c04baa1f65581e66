# The radflow image for docker-compose.yml (CPU torch here; a CUDA base image for GPU workers).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY radflow radflow
COPY ingest ingest
COPY streams streams
COPY model model
COPY training training
COPY storage storage
RUN pip install --no-cache-dir torch==2.13.0 && pip install --no-cache-dir '.[cuda,postgres]'
EXPOSE 2575 6066
CMD ["radflow", "serve"]
