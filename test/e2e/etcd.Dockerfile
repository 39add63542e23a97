# etcd for the container e2e test: Debian's etcd-server on the offline-built base image (no image
# can be pulled in CI). Build context: any directory (nothing is copied).
ARG BASE=debian:bookworm
FROM ${BASE}
ARG DEBIAN_FRONTEND=noninteractive
RUN --mount=type=cache,id=k8shmir-apt-lists,target=/var/lib/apt/lists,sharing=locked \
    --mount=type=cache,id=k8shmir-apt-archives,target=/var/cache/apt/archives,sharing=locked \
    rm -f /etc/apt/apt.conf.d/docker-clean \
 && apt-get update -q \
 && apt-get install -y -q --no-install-recommends etcd-server \
 && rm -rf /var/log/apt /var/log/dpkg.log
EXPOSE 2379 2380
ENTRYPOINT ["/usr/bin/etcd"]
