#!/usr/bin/env bash
# End-to-end container test of the compose league (docs/compose.md, "End-to-end container
# test"; tests/test_docker_e2e.py runs it, marked slow). Needs root and Debian's apt.
#
#   1. installs Debian's docker.io, docker-compose and debootstrap if missing;
#   2. starts its own dockerd (--bridge=none --iptables=false: it creates no network; its
#      data, socket and state live under $LEAGUE_E2E_WORK), stopped again on exit;
#   3. builds the base image from a debootstrapped Debian bookworm root (`docker import`;
#      no registry is reachable), then the project's image (Dockerfile, with that base)
#      and a Prometheus image (deploy/e2e/prometheus.Dockerfile: prom/prometheus cannot
#      be pulled) - builds use the host network to reach Debian's mirror and PyPI; torch is
#      the CPU wheel from /opt/wheels when present, served to the build on 127.0.0.1;
#   4. `docker-compose up`s compose.yaml with a generated override that puts every service
#      on the host network bound to 127.0.0.1 (so all traffic stays on loopback) on free
#      ports: the league, $SCALE learner replicas, the training profile and Prometheus
#      (Grafana is left out: its image cannot be pulled either);
#   5. checks the agents learn (`league status`: versions rise) and Prometheus scrapes the
#      referee, every agent found through the referee's /sd and the coordinator;
#   6. issues credentials for late-1 from the league's CA (the pki service) and attaches one
#      more agent with them (`docker-compose run --rm -e LEAGUE_CREDENTIALS=... agent`), sees it
#      learn and scraped, stops it; 7. `docker-compose down`; prints "E2E OK".
#
# To record a run: bash scripts/docker_e2e.sh 2>&1 | tee deploy/e2e-run.log
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=${LEAGUE_E2E_WORK:-/tmp/league-e2e}           # dockerd state, images, generated files
ROOTFS_CACHE=${LEAGUE_E2E_ROOTFS:-$WORK/rootfs-bookworm}
MIRROR=${LEAGUE_E2E_MIRROR:-http://deb.debian.org/debian}
SCALE=${LEAGUE_E2E_SCALE:-2}
PROJECT=league-e2e
BASE_IMAGE=league-e2e-base:bookworm
PROM_IMAGE=league-e2e-prometheus:bookworm
DOCKER=/usr/bin/docker                              # Debian's client, matching its dockerd
T0=$(date +%s)

say() { printf '[e2e %4ds] %s\n' "$(( $(date +%s) - T0 ))" "$*"; }
fail() { say "FAILED: $*"; exit 1; }

[ "$(id -u)" = 0 ] || fail "needs root (dockerd, debootstrap)"
mkdir -p "$WORK"
cd "$ROOT"

# -- 1. packages ---------------------------------------------------------------------------
need=()
command -v dockerd >/dev/null || need+=(docker.io)
command -v docker-compose >/dev/null || need+=(docker-compose)
command -v debootstrap >/dev/null || need+=(debootstrap)
if [ ${#need[@]} -gt 0 ]; then
  say "installing ${need[*]}"
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}"
fi
say "$(dockerd --version); $(docker-compose version --short 2>/dev/null | head -1 | sed 's/^/docker-compose /')"

# -- 2. dockerd ------------------------------------------------------------------------------
export DOCKER_HOST="unix://$WORK/docker.sock"
COMPOSE=(docker-compose -p "$PROJECT" -f "$WORK/compose.e2e.yaml")
DOCKERD_PID=
WHEELS_PID=
LATE_PID=
UP=
cleanup() {
  local rc=$?
  set +e
  if [ -n "$UP" ]; then
    say "tearing down: docker-compose down"
    "${COMPOSE[@]}" down --timeout 10 2>&1 | sed 's/^/  /'
  fi
  if [ -n "$LATE_PID" ]; then
    $DOCKER ps -q --filter "label=com.docker.compose.project=$PROJECT-run" | xargs -r $DOCKER rm -f > /dev/null
    kill "$LATE_PID" 2>/dev/null
  fi
  [ -n "$WHEELS_PID" ] && kill "$WHEELS_PID" 2>/dev/null
  if [ -n "$DOCKERD_PID" ]; then
    kill "$DOCKERD_PID" 2>/dev/null
    for _ in $(seq 60); do kill -0 "$DOCKERD_PID" 2>/dev/null || break; sleep 0.5; done
    umount "$WORK/exec/netns/default" 2>/dev/null  # dockerd leaves its netns mount behind
    say "dockerd stopped"
  fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 143' TERM
trap 'exit 130' INT

say "starting dockerd --bridge=none --iptables=false (state in $WORK)"
dockerd --bridge=none --iptables=false --data-root "$WORK/data" --exec-root "$WORK/exec" \
  --pidfile "$WORK/dockerd.pid" -H "$DOCKER_HOST" > "$WORK/dockerd.log" 2>&1 &
DOCKERD_PID=$!
for i in $(seq 120); do
  $DOCKER version >/dev/null 2>&1 && break
  kill -0 "$DOCKERD_PID" 2>/dev/null || { tail -n 30 "$WORK/dockerd.log"; DOCKERD_PID=; fail "dockerd exited"; }
  [ "$i" = 120 ] && { tail -n 30 "$WORK/dockerd.log"; fail "dockerd did not answer in 60 s"; }
  sleep 0.5
done
say "dockerd $($DOCKER version --format '{{.Server.Version}}') up: $($DOCKER info --format 'storage {{.Driver}}, cgroups v{{.CgroupVersion}}')"

# -- 3. images -------------------------------------------------------------------------------
if ! $DOCKER image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
  if [ ! -x "$ROOTFS_CACHE/usr/bin/python3" ]; then
    say "debootstrap bookworm (minbase + python3, python3-venv, ca-certificates) from $MIRROR"
    rm -rf "$ROOTFS_CACHE.tmp"
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
      bookworm "$ROOTFS_CACHE.tmp" "$MIRROR" > "$WORK/debootstrap.log" 2>&1 \
      || { tail -n 20 "$WORK/debootstrap.log"; fail "debootstrap"; }
    rm -rf "$ROOTFS_CACHE"
    mv "$ROOTFS_CACHE.tmp" "$ROOTFS_CACHE"
  fi
  # Trust what the host trusts: where the network is reached through a TLS-intercepting
  # proxy, its CA is in the host's bundle but not in Debian's (a no-op elsewhere).
  python3 - "$ROOTFS_CACHE" <<'EOF'
import re, sys
from pathlib import Path
root = Path(sys.argv[1])
pem = lambda p: re.findall(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", p.read_text(), re.S)
host_bundle = Path("/etc/ssl/certs/ca-certificates.crt")
extra = [c for c in pem(host_bundle) if c not in set(pem(root / "etc/ssl/certs/ca-certificates.crt"))] \
    if host_bundle.exists() else []
out = root / "usr/local/share/ca-certificates"
out.mkdir(parents=True, exist_ok=True)
for old in out.glob("host-*.crt"):
    old.unlink()
for i, c in enumerate(extra):
    (out / f"host-{i}.crt").write_text(c + "\n")
print(f"  {len(extra)} host CA certificate(s) added to the base image")
EOF
  chroot "$ROOTFS_CACHE" update-ca-certificates > /dev/null
  say "docker import -> $BASE_IMAGE"
  tar -C "$ROOTFS_CACHE" -c . | $DOCKER import -c 'CMD ["/bin/bash"]' - "$BASE_IMAGE" > /dev/null
fi
$DOCKER run --rm --network host "$BASE_IMAGE" sh -c 'echo "  base: Debian $(cat /etc/debian_version), $(python3 --version)"'

IMAGE=$(sed -n 's/^ *image: \(league:[^ ]*\)$/\1/p' compose.yaml | head -1)
[ -n "$IMAGE" ] || fail "no league image in compose.yaml"
build_args=(--build-arg "BASE_IMAGE=$BASE_IMAGE")
WHEEL=$(ls /opt/wheels/torch-2.13.0+cpu-*.whl 2>/dev/null | head -1 || true)
if [ -n "$WHEEL" ]; then
  WHEELS_PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  python3 -m http.server --bind 127.0.0.1 --directory "$(dirname "$WHEEL")" "$WHEELS_PORT" > "$WORK/wheels.log" 2>&1 &
  WHEELS_PID=$!
  build_args+=(--build-arg TORCH_INDEX_URL= --build-arg "PIP_FIND_LINKS=http://127.0.0.1:$WHEELS_PORT/")
  say "torch: $(basename "$WHEEL"), served to the build from 127.0.0.1:$WHEELS_PORT"
fi
say "docker build -> $IMAGE (base $BASE_IMAGE)"
$DOCKER build --network host "${build_args[@]}" -t "$IMAGE" . > "$WORK/build.log" 2>&1 \
  || { tail -n 30 "$WORK/build.log"; fail "docker build"; }
grep -E '^Successfully (built|tagged)' "$WORK/build.log" | sed 's/^/  /'
[ -n "$WHEELS_PID" ] && { kill "$WHEELS_PID"; WHEELS_PID=; }
say "docker build -> $PROM_IMAGE (Debian's prometheus on the same base)"
$DOCKER build --network host --build-arg "BASE_IMAGE=$BASE_IMAGE" -t "$PROM_IMAGE" \
  -f deploy/e2e/prometheus.Dockerfile deploy/e2e > "$WORK/build-prometheus.log" 2>&1 \
  || { tail -n 30 "$WORK/build-prometheus.log"; fail "docker build (prometheus)"; }
$DOCKER images --format '  {{.Repository}}:{{.Tag}}  {{.Size}}' | grep -E "league|$PROJECT" || true
$DOCKER run --rm --network host "$IMAGE" python -c \
  'import torch, grpc; print(f"  image: torch {torch.__version__} (cuda: {torch.version.cuda}), grpcio {grpc.__version__}")'

# -- 4. up -----------------------------------------------------------------------------------
port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
REF=$(port); REF_M=$(port); TRAIN=$(port); TRAIN_M=$(port); COORD=$(port); COORD_M=$(port); PROM=$(port)
python3 - "$WORK/prometheus.yml" "$REF_M" "$TRAIN_M" "$COORD_M" <<'EOF'
import re, sys
out, ref, train, coord = sys.argv[1:]
text = open("deploy/prometheus/prometheus.yml").read()
for host, port in (("train-referee", train), ("referee", ref), ("coordinator", coord)):
    text = re.sub(rf"(?<![\w.-]){host}:9100\b", f"127.0.0.1:{port}", text)
open(out, "w").write(text)
EOF
cat > "$WORK/compose.hostnet.yaml" <<EOF
# Generated by scripts/docker_e2e.sh: every service on the host network (dockerd runs with
# --bridge=none), bound to 127.0.0.1 on free ports. Agents take any free port (0) and
# advertise 127.0.0.1; replicas share the host's name, so learners draw random ids.
x-agent-env: &agent-env
  LEAGUE_BIND: 127.0.0.1
  LEAGUE_REFEREE: 127.0.0.1:$REF
  LEAGUE_PORT: "0"
  LEAGUE_METRICS_PORT: "0"
  LEAGUE_ADVERTISE: 127.0.0.1
x-train-agent-env: &train-agent-env
  <<: *agent-env
  LEAGUE_REFEREE: 127.0.0.1:$TRAIN
services:
  pki: {network_mode: host}  # one-shot, but on the default network compose would give it an alias
  referee:
    network_mode: host
    environment: {LEAGUE_BIND: 127.0.0.1, LEAGUE_PORT: "$REF", LEAGUE_METRICS_PORT: "$REF_M"}
  meta: {network_mode: host, environment: *agent-env}
  persona-c: {network_mode: host, environment: *agent-env}
  persona-d: {network_mode: host, environment: *agent-env}
  agent:
    network_mode: host
    environment:
      <<: *agent-env
      LEAGUE_AGENT_ID: random
  train-referee:
    network_mode: host
    environment: {LEAGUE_BIND: 127.0.0.1, LEAGUE_PORT: "$TRAIN", LEAGUE_METRICS_PORT: "$TRAIN_M"}
  train-meta: {network_mode: host, environment: *train-agent-env}
  train-persona: {network_mode: host, environment: *train-agent-env}
  coordinator:
    network_mode: host
    environment:
      LEAGUE_BIND: 127.0.0.1
      LEAGUE_REFEREE: 127.0.0.1:$TRAIN
      LEAGUE_PORT: "$COORD"
      LEAGUE_METRICS_PORT: "$COORD_M"
  prometheus:
    image: $PROM_IMAGE
    network_mode: host
    command:
      - --config.file=/etc/prometheus/prometheus.yml
      - --storage.tsdb.path=/prometheus
      - --web.listen-address=127.0.0.1:$PROM
    volumes:
      - $WORK/prometheus.yml:/etc/prometheus/prometheus.yml:ro
networks:
  default:             # the built-in host network: compose creates no bridge
    name: host
    external: true
volumes:               # fixed names: the one-off project of step 6 mounts the same credentials
  pki-ca: {name: $PROJECT-pki-ca}
  pki: {name: $PROJECT-pki}
  pki-claims: {name: $PROJECT-pki-claims}
EOF
say "compose override ($WORK/compose.hostnet.yaml):"
sed 's/^/  | /' "$WORK/compose.hostnet.yaml"
# compose.yaml + the override, merged by docker-compose itself; then, for the services on
# the host network, the published ports dropped: docker-compose 1.29 refuses host
# networking with port bindings (Docker itself would ignore them), and an override file
# cannot unset a list.
docker-compose -f compose.yaml -f "$WORK/compose.hostnet.yaml" --profile monitoring --profile training config \
  > "$WORK/compose.merged.yaml" || fail "docker-compose config"
python3 - "$WORK/compose.merged.yaml" "$WORK/compose.e2e.yaml" <<'EOF'
import sys, yaml
config = yaml.safe_load(open(sys.argv[1]))
for name, svc in config["services"].items():
    if svc.get("network_mode") == "host" and svc.pop("ports", None):
        print(f"  {name}: published ports dropped (host network)")
yaml.safe_dump(config, open(sys.argv[2], "w"), sort_keys=False)
EOF
"${COMPOSE[@]}" config -q || fail "docker-compose config ($WORK/compose.e2e.yaml)"

SERVICES=(pki referee meta persona-c persona-d agent train-referee train-meta train-persona coordinator prometheus)
say "docker-compose up -d --scale agent=$SCALE ${SERVICES[*]}"
UP=1
"${COMPOSE[@]}" --profile monitoring --profile training up -d --no-build --scale "agent=$SCALE" "${SERVICES[@]}" 2>&1 \
  | sed 's/^/  /'
"${COMPOSE[@]}" ps 2>&1 | sed 's/^/  /'

# -- 5. agents learn, Prometheus scrapes -------------------------------------------------------
status() { "${COMPOSE[@]}" exec -T referee league status "127.0.0.1:$REF" "$@"; }
query() {  # PromQL -> the result vector as JSON
  curl -sf --get "http://127.0.0.1:$PROM/api/v1/query" --data-urlencode "query=$1" \
    | python3 -c 'import json, sys; print(json.dumps(json.load(sys.stdin)["data"]["result"]))'
}
count() { query "$1" | python3 -c 'import json, sys; print(len(json.load(sys.stdin)))'; }
wait_for() {  # DESCRIPTION SECONDS COMMAND...: until COMMAND succeeds
  local what=$1 limit=$2; shift 2
  local end=$(( $(date +%s) + limit ))
  until "$@" > /dev/null 2>&1; do
    [ "$(date +%s)" -lt "$end" ] || { "${COMPOSE[@]}" logs --no-color --tail 20 2>&1 | sed 's/^/  /'; fail "$what (${limit}s)"; }
    sleep 2
  done
  say "ok: $what"
}
members_learning() {  # MIN: at least MIN members, every learner past version 1
  status --json | python3 -c '
import json, sys
d = json.load(sys.stdin); m = d["members"]; learners = [x for x in m if x["role"] == "learner"]
sys.exit(not (len(m) >= int(sys.argv[1]) and learners and all(x["policy_version"] >= 2 for x in learners)))' "$1"
}
at_least() { [ "$(count "$1")" -ge "$2" ]; }

wait_for "$(( 3 + SCALE )) agents joined and every learner published version >= 2" 300 members_learning $(( 3 + SCALE ))
status | sed 's/^/  /'
sleep 10
status | sed 's/^/  /'
wait_for "Prometheus: referee, $(( 3 + SCALE )) agents (via /sd), train-referee, 2 train agents, coordinator up" 180 \
  at_least 'up == 1' $(( 3 + SCALE + 5 ))
wait_for "Prometheus: returns of every agent" 120 at_least 'league_agent_mean_step_reward' $(( 3 + SCALE + 2 ))
wait_for "Prometheus: meta-test adaptation curve, steps 0..3" 180 at_least 'league_chain_mean_step_reward' 4
wait_for "Prometheus: meta-learned learning rates from the coordinator" 180 at_least 'league_meta_learning_rate' 1
echo "  scrape targets:"
query 'up' | python3 -c '
import json, sys
for s in sorted(json.load(sys.stdin), key=lambda s: (s["metric"]["job"], s["metric"].get("agent_id", ""))):
    m = s["metric"]
    print("    %-14s%-18s%-22sup=%s" % (m["job"], m.get("agent_id", ""), m["instance"], s["value"][1]))'
echo "  league_agent_mean_step_reward by agent:"
query 'avg by (agent_id) (league_agent_mean_step_reward)' | python3 -c '
import json, sys
for s in sorted(json.load(sys.stdin), key=lambda s: s["metric"]["agent_id"]):
    print("    %-18s%+.3f" % (s["metric"]["agent_id"], float(s["value"][1])))'

# -- 6. attach one more agent ------------------------------------------------------------------
# docker-compose 1.29 links a one-off container to the running replicas of its service,
# and Docker refuses links on the host network; so the one-off runs in a compose project
# of its own (--no-deps: the league is already up). On a compose network (the normal
# case) and with Compose v2, a plain `docker compose run --rm agent` does the same.
# The league is secured: late-1 gets its own credentials from the league's CA first (the pki
# service, the only one that mounts the CA key), then joins with them (docs/security.md).
RUN_PROJECT=$PROJECT-run
say "docker-compose run --rm --no-deps pki league certs ensure ... --issue agent:late-1"
"${COMPOSE[@]}" run --rm --no-deps -T pki league certs ensure /league-pki --ca /league-ca --issue agent:late-1 2>&1 \
  | sed 's/^/  /'
say "docker-compose -p $RUN_PROJECT run --rm --no-deps -e LEAGUE_CREDENTIALS=/league-pki/late-1 agent   (attached to the running league)"
docker-compose -p "$RUN_PROJECT" -f "$WORK/compose.e2e.yaml" run --rm --no-deps -T \
  -e LEAGUE_CREDENTIALS=/league-pki/late-1 agent > "$WORK/late-1.log" 2>&1 &
LATE_PID=$!
late_learning() {
  status --json | python3 -c '
import json, sys
m = {x["agent_id"]: x for x in json.load(sys.stdin)["members"]}
sys.exit(not ("late-1" in m and m["late-1"]["policy_version"] >= 2))'
}
wait_for "late-1 joined and published version >= 2" 180 late_learning
wait_for "Prometheus: late-1's returns (league_agent_mean_step_reward via /sd, league_mean_step_reward from the referee)" 120 \
  at_least '(league_agent_mean_step_reward{agent_id="late-1"}) or (league_mean_step_reward{agent_id="late-1"})' 2
status | sed 's/^/  /'
LATE_CONTAINER=$($DOCKER ps -q --filter "label=com.docker.compose.project=$RUN_PROJECT" --filter "label=com.docker.compose.oneoff=True")
[ -n "$LATE_CONTAINER" ] || fail "no one-off container for late-1"
say "stopping late-1 (container $LATE_CONTAINER)"
$DOCKER stop -t 10 $LATE_CONTAINER > /dev/null
wait "$LATE_PID" && say "ok: docker-compose run --rm agent exited 0" || fail "docker-compose run exited $?"
LATE_PID=
sed 's/^/  late-1 | /' "$WORK/late-1.log" | tail -n 5

# -- 7. down -----------------------------------------------------------------------------------
"${COMPOSE[@]}" logs --no-color --tail 3 coordinator 2>&1 | sed 's/^/  /'
say "docker-compose down"
"${COMPOSE[@]}" down --timeout 10 2>&1 | sed 's/^/  /'
UP=
left=$($DOCKER ps -aq | wc -l)
[ "$left" = 0 ] || fail "$left containers left after down"
say "E2E OK"
