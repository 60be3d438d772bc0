# One image for every program of the testbed: `docker run IMAGE testbed --help`.
FROM python:3.11-slim-bookworm
RUN apt-get update \
 && apt-get install -y --no-install-recommends mosquitto-clients libcoap3-bin \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/r197-testbed
COPY pyproject.toml README.md ./
COPY city_platform city_platform
COPY gateway gateway
COPY devices devices
COPY conformance conformance
COPY testbed testbed
RUN pip install --no-cache-dir '.[all]'
ENV PYTHONUNBUFFERED=1
EXPOSE 8000
CMD ["testbed", "--help"]
