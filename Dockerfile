# syntax=docker/dockerfile:1
# The sluice binary in a small runtime image, run as an unprivileged user.
#
#   docker build -t sluice .
#   docker run --rm -p 127.0.0.1:32010:32010 -e SLUICE_TLS__ENABLED=false sluice
#
# The image listens on 0.0.0.0, so it refuses to serve plaintext unless told to on purpose
# (SLUICE_TLS__ENABLED=false) or given a certificate ([tls] in the configuration, or
# SLUICE_TLS_CERT and SLUICE_TLS_KEY).

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
# The cache mounts keep the registry and the target folder between builds; the binary is
# copied out of the mount because the mount is not part of the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p sluice \
    && install -D -m 0755 target/release/sluice /out/sluice

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates tini \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 sluice \
    && useradd --system --uid 10001 --gid sluice --home-dir /var/lib/sluice --create-home sluice
COPY --from=build /out/sluice /usr/local/bin/sluice
USER 10001:10001
WORKDIR /var/lib/sluice
ENV SLUICE_LISTEN=0.0.0.0:32010 \
    SLUICE_MCP_LISTEN=0.0.0.0:32011 \
    SLUICE_METRICS_LISTEN=0.0.0.0:9090
# Flight SQL, MCP (agents), then metrics and health.
EXPOSE 32010 32011 9090
# tini forwards SIGTERM to sluice, which drains running queries before it exits.
ENTRYPOINT ["/usr/bin/tini", "--", "sluice"]
CMD ["serve"]
