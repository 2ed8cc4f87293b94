#!/bin/bash
# A/B of two builds back to back (benches/README.md, "Issue 15, session 9"):
# the steps `cargo xtask peers` takes for hello-hyper, the control plane's
# authenticated GET (SQLite; PostgreSQL when PGURL names a server where the
# role may create databases) and the node's `?wait=true` runs, run against the
# binaries in BIN_DIR (copies of `delta` and `hello-hyper`), so that the code
# before and after a change is measured minutes apart under the same load.
# usage: PGURL=postgres://... benches/peers-ab.sh BIN_DIR LABEL [DURATION]
# Scratch files and wrk's output: /tmp/perfbench/LABEL.
set -u
BIN=$1; LABEL=$2; D=${3:-8s}
W=/tmp/perfbench/$LABEL; rm -rf $W; mkdir -p $W
ROOT=$(cd "$(dirname "$0")/.." && pwd)
out=$W/results.txt
port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
waitup() { for i in $(seq 1 200); do curl -sf http://127.0.0.1:$1$2 >/dev/null && return 0; sleep 0.1; done; echo "not up $1"; return 1; }
# hyper
P=$(port); $BIN/hello-hyper 127.0.0.1:$P > $W/hyper.log 2>&1 & HP=$!; waitup $P /
echo "== hyper" >> $out; wrk -t1 -c32 -d$D --latency http://127.0.0.1:$P/ >> $out 2>&1; kill $HP; wait $HP 2>/dev/null
# control
control() { # name dburl
  local name=$1 url=$2 dir=$W/control-$1; mkdir -p $dir; local P=$(port)
  { echo "listen = \"127.0.0.1:$P\""; echo "state_dir = \"$dir/state\""; echo "allow_registration = true";
    [ -n "$url" ] && echo "database_url = \"$url\"";
    printf '[rate_limit]\nper_key_per_sec = 0\nper_key_burst = 0\nper_tenant_per_sec = 0\nper_tenant_burst = 0\n'; } > $dir/control.toml
  chmod 600 $dir/control.toml
  $BIN/delta control --config $dir/control.toml > $dir/control.log 2>&1 & local CP=$!
  waitup $P /healthz || { cat $dir/control.log | tail -5; kill $CP; return; }
  local cred='{"email":"peers-'$RANDOM$RANDOM'@example.com","password":"pw-'$RANDOM$RANDOM$RANDOM'xyzxyzxyz"}'
  curl -sf -XPOST -H 'content-type: application/json' -d "$cred" http://127.0.0.1:$P/v1/auth/register >/dev/null
  local access=$(curl -sf -XPOST -H 'content-type: application/json' -d "$cred" http://127.0.0.1:$P/v1/auth/login | python3 -c 'import sys,json;print(json.load(sys.stdin)["access_token"])')
  local key=$(curl -sf -XPOST -H 'content-type: application/json' -H "authorization: Bearer $access" -d '{"name":"peers"}' http://127.0.0.1:$P/v1/api-keys | python3 -c 'import sys,json;print(json.load(sys.stdin)["key"])')
  curl -s -H "authorization: Bearer $key" http://127.0.0.1:$P/v1/tenants/current; echo
  printf 'wrk.method = "GET"\nwrk.headers["Authorization"] = "Bearer %s"\n' "$key" > $dir/get.lua
  echo "== control-$name" >> $out; wrk -t1 -c32 -d$D --latency -s $dir/get.lua http://127.0.0.1:$P/v1/tenants/current >> $out 2>&1
  kill $CP; wait $CP 2>/dev/null
}
control sqlite ""
if [ -n "${PGURL:-}" ]; then
  db=perf_${LABEL}_$RANDOM; psql "$PGURL" -qc "create database $db" && control postgres "${PGURL%/*}/$db"; psql "$PGURL" -qc "drop database $db" 2>/dev/null
fi
# node
dir=$W/node; mkdir -p $dir/state; P=$(port); tok=tok$RANDOM$RANDOM$RANDOM$RANDOM; echo -n $tok > $dir/token; chmod 600 $dir/token
$BIN/delta node --listen 127.0.0.1:$P --state-dir $dir/state --token-file $dir/token --allow-plain-http > $dir/node.log 2>&1 & NP=$!
waitup $P /healthz
wasm=$ROOT/target/guests/hello-agent.wasm; sha=$(sha256sum $wasm | cut -d' ' -f1)
curl -sf -XPUT -H "authorization: Bearer $tok" -H 'content-type: application/wasm' --data-binary @$wasm http://127.0.0.1:$P/v1/components/$sha > /dev/null
curl -sf -XPUT -H "authorization: Bearer $tok" -H 'content-type: application/json' -d '{"tenant_id":"bench","component":"'$sha'"}' http://127.0.0.1:$P/v1/agents/bench-hello >/dev/null
curl -s -XPOST -H "authorization: Bearer $tok" -H 'content-type: application/json' -d '{"input":{"name":"wrk"}}' "http://127.0.0.1:$P/v1/agents/bench-hello/runs?wait=true" | head -c 200; echo
printf 'wrk.method = "POST"\nwrk.body = "{\\"input\\":{\\"name\\":\\"wrk\\"}}"\nwrk.headers["Content-Type"] = "application/json"\nwrk.headers["Authorization"] = "Bearer %s"\n' "$tok" > $dir/runs.lua
echo "== node" >> $out; wrk -t1 -c32 -d$D --latency -s $dir/runs.lua "http://127.0.0.1:$P/v1/agents/bench-hello/runs?wait=true" >> $out 2>&1
kill $NP; wait $NP 2>/dev/null
grep -E "^==|Requests/sec|  50%|  99%|Non-2xx" $out
