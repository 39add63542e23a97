# k8shmir proxy image: k8shmir-proxy (the sidecar, the entrypoint), k8shmir-init (the init
# container's iptables tool) and k8shmirctl (the operator's status tool, for `kubectl exec`), on
# Debian bookworm, running as uid 1337.
#
#   DOCKER_BUILDKIT=1 docker build -t k8shmir/proxy .
#   DOCKER_BUILDKIT=1 docker build --build-arg BASE=k8shmir/base:bookworm -t k8shmir/proxy .
#
# BASE is the Debian bookworm image to start from (default debian:bookworm; the e2e test passes
# an image it built offline with debootstrap). Needs BuildKit (apt cache mounts, shared with
# examples/counter/Dockerfile and test/e2e/etcd.Dockerfile through the same cache ids).
# The init container runs the same image as root:
#   command: ["k8shmir-init", "--app-port", "3000", "--proxy-port", "8080", ...]
#   securityContext: {runAsUser: 0, runAsNonRoot: false, capabilities: {add: [NET_ADMIN, NET_RAW]}}
ARG BASE=debian:bookworm

# ---- builder: compilers and -dev packages; builds the three programs -------------------------
FROM ${BASE} AS builder
ARG DEBIAN_FRONTEND=noninteractive
RUN --mount=type=cache,id=k8shmir-apt-lists,target=/var/lib/apt/lists,sharing=locked \
    --mount=type=cache,id=k8shmir-apt-archives,target=/var/cache/apt/archives,sharing=locked \
    rm -f /etc/apt/apt.conf.d/docker-clean \
 && apt-get update -q \
 && apt-get install -y -q --no-install-recommends \
      g++ make cmake pkg-config \
      libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler \
      libboost-dev nlohmann-json3-dev libspdlog-dev libfmt-dev libssl-dev
WORKDIR /src
# Only what the build reads, so that a change elsewhere (docs, chart, tests) keeps the cache.
COPY CMakeLists.txt ./
COPY proto proto
COPY include include
COPY src src
# JOBS: compiler processes (the default suits a small CI machine).
ARG JOBS=2
RUN cmake -S . -B /build -DCMAKE_BUILD_TYPE=Release -DK8SHMIR_BUILD_TESTS=OFF \
      -DK8SHMIR_BUILD_EXAMPLES=OFF -DK8SHMIR_WERROR=OFF \
 && cmake --build /build -j "${JOBS}" --target k8shmir-proxy k8shmir-init k8shmirctl \
 && strip /build/k8shmir-proxy /build/k8shmir-init /build/k8shmirctl

# ---- runtime: shared libraries, iptables, the three binaries; no compilers -------------------
FROM ${BASE}
ARG DEBIAN_FRONTEND=noninteractive
RUN --mount=type=cache,id=k8shmir-apt-lists,target=/var/lib/apt/lists,sharing=locked \
    --mount=type=cache,id=k8shmir-apt-archives,target=/var/cache/apt/archives,sharing=locked \
    rm -f /etc/apt/apt.conf.d/docker-clean \
 && apt-get update -q \
 && apt-get install -y -q --no-install-recommends \
      libgrpc++1.51 libprotobuf32 libspdlog1.10 libfmt9 libssl3 iptables ca-certificates \
 && rm -rf /var/log/apt /var/log/dpkg.log \
 && groupadd --system --gid 1337 k8shmir \
 && useradd --system --uid 1337 --gid 1337 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin k8shmir
COPY --from=builder /build/k8shmir-proxy /build/k8shmir-init /build/k8shmirctl /usr/local/bin/
# Fails the build when a runtime library is missing.
RUN k8shmir-proxy --help >/dev/null && k8shmir-init --help >/dev/null \
 && k8shmirctl --version >/dev/null
LABEL org.opencontainers.image.title="k8shmir-proxy" \
      org.opencontainers.image.description="State Machine Replication sidecar for HTTP apps (k8shmir-proxy, k8shmir-init, k8shmirctl)"
USER 1337:1337
# client traffic (the iptables redirect target), admin (/healthz /readyz /status /metrics)
EXPOSE 8080 9901
ENTRYPOINT ["/usr/local/bin/k8shmir-proxy"]
