# Multi-stage build: compile in the Rust image, run on a slim Debian with only the binary.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin walleti

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* && useradd --system --home /var/lib/walleti walleti \
    && mkdir -p /var/lib/walleti && chown walleti /var/lib/walleti
COPY --from=build /src/target/release/walleti /usr/local/bin/walleti
USER walleti
WORKDIR /var/lib/walleti
ENV WALLETI_BIND=0.0.0.0:8080
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s CMD curl -fsS http://127.0.0.1:8080/health || exit 1
CMD ["walleti", "serve"]
