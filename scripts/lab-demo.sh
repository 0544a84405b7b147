#!/usr/bin/env bash
# A scripted tour of `pinwall lab`: start the lab, fetch two sites through
# the client's SOCKS5 listener with curl, stop it and show what the gateway
# saw (every destination) next to what a firewall would see (only the
# gateway).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${PINWALL:-bin/pinwall}
dir=$(mktemp -d)
port=$((20000 + RANDOM % 20000))
log="$dir/lab.out"
"$bin" lab --socks "127.0.0.1:$port" --dir "$dir" --policy scenarios/policies/bypass-gateways-from-endpoints.yaml >"$log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; rm -rf "$dir"' EXIT
for _ in $(seq 1 100); do grep -q ready "$log" && break; sleep 0.1; done
grep ready "$log" || { cat "$log"; exit 1; }
for site in www.social.test app.files.test; do
  echo "== curl --socks5-hostname 127.0.0.1:$port https://$site/"
  curl -sS --max-time 10 --socks5-hostname "127.0.0.1:$port" --cacert "$dir/internet-ca.pem" "https://$site/" | head -c 300; echo
done
kill -INT $pid; wait $pid || true
echo "== what the lab printed"
cat "$log"
echo "== the firewall's log (firewall.jsonl): destinations it saw"
sed -n 's/.*"dst":"\([^"]*\)".*"proto":"\([a-z]*\)".*"app":"\([a-z-]*\)".*/  \1 \2 \3/p' "$dir/firewall.jsonl" | sort | uniq -c
echo "== the gateway's log (gateway.jsonl): destinations it saw"
sed -n 's/.*"event":"flow".*"host":"\([^"]*\)".*/  \1/p' "$dir/gateway.jsonl" | sort | uniq -c
