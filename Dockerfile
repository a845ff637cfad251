# The agentflux worker as an image (deploy/compose.yaml builds it). Not built here (no registry
# for base images on the machine this project is developed on); see README "Docker Compose".
#
#   docker build -t agentflux .
#   docker run --rm -e KAFKA_BOOTSTRAP_SERVERS=broker:9092 agentflux worker
#
# build: the wheel of agentflux (its native decoder is Rust, built by setuptools-rust) and of
# every dependency
FROM python:3.11-slim-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential curl ca-certificates \
 && rm -rf /var/lib/apt/lists/*
RUN curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
ENV PATH=/root/.cargo/bin:$PATH
WORKDIR /src
COPY . .
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

# run: no compiler, a user of its own, the history on a volume
FROM python:3.11-slim-bookworm
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels \
 && useradd --create-home --uid 10001 agentflux \
 && mkdir -p /data && chown agentflux /data
USER agentflux
# /metrics must be reachable from the Prometheus container (the default is loopback only)
ENV AGENTFLUX_METRICS_HOST=0.0.0.0 \
    AGENTFLUX_HISTORY=/data/history \
    AGENTFLUX_HOME=/data/state
VOLUME /data
EXPOSE 9464
ENTRYPOINT ["agentflux"]
CMD ["worker"]
