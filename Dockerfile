# syntax=docker/dockerfile:1
#
# The Delta node daemon (`delta node`) as a container image.
#
#   DOCKER_BUILDKIT=1 docker build -t delta .
#   docker run --rm -p 7421:7421 \
#       -v /etc/delta:/etc/delta:ro -v delta-state:/var/lib/delta \
#       delta
#
# node.toml must make the node listen on 0.0.0.0 (or the container's
# address), not loopback, for the published port to reach it. Stop with
# `docker stop --time 45`: Docker's default 10 s is shorter than the node's
# 30 s drain grace period (the systemd unit's TimeoutStopSec=45s, likewise).

# --- build ------------------------------------------------------------------
# Matches the workspace's rust-version (1.95) and the runtime's Debian
# release, so the binary links against the same glibc it runs with.
FROM rust:1.95-bookworm AS builder
WORKDIR /src
COPY . .
# Only the CLI binary (`delta node` is a subcommand). It embeds the
# JavaScript engine components (delta-js -> delta-guest-artifacts, whose
# build script compiles the guests in examples/), so the build needs the
# wasm32-wasip2 target and a C compiler for WebAssembly (QuickJS).
#
# The registry and target dir are BuildKit cache mounts: a rebuild after a
# source change recompiles only what changed, not Wasmtime. The cache is not
# part of any layer, so the binary is copied out within the same RUN.
#
# The release profile keeps line tables (about 150 MB); the image drops them
# (symbols stay, so backtraces still name functions). --build-arg STRIP=no
# keeps them.
ARG STRIP=yes
RUN apt-get update \
    && apt-get install -y --no-install-recommends clang lld wasi-libc libclang-rt-14-dev-wasm32 \
    && rm -rf /var/lib/apt/lists/* \
    && rustup target add wasm32-wasip2
RUN --mount=type=cache,id=delta-cargo-registry,target=/usr/local/cargo/registry \
    --mount=type=cache,id=delta-cargo-git,target=/usr/local/cargo/git \
    --mount=type=cache,id=delta-target,target=/src/target,sharing=locked \
    cargo build --release --locked -p delta --bin delta \
    && install -D -m 0755 target/release/delta /out/delta \
    && if [ "$STRIP" = yes ]; then strip --strip-debug /out/delta; fi

# --- runtime ----------------------------------------------------------------
FROM debian:bookworm-slim
# CA roots for TLS to LLM providers, SMTP/SMS gateways and the control
# plane; nothing else (SQLite is compiled in, the binary needs only glibc).
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
# A fixed non-root uid/gid so volume ownership and a Kubernetes
# runAsNonRoot/runAsUser policy can name it.
RUN groupadd --system --gid 10001 delta \
    && useradd --system --uid 10001 --gid delta --home-dir /var/lib/delta \
        --no-create-home --shell /usr/sbin/nologin delta \
    && install -d -o 10001 -g 10001 -m 0700 /var/lib/delta \
    && install -d -m 0755 /etc/delta
COPY --from=builder /out/delta /usr/local/bin/delta

# Components, compile cache, the SQLite store and the usage outbox. Created
# above with its owner, so a fresh named volume starts owned by delta.
ENV DELTA_STATE_DIR=/var/lib/delta
VOLUME ["/var/lib/delta"]
# The node's default API port.
EXPOSE 7421
# SIGTERM starts the graceful drain (Docker's default, stated for clarity).
STOPSIGNAL SIGTERM
# Numeric, so the runtime can check it is not root without reading
# /etc/passwd. The node runs as PID 1: it handles SIGTERM/SIGHUP itself and
# reaps its own compile-worker children, so no init is needed.
USER 10001:10001
ENTRYPOINT ["/usr/local/bin/delta"]
CMD ["node", "--config", "/etc/delta/node.toml"]
