# syntax=docker/dockerfile:1
# Image for a tchsm signing node (default) or dealer: `docker build -t tchsm .`
# The build stage runs scripts/build-binary.sh, the same script the test suite runs.

FROM golang:1.26-bookworm AS build
# libssl-dev: libcrypto.a, linked statically into the node for its signature shares
# (OpenSSL's constant-time exponentiation; see scripts/build-binary.sh). gcc is in the image.
RUN apt-get update && apt-get install -y --no-install-recommends libssl-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN scripts/build-binary.sh /out "${VERSION}"
RUN mkdir -p /out/data /out/etc

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/tchsm /usr/local/bin/tchsm
# /etc/tchsm: manifest.json, node.json (or dealer.json), identity.json — mounted read-only.
# /var/lib/tchsm: the share store (a volume). The passphrase comes from a secret mounted outside
# both (-passphrase-file /run/secrets/..., as deploy/docker-compose.yml does) or from
# $TCHSM_PASSPHRASE (the node re-executes itself without it); the broker URL from node.json or
# $TCHSM_AMQP_URL.
COPY --from=build --chown=nonroot:nonroot /out/data /var/lib/tchsm
USER nonroot:nonroot
VOLUME ["/var/lib/tchsm"]
EXPOSE 9100
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
  CMD ["/usr/local/bin/tchsm", "healthcheck", "-url", "http://127.0.0.1:9100/healthz"]
ENTRYPOINT ["/usr/local/bin/tchsm"]
CMD ["node", "-config", "/etc/tchsm/node.json"]
