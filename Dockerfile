# sonde's container image: `docker build -t sonde:0.1.0 .`
#
# Build stage: the Rust toolchain plus clang and libbpf's headers, which
# compile the eBPF programs (ebpf/build.rs, sources/build.rs).
FROM rust:1.95-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends clang llvm libbpf-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --package sonde \
 && cp target/release/sonde /sonde

# Runtime stage: glibc and CA certificates, no shell, no package manager
# (about 25 MB with the agent). Runs as root: loading eBPF programs needs
# capabilities that only root's (or the pod's added) set has; the agent
# drops those its pipeline does not need once it is running.
FROM gcr.io/distroless/cc-debian12
COPY --from=build /sonde /usr/bin/sonde
COPY configs/default.hcl /etc/sonde/pipeline.hcl
USER 0
EXPOSE 8686
ENTRYPOINT ["/usr/bin/sonde"]
CMD ["run", "--config", "/etc/sonde/pipeline.hcl"]
