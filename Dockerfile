# One container: the paygate binary and a PostgreSQL server for its embedded
# database. `docker run -p 8000:8000 -v paygate:/data paygate` needs nothing
# else; set DATABASE_URL to use an external PostgreSQL instead.

FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/paygate .

FROM debian:bookworm-slim
# The server binaries only: paygate initialises and runs its own cluster in
# /data, so the package's default cluster is not created.
RUN apt-get update \
 && apt-get install -y --no-install-recommends postgresql-common \
 && sed -ri 's/^#?\s*create_main_cluster.*/create_main_cluster = false/' /etc/postgresql-common/createcluster.conf \
 && apt-get install -y --no-install-recommends postgresql-15 ca-certificates tzdata \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /data && chown postgres:postgres /data
COPY --from=build /out/paygate /usr/local/bin/paygate
# PostgreSQL refuses to run as root; the postgres user owns /data (a new named
# volume takes this ownership from the image).
USER postgres
ENV DATA_DIR=/data PORT=8000 LOG_FORMAT=json
VOLUME /data
EXPOSE 8000
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/paygate"]
CMD ["serve"]
