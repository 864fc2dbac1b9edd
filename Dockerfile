# syntax=docker/dockerfile:1
# wasm-scheduler image: the release binary and the shipped Wasm plugins on distroless.
#
#   docker build -t wasm-scheduler:0.1.0 .
#
# The runtime image has the binary at /usr/local/bin/wasm-scheduler and the plugins in /plugins
# (dra_plugin.wasm, node_label_plugin.wasm, gang_permit_plugin.wasm). deploy/scheduler.yaml mounts
# the configuration at /etc/wasm-scheduler and an extra plugin volume at /plugins/extra.

FROM rust:1.95-bookworm AS build
WORKDIR /src
RUN rustup target add wasm32-wasip2
COPY . .
# The release profile for the binary, the `plugin` profile (small components) for the plugins (see
# Cargo.toml), each plugin as a cdylib only, as scripts/setup does; the caches make rebuilds
# incremental.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p wasm-scheduler --bin wasm-scheduler \
 && for p in dra-plugin node-label-plugin gang-permit-plugin; do \
      cargo rustc --locked --profile plugin --target wasm32-wasip2 -p "$p" --lib --crate-type cdylib; \
    done \
 && mkdir -p /out/plugins \
 && cp target/release/wasm-scheduler /out/ \
 && cp target/wasm32-wasip2/plugin/dra_plugin.wasm \
       target/wasm32-wasip2/plugin/node_label_plugin.wasm \
       target/wasm32-wasip2/plugin/gang_permit_plugin.wasm /out/plugins/

# glibc and libgcc only (TLS is rustls); runs as uid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/wasm-scheduler /usr/local/bin/wasm-scheduler
COPY --from=build /out/plugins/ /plugins/
USER 65532:65532
EXPOSE 10251
ENTRYPOINT ["/usr/local/bin/wasm-scheduler"]
CMD ["run", "--config", "/etc/wasm-scheduler/config.yaml"]
