# Prometheus for the end-to-end container test (scripts/docker_e2e.sh) only. No registry is
# reachable where that test runs, so prom/prometheus (compose.yaml's image) cannot be
# pulled; this is Debian's prometheus on the same debootstrapped base as the league image,
# with the same entrypoint path as prom/prometheus, so compose.yaml's command runs unchanged.
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
RUN printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d \
    && apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /prometheus \
    && /bin/prometheus --version
ENTRYPOINT ["/bin/prometheus"]
