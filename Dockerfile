# syntax=docker/dockerfile:1
# One Dockerfile for every TrendStream image; the binary is a build argument:
#   docker build --build-arg PACKAGE=fraud-detector --build-arg BINARY=fraud-detector -t fraud-detector .
# One file rather than seven because the images differ only in that binary: they share the
# dependency layer (RocksDB and librdkafka are most of the build), so a builder with a cache
# compiles it once for all of them. skaffold.yaml lists the images and their arguments.
#
# Bases are pinned by exact tag (builder and runtime on the same Debian release, so the glibc
# the binary links against is the one it runs on); pin a digest here when releasing.
ARG RUST_IMAGE=rust:1.95.0-slim-trixie
ARG RUNTIME_IMAGE=debian:13.2-slim
# The `local` stage's base, required for that target: a Debian of the build host's release
# (e2e/env makes it with debootstrap and passes it, tagged by content), so host-built binaries
# find the glibc and libstdc++ they were linked against.
ARG LOCAL_BASE_IMAGE

FROM ${RUST_IMAGE} AS chef
# RocksDB needs clang (bindgen) and a C++ compiler; rdkafka builds its bundled librdkafka with
# cmake. Package versions come with the pinned base's Debian release.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends cmake g++ make pkg-config libclang-dev \
       zlib1g-dev libcurl4-openssl-dev libssl-dev \
    && rm -rf /var/lib/apt/lists/*
RUN cargo install cargo-chef --locked --version 0.1.78
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
# The dependency layer: rebuilt only when Cargo.toml or Cargo.lock change.
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --release --locked --recipe-path recipe.json
COPY . .
ARG PACKAGE
ARG BINARY=${PACKAGE}
RUN test -n "${PACKAGE}" || { echo "--build-arg PACKAGE is required" >&2; exit 1; }
RUN cargo build --release --locked -p "${PACKAGE}" --bin "${BINARY}" \
    && install -D "target/release/${BINARY}" /out/usr/local/bin/app

# Images from binaries built on the host (`--target local`, the build context holding just
# the binary as `app`): the test environment builds these, where no Rust image can be pulled.
# The same user, entry point and port as the production image below.
FROM ${LOCAL_BASE_IMAGE} AS local
ARG BINARY
LABEL org.opencontainers.image.title="${BINARY}" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY app /usr/local/bin/app
USER 65532:65532
EXPOSE 9090
ENTRYPOINT ["/usr/local/bin/app"]

# The production image: the default target.
FROM ${RUNTIME_IMAGE}
ARG BINARY
LABEL org.opencontainers.image.title="${BINARY}" \
      org.opencontainers.image.licenses="Apache-2.0"
# The slim base already has the shared libraries the binaries link (libstdc++, libgcc, zlib).
COPY --from=builder /out/ /
# Distroless' "nonroot" IDs, which the operator's pod templates and the charts run as; numeric,
# so the kubelet can check runAsNonRoot without a passwd entry.
USER 65532:65532
EXPOSE 9090
ENTRYPOINT ["/usr/local/bin/app"]
