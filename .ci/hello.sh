#!/usr/bin/env bash
# Runs the README's two-process example as a user does: hello-server on 127.0.0.1 with a port the OS picks (it
# prints the address it serves on as its first line), then hello-client against it; checks what the client
# prints, then stops the server by its pid with SIGTERM (as systemd, Docker and Kubernetes do) and checks that
# it drained and exited with status 0.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"
cargo build --release -p examples --bin hello-server --bin hello-client
bin="$repo/target/release"
out="$(mktemp -d)"
server=""
cleanup() {
    [ -z "$server" ] || kill -KILL "$server" 2>/dev/null || true
    rm -rf "$out"
}
trap cleanup EXIT

"$bin/hello-server" --listen 127.0.0.1:0 >"$out/server.out" 2>"$out/server.err" &
server=$!
for _ in $(seq 100); do
    [ -s "$out/server.out" ] && break
    kill -0 "$server" 2>/dev/null || { echo "hello: hello-server exited:" >&2; cat "$out/server.err" >&2; exit 1; }
    sleep 0.1
done
address="$(head -n 1 "$out/server.out")"
[[ "$address" =~ ^127\.0\.0\.1:[0-9]+$ ]] || { echo "hello: hello-server printed no address: '$address'" >&2; exit 1; }

"$bin/hello-client" --server "$address" Ada Grace | tee "$out/client.out"
for line in \
    "hello, Ada" \
    "hello, Ada (trace 4bf92f35)" \
    "hello, Ada; hello, Grace" \
    "the greeter refused an empty list: nobody to greet"; do
    grep -qxF "$line" "$out/client.out" || { echo "hello: hello-client did not print '$line'" >&2; exit 1; }
done

kill -TERM "$server"
for _ in $(seq 150); do
    kill -0 "$server" 2>/dev/null || break
    sleep 0.1
done
if kill -0 "$server" 2>/dev/null; then
    echo "hello: hello-server still runs 15 s after SIGTERM" >&2
    exit 1
fi
status=0
wait "$server" || status=$?
server=""
[ "$status" -eq 0 ] || { echo "hello: hello-server exited with status $status after SIGTERM" >&2; cat "$out/server.err" >&2; exit 1; }
echo "hello: ok (hello-server on $address answered hello-client, then drained on SIGTERM)"
