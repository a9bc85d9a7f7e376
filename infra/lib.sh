# Shared helpers of infra/dev and infra/test (sourced, not run).
# Installs pinned Python tools into .venv, starts and stops the local DynamoDB.

MINISTACK_VERSION=1.5.33
VENV=${APIKEYS_VENV:-$PWD/.venv}

# Any AWS SDK call needs credentials and a region; the local server ignores them.
export AWS_ACCESS_KEY_ID=${AWS_ACCESS_KEY_ID:-local} AWS_SECRET_ACCESS_KEY=${AWS_SECRET_ACCESS_KEY:-local}
export AWS_REGION=${AWS_REGION:-us-east-1} AWS_EC2_METADATA_DISABLED=true

# Each line says when, in seconds since the script began (bash's SECONDS),
# so a run's log tells the time of each stage.
log() { printf '==> [%4ds] %s\n' "$SECONDS" "$*" >&2; }

# The Python the project's tools are pinned to.
python311() {
  if command -v python3.11 > /dev/null; then echo python3.11; return; fi
  if python3 -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then echo python3; return; fi
  log "Python 3.11 is needed (python3.11 or python3)"; return 1
}

# ensure_venv DIR PACKAGE==VERSION...: a venv at DIR holding exactly these pins.
ensure_venv() {
  local dir=$1; shift
  local want="$*" stamp="$dir/.apikeys-pins"
  if [ -x "$dir/bin/python" ] && [ "$(cat "$stamp" 2> /dev/null)" = "$want" ]; then
    return 0
  fi
  log "installing $want into $dir"
  [ -x "$dir/bin/python" ] || "$(python311)" -m venv "$dir" || return 1
  # --no-compile: Python compiles what it imports, when it first does.
  # Explicit: a caller may have errexit off, and a stamp after a failed
  # install would make the broken venv trusted.
  "$dir/bin/pip" install -q --disable-pip-version-check --no-compile "$@" || return 1
  echo "$want" > "$stamp"
}

# The pinned local DynamoDB (and Cognito: its user pools sign with real RSA
# keys only with `cryptography` beside it), in .venv.
CRYPTOGRAPHY_VERSION=46.0.3
ensure_ministack() {
  ensure_venv "$VENV" "ministack==$MINISTACK_VERSION" "cryptography==$CRYPTOGRAPHY_VERSION"
}

# The real Prefect 1.x client and pytest for the end-to-end tests, in .venv-prefect.
PREFECT_VENV=${APIKEYS_PREFECT_VENV:-$PWD/.venv-prefect}
ensure_prefect() {
  ensure_venv "$PREFECT_VENV" "prefect==1.4.1" "pytest==8.4.2"
}

# AWS SAM CLI (with its Lambda emulator), cfn-lint, cargo-lambda (brings zig)
# and pytest, in .venv-sam.
SAM_VENV=${APIKEYS_SAM_VENV:-$PWD/.venv-sam}
ensure_sam() {
  ensure_venv "$SAM_VENV" "aws-sam-cli==1.170.0" "cfn-lint==1.58.0" "cargo-lambda==1.9.2" "pytest==8.4.2"
  export SAM_CLI_TELEMETRY=0
}

# The local AWS emulator that runs the deployed stack (CloudFormation with the
# SAM transform, API Gateway, Lambda, EventBridge, IAM, S3) and the AWS CLI
# to deploy to it, in .venv-aws: installed together, since the translator
# alone would move botocore past ministack's pin.
AWS_VENV=${APIKEYS_AWS_VENV:-$PWD/.venv-aws}
ensure_aws_emulator() {
  ensure_venv "$AWS_VENV" "ministack==$MINISTACK_VERSION" "aws-sam-translator==1.115.0" "awscli==1.46.3" \
    "cryptography==$CRYPTOGRAPHY_VERSION"
}

