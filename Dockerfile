# syntax=docker/dockerfile:1
#
# One Dockerfile for the three services and the load generator. The builder stages compile all
# four binaries once; the last stages each copy one binary into a slim runtime image, and
# docker-compose.yml picks one with `build.target`. Build one by hand with, e.g.:
#
#   docker build --target gateway -t traced-orders/gateway .

# The toolchain CI tests with; any newer stable builds it too (`--build-arg RUST_VERSION=...`).
ARG RUST_VERSION=1.95

# cargo-chef turns the workspace manifests into a "recipe" that builds only the dependencies.
# That build is its own layer, reused until Cargo.toml or Cargo.lock change: editing a source
# file recompiles the workspace crates, not the few hundred crates they depend on.
FROM rust:${RUST_VERSION}-slim-trixie AS chef
RUN cargo install cargo-chef --locked --version ^0.1
WORKDIR /app

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /app/recipe.json recipe.json
# The same packages in both builds: Cargo unifies features across the packages it builds, and
# a different set (the test crate's gRPC server, say) would change the dependencies' features
# and recompile them all in the second step, defeating the cached layer.
RUN cargo chef cook --release --locked -p gateway -p order-service -p payment-service -p loadgen --recipe-path recipe.json
COPY . .
RUN cargo build --release --locked -p gateway -p order-service -p payment-service -p loadgen

# The runtime: Debian 13 (trixie) slim, the builder's release, so the binaries find the glibc
# they were linked against; nothing added. The
# services speak plain HTTP inside the compose network, so there are no CA certificates, and
# no shell tools: health checks run the binary itself (`<binary> healthcheck`).
FROM debian:trixie-slim AS runtime
RUN groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid app --no-create-home --shell /usr/sbin/nologin app
USER 10001:10001
# Containers log JSON lines; `LOG_FORMAT=text` in the environment switches to readable text.
ENV LOG_FORMAT=json

FROM runtime AS gateway
COPY --from=builder /app/target/release/gateway /usr/local/bin/gateway
ENV LISTEN_ADDR=0.0.0.0:8080
EXPOSE 8080
HEALTHCHECK --interval=5s --timeout=4s --start-period=20s --retries=3 CMD ["/usr/local/bin/gateway", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/gateway"]

FROM runtime AS order-service
COPY --from=builder /app/target/release/order-service /usr/local/bin/order-service
ENV LISTEN_ADDR=0.0.0.0:8081
EXPOSE 8081
HEALTHCHECK --interval=5s --timeout=4s --start-period=60s --retries=3 CMD ["/usr/local/bin/order-service", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/order-service"]

FROM runtime AS payment-service
COPY --from=builder /app/target/release/payment-service /usr/local/bin/payment-service
ENV LISTEN_ADDR=0.0.0.0:8082
EXPOSE 8082
HEALTHCHECK --interval=5s --timeout=4s --start-period=60s --retries=3 CMD ["/usr/local/bin/payment-service", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/payment-service"]

# The load generator (`docker compose --profile load up`): not a service, so no port and no
# health check; it waits for the gateway's /healthz itself.
FROM runtime AS loadgen
COPY --from=builder /app/target/release/loadgen /usr/local/bin/loadgen
ENTRYPOINT ["/usr/local/bin/loadgen"]
