# Sphere EHR: one static-ish binary on Debian slim.
#   docker build -t sphere-ehr .
# The gRPC code for KurrentDB is checked in, so the build needs no protoc.

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# Cache the registry and target dir between builds (BuildKit); the binary is copied out
# because the cache mount is not part of the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin sphere \
 && cp target/release/sphere /usr/local/bin/sphere

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --home /var/lib/sphere --create-home sphere
COPY --from=build /usr/local/bin/sphere /usr/local/bin/sphere
USER sphere
WORKDIR /var/lib/sphere
ENV SPHERE_DATA_DIR=/var/lib/sphere \
    SPHERE_LISTEN=0.0.0.0:8443
EXPOSE 8443
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s \
  CMD curl -fsSk https://localhost:8443/health || exit 1
ENTRYPOINT ["sphere"]
CMD ["serve"]