# The real browser for the console's tests: Debian's Chromium (never
# Playwright's own download, which this network does not reach) and
# Playwright for Python with pytest, in .venv-browser.
BROWSER_VENV=${APIKEYS_BROWSER_VENV:-$PWD/.venv-browser}
CHROMIUM=${CHROMIUM:-/usr/lib/chromium/chromium}
ensure_browser() {
  if [ ! -x "$CHROMIUM" ]; then
    log "installing Debian's chromium"
    local sudo=
    [ "$(id -u)" = 0 ] || sudo=sudo
    $sudo apt-get install -y -q chromium > /dev/null 2>&1 \
      || { $sudo apt-get update -q > /dev/null && $sudo apt-get install -y -q chromium > /dev/null; }
  fi
  ensure_venv "$BROWSER_VENV" "playwright==1.64.1" "pytest==8.4.2"
  export CHROMIUM
}

# The GraphQL-over-HTTP reference audit (npm graphql-http, pinned by
# tests/graphql_http/package-lock.json), for tests/e2e/test_graphql_http.py.
ensure_graphql_http() {
  local dir=tests/graphql_http
  local stamp="$dir/node_modules/.apikeys-lock"
  if [ -f "$stamp" ] && cmp -s "$dir/package-lock.json" "$stamp"; then
    return 0
  fi
  command -v npm > /dev/null || { log "Node.js and npm are needed for the GraphQL-over-HTTP audit"; return 1; }
  log "installing the GraphQL-over-HTTP audit (npm ci in $dir)"
  (cd "$dir" && npm ci --no-audit --no-fund --silent) || return 1
  cp "$dir/package-lock.json" "$stamp"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start_ministack PORT STATE_DIR [persist]: starts the local DynamoDB on
# 127.0.0.1:PORT, sets MINISTACK_PID, waits until it answers.
start_ministack() {
  local port=$1 state=$2 persist=${3:-}
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2> /dev/null; then
    log "port $port is already in use: stop what is there or choose another port"; return 1
  fi
  mkdir -p "$state"
  if [ -n "$persist" ]; then
    # Saved after every acknowledged write, not only at a graceful stop.
    PERSIST_STATE=1 STATE_DIR="$state" GATEWAY_PORT=$port BIND_HOST=127.0.0.1 SERVICES=dynamodb,cognito-idp \
      "$VENV/bin/python" infra/durable_dynamodb.py > "$state/ministack.log" 2>&1 &
  else
    GATEWAY_PORT=$port BIND_HOST=127.0.0.1 SERVICES=dynamodb,cognito-idp \
      "$VENV/bin/ministack" > "$state/ministack.log" 2>&1 &
  fi
  MINISTACK_PID=$!
  for _ in $(seq 1 100); do
    if curl -sf "http://127.0.0.1:$port/_ministack/health" > /dev/null 2>&1; then
      return 0
    fi
    if ! kill -0 "$MINISTACK_PID" 2> /dev/null; then
      log "the local DynamoDB did not start:"; tail -20 "$state/ministack.log" >&2; return 1
    fi
    sleep 0.2
  done
  log "the local DynamoDB did not answer on port $port"; return 1
}

# stop_recorded PIDFILE: stops the processes a previous run recorded in
# PIDFILE ("pid what" lines) that are still running and still what was
# recorded (their command line holds "what"), then removes the file. What a
# crashed run left behind is cleaned up; nothing else is touched.
stop_recorded() {
  local file=$1 pid what
  [ -f "$file" ] || return 0
  while read -r pid what; do
    [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || continue
    if tr '\0' ' ' < "/proc/$pid/cmdline" | grep -qF -- "$what"; then
      log "stopping $what (pid $pid), left running by a previous run"
      stop_pid "$pid"
    fi
  done < "$file"
  rm -f "$file"
}

# running PID: the process exists and has not ended (a zombie has ended:
# an orphan's zombie waits for init, not for us).
running() {
  kill -0 "$1" 2> /dev/null || return 1
  ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2> /dev/null
}

# stop_pid PID: SIGTERM, then SIGKILL after 10 s; waits for it to end.
stop_pid() {
  local pid=$1
  running "$pid" || { wait "$pid" 2> /dev/null || true; return 0; }
  kill -TERM "$pid" 2> /dev/null || true
  for _ in $(seq 1 50); do
    running "$pid" || { wait "$pid" 2> /dev/null || true; return 0; }
    sleep 0.2
  done
  kill -KILL "$pid" 2> /dev/null || true
  wait "$pid" 2> /dev/null || true
}

# Stages that run beside the others (infra/test): in_background NAME CMD...
# runs CMD (a command or a function of this file) with its output in
# $STAGE_LOGS/NAME.log, and leaves NAME.done or NAME.failed there when it
# ends; await_stage NAME waits for that (from any process: a background
# stage may await another); finish NAME awaits it, shows its output, and
# ends the run if it failed; stop_background (on exit) stops what is still
# running, children included, by pid.
BACKGROUND_PIDS=()
in_background() {
  local name=$1; shift
  # The stage runs with errexit in a subshell of its own: its status is
  # tested outside it (testing it inside, as `if`, would turn errexit off
  # for the whole stage, and a failing step would go unnoticed).
  (
    set +e
    (set -e; "$@")
    rc=$?
    if [ "$rc" = 0 ]; then touch "$STAGE_LOGS/$name.done"; else touch "$STAGE_LOGS/$name.failed"; fi
    exit "$rc"
  ) > "$STAGE_LOGS/$name.log" 2>&1 &
  BACKGROUND_PIDS+=("$!")
  printf '%s\n' "$!" > "$STAGE_LOGS/$name.pid"
}
await_stage() {
  local name=$1 pid
  until [ -e "$STAGE_LOGS/$name.done" ]; do
    if [ -e "$STAGE_LOGS/$name.failed" ]; then log "$name failed"; return 1; fi
    # A stage killed from outside leaves no mark: it has failed.
    pid=$(cat "$STAGE_LOGS/$name.pid" 2> /dev/null || true)
    if [ -n "$pid" ] && ! kill -0 "$pid" 2> /dev/null && [ ! -e "$STAGE_LOGS/$name.done" ]; then
      log "$name ended without finishing"; return 1
    fi
    sleep 0.5
  done
}
finish() {
  local name=$1 ok=0
  await_stage "$name" 2> /dev/null || ok=1
  sed "s/^/  [$name] /" "$STAGE_LOGS/$name.log" >&2
  if [ "$ok" != 0 ]; then log "$name failed"; exit 1; fi
}
stop_tree() {
  local children child
  children=$(pgrep -P "$1" 2> /dev/null || true)
  kill -TERM "$1" 2> /dev/null || true
  for child in $children; do stop_tree "$child"; done
}
# stop_trees PID...: stop_tree each, then SIGKILL whatever of them is
# still running 10 s later.
stop_trees() {
  local pid
  for pid in "$@"; do running "$pid" && stop_tree "$pid"; done
  local alive
  for _ in $(seq 1 50); do
    alive=0
    for pid in "$@"; do running "$pid" && alive=1; done
    [ "$alive" = 0 ] && return 0
    sleep 0.2
  done
  for pid in "$@"; do running "$pid" && kill -KILL "$pid" 2> /dev/null; done
  return 0
}
stop_background() {
  local pid
  [ "${#BACKGROUND_PIDS[@]}" = 0 ] && return 0
  stop_trees "${BACKGROUND_PIDS[@]}"
  for pid in "${BACKGROUND_PIDS[@]}"; do wait "$pid" 2> /dev/null || true; done
}

# The stage runner's self-test: a stage whose first step fails has failed
# (whatever it does after), one killed from outside has failed, and one
# that succeeds is done.
stages_self_test() (
  STAGE_LOGS=$(mktemp -d)
  BACKGROUND_PIDS=()
  trap 'stop_background; rm -rf "$STAGE_LOGS"' EXIT
  fails_first() { false; echo "went on"; }
  in_background failing fails_first
  in_background passing true
  in_background killed sleep 600
  kill -KILL "${BACKGROUND_PIDS[2]}"
  if await_stage failing 2> /dev/null; then echo "a failing stage was taken as done"; exit 1; fi
  if grep -q "went on" "$STAGE_LOGS/failing.log"; then echo "a stage went on after a failing step"; exit 1; fi
  await_stage passing || { echo "a passing stage was not done"; exit 1; }
  if await_stage killed 2> /dev/null; then echo "a killed stage was taken as done"; exit 1; fi
  echo "stage runner: self-test passed"
)
