#!/usr/bin/env bash
# Run docker-compose.yml for real on a host that cannot pull public images: build stand-ins for the
# three base images from Debian packages (debootstrap) and a wheelhouse filled on the host, build the
# project's image on top with docker/Dockerfile, bring the stack up, run the sample crawl through the
# Celery workers, check the release and tear everything down. Not part of `make test`.
#
#   scripts/compose_smoke.sh [--images-only]   # needs root, dockerd, debootstrap; caches under $CACHE
#
# The stand-ins play the public images' parts: Debian's Python 3.11 with the locked requirements
# preinstalled (apache/airflow; Debian's 3.11.2 is older than some wheels ask for, hence
# PIP_IGNORE_REQUIRES_PYTHON in the stand-in only), Debian's PostgreSQL 15 with an entrypoint honouring POSTGRES_* and
# /docker-entrypoint-initdb.d (postgres:16), Debian's Redis 7 (redis:7).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
CACHE=${CACHE:-/tmp/danqing-compose-smoke}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
STANDIN=danqing-standin
PY=${PY:-$REPO/.venv/bin/python}
export COMPOSE_PROJECT_NAME=danqing-smoke
mkdir -p "$CACHE"
step() { printf '\n== %s (%s)\n' "$*" "$(date +%T)"; }

docker info >/dev/null 2>&1 || { echo "no Docker engine answers: start dockerd first" >&2; exit 2; }

step "base image: Debian bookworm from debootstrap"
if ! docker image inspect "$STANDIN/debian:bookworm" >/dev/null 2>&1; then
  rootfs=$CACHE/rootfs
  [ -x "$rootfs/usr/bin/apt-get" ] || { rm -rf "$rootfs"; debootstrap --variant=minbase bookworm "$rootfs" "$MIRROR"; }
  printf '#!/bin/sh\nexit 101\n' > "$rootfs/usr/sbin/policy-rc.d"  # install services, start none
  chmod +x "$rootfs/usr/sbin/policy-rc.d"
  cp /etc/resolv.conf "$rootfs/etc/resolv.conf"
  mount -t proc proc "$rootfs/proc"
  trap 'umount "$rootfs/proc" 2>/dev/null || true' EXIT
  chroot "$rootfs" apt-get update -q
  DEBIAN_FRONTEND=noninteractive chroot "$rootfs" apt-get install -y -q --no-install-recommends \
    python3.11 python3.11-venv python3.11-dev build-essential ca-certificates procps curl tini \
    postgresql-15 redis-server
  chroot "$rootfs" apt-get clean
  umount "$rootfs/proc"
  trap - EXIT
  rm -f "$rootfs/etc/resolv.conf"
  tar -C "$rootfs" -c . | docker import - "$STANDIN/debian:bookworm"
fi

step "wheelhouse: the locked requirements, downloaded on the host"
wheels=$CACHE/wheelhouse
mkdir -p "$wheels"
# async-timeout: what redis needs on Debian's Python 3.11.2 (< 3.11.3), which the lock's 3.11.7 does not
"$REPO/.venv/bin/pip" download -q --no-deps -r docker/constraints.txt async-timeout==5.0.1 -d "$wheels" 2>&1 \
  | grep -v '^WARNING' || true
for sdist in "$wheels"/*.tar.gz; do  # build sdists here: the image has no index to fetch build deps from
  [ -e "$sdist" ] || continue
  "$REPO/.venv/bin/pip" wheel -q --no-deps "$sdist" -w "$wheels" && rm "$sdist"
done
echo "$(ls "$wheels" | wc -l) wheels, $(du -sh "$wheels" | cut -f1)"

step "stand-in images: airflow, postgres, redis"
if ! docker image inspect "$STANDIN/airflow:3.3.2-python3.11" >/dev/null 2>&1; then
  docker rm -f "$STANDIN-airflow-build" >/dev/null 2>&1 || true
  # Installed from a mounted wheelhouse, then committed: the wheels never become a layer.
  docker run --name "$STANDIN-airflow-build" -v "$wheels:/wheels:ro" \
    -v "$REPO/docker/constraints.txt:/constraints.txt:ro" "$STANDIN/debian:bookworm" bash -euc '
      useradd --uid 50000 --gid 0 --create-home --home-dir /home/airflow airflow
      mkdir -p /opt/airflow/logs /opt/airflow/dags && chown -R airflow:0 /opt/airflow
      setpriv --reuid=50000 --regid=0 --init-groups python3.11 -m venv /home/airflow/.venv
      setpriv --reuid=50000 --regid=0 --init-groups /home/airflow/.venv/bin/pip install -q --no-cache-dir \
        --no-index --find-links /wheels --no-deps --ignore-requires-python -r /constraints.txt async-timeout'
  docker commit \
    --change 'ENV PATH=/home/airflow/.venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV AIRFLOW_HOME=/opt/airflow PIP_NO_INDEX=1 PIP_IGNORE_REQUIRES_PYTHON=1 PYTHONUNBUFFERED=1' \
    --change 'USER airflow' --change 'WORKDIR /opt/airflow' \
    --change 'ENTRYPOINT ["/usr/bin/tini", "--"]' --change 'CMD ["airflow", "version"]' \
    "$STANDIN-airflow-build" "$STANDIN/airflow:3.3.2-python3.11" >/dev/null
  docker rm "$STANDIN-airflow-build" >/dev/null
fi
docker build -q -t "$STANDIN/postgres:16" -f docker/standin/Dockerfile.postgres docker/standin >/dev/null
docker build -q -t "$STANDIN/redis:7" -f docker/standin/Dockerfile.redis docker/standin >/dev/null
docker images --format '{{.Repository}}:{{.Tag}}  {{.Size}}' | grep "^$STANDIN/"
[ "${1:-}" = "--images-only" ] && exit 0

export AIRFLOW_BASE_IMAGE=$STANDIN/airflow:3.3.2-python3.11
export POSTGRES_IMAGE=$STANDIN/postgres:16 REDIS_IMAGE=$STANDIN/redis:7
export AIRFLOW_IMAGE_NAME=danqing-airflow:smoke
export AIRFLOW_JWT_SECRET=$($PY -c 'import secrets; print(secrets.token_hex(32))')
export AIRFLOW_API_PORT=${AIRFLOW_API_PORT:-18080} S3_PORT=${S3_PORT:-15000}

step "docker/Dockerfile on the stand-in base"
docker-compose build -q api-server

teardown() {
  step "teardown"
  docker-compose logs --no-color > "$CACHE/compose.log" 2>&1 || true
  docker-compose --profile flower down -v --remove-orphans 2>&1 | tail -1
  echo "compose logs: $CACHE/compose.log"
}
trap teardown EXIT

step "docker-compose up (two Celery workers)"
docker-compose up -d --scale worker=2 2>&1 | grep -v -E '^(Creating|Starting) .* done$' || true
docker-compose ps

step "the sample crawl through the Celery workers"
"$PY" scripts/compose_smoke.py --api "http://127.0.0.1:$AIRFLOW_API_PORT" --s3 "http://127.0.0.1:$S3_PORT" \
  --work "$CACHE/sample"
