# One container: the paygate binary and a PostgreSQL server for its embedded
# database. `docker run -p 8000:8000 -v paygate:/data paygate` needs nothing
# else; set DATABASE_URL to use an external PostgreSQL instead. Checked by
# dockerfile_test.go (and built there when a container engine is present).

FROM golang:1.26.8-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/paygate .

FROM debian:bookworm-slim
# The server binaries only: paygate initialises and runs its own cluster in
# /data, so the package's default cluster is not created. setpriv (util-linux,
# in the base image) drops root in the entry point.
RUN apt-get update \
 && apt-get install -y --no-install-recommends postgresql-common \
 && sed -ri 's/^#?\s*create_main_cluster.*/create_main_cluster = false/' /etc/postgresql-common/createcluster.conf \
 && apt-get install -y --no-install-recommends postgresql-15 ca-certificates tzdata \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /data && chown postgres:postgres /data
COPY --from=build /out/paygate /usr/local/bin/paygate
# Executable as git checks it out (mode 100755): a plain COPY keeps the mode,
# and needs no BuildKit (COPY --chmod would).
COPY docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
# No TEST_MODE here: the image never seeds the public test merchant unless
# it is run with -e TEST_MODE=true. SHUTDOWN_TIMEOUT bounds the whole stop,
# PostgreSQL's included: 8 s leaves room within Docker's default 10 s grace
# before SIGKILL (see STOPSIGNAL).
ENV DATA_DIR=/data PORT=8000 LOG_FORMAT=json SHUTDOWN_TIMEOUT=8s
VOLUME /data
EXPOSE 8000
# paygate asks its own /ready (the image has no curl).
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 CMD ["paygate", "healthcheck"]
# SIGTERM starts the ordered stop (HTTP, jobs, pool, PostgreSQL) within
# SHUTDOWN_TIMEOUT (8 s here), so Docker's default 10 s before SIGKILL is
# enough. Raising SHUTDOWN_TIMEOUT needs --stop-timeout of at least 2 s more.
STOPSIGNAL SIGTERM
# Starts as root only to fix the data folder's owner, then runs as postgres.
ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]
CMD ["serve"]
