# syntax=docker/dockerfile:1
# coldsweep in a container: built on Debian with the Rust toolchain, run on a
# distroless base (glibc and CA certificates, no shell) as a non-root user.
#
#   docker build -t coldsweep .
#   docker run --rm --env-file .env coldsweep check
#   docker run -d --env-file .env -p 9187:9187 coldsweep        # `run`, /metrics, /healthz, /readyz

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
# The caches keep crates and build output between builds; the binary is
# copied out because the target cache is not part of the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin coldsweep \
 && install -D -m 0755 target/release/coldsweep /out/coldsweep

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/coldsweep /usr/local/bin/coldsweep
# uid 65532 ("nonroot"): nothing in the image runs as root.
USER 65532:65532
# Inside a container the metrics address must be reachable from outside it;
# publish the port only where Prometheus or the orchestrator's probes need it.
ENV COLDSWEEP_METRICS_ADDR=0.0.0.0:9187 \
    COLDSWEEP_LOG_FORMAT=json
EXPOSE 9187
ENTRYPOINT ["/usr/local/bin/coldsweep"]
CMD ["run"]
