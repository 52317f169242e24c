#!/usr/bin/env bash
# Builds conduit-proxy with profile-guided optimization (PGO), the build to ship:
#
#   benches/pgo.sh        # prints the optimized binary's path last, on stdout
#
# 1. an instrumented release build (target/pgo-generate/);
# 2. a training run: benches/proxy_bench.py --train carries HTTP/1 and HTTP/2 loads, with and
#    without request bodies, through the proxy alone, balanced by the controller, and as the
#    meshed mTLS pair, then mTLS handshakes (nginx upstream, wrk, h2load; about a minute);
# 3. the profiles merged by llvm-profdata (rustup's llvm-tools component);
# 4. the optimized release build (target/pgo/), with the same flags as a plain build plus the
#    profile.
#
# Why: per request the proxy runs as many instructions as haproxy, but its hot path is spread
# over more code, so it misses the instruction cache more often. The profile lets the compiler
# lay the hot path out together and move cold paths aside. README.md, "Building", has the
# figures.
#
# The profile is made at build time from the source being built, so it is never stale; nothing
# is committed. Installs what it needs when absent (Debian: nginx wrk nghttp2-client).
set -euo pipefail
cd "$(dirname "$0")/.."

. benches/need-tools.sh
need_tools nginx:nginx wrk:wrk h2load:nghttp2-client taskset:util-linux
host=$(rustc -vV | sed -n 's/^host: //p')
profdata="$(rustc --print sysroot)/lib/rustlib/$host/bin/llvm-profdata"
[ -x "$profdata" ] || rustup component add llvm-tools >&2

# The training's other processes (controller, CLI, handshake client) need no profile.
cargo build --release -p conduit-controller -p conduit -p conduit-bench-tls >&2

# target.<triple>.rustflags are added to .cargo/config.toml's (static linking), where
# RUSTFLAGS would replace them. The profiles' directory is always the same one, since it is
# part of those flags: a new one each time would rebuild every crate.
profiles="$PWD/target/pgo-generate/profiles"
rm -rf "$profiles"
mkdir -p "$profiles"
cargo build --release -p conduit-proxy --target-dir target/pgo-generate \
    --config "target.$host.rustflags=['-Cprofile-generate=$profiles']" >&2
LLVM_PROFILE_FILE="$profiles/conduit-proxy-%p-%m.profraw" python3 benches/proxy_bench.py --train \
    "target/$host/release" "target/pgo-generate/$host/release/conduit-proxy" >&2

# Every proxy process of the training writes its profile when it exits after SIGTERM.
count=$(find "$profiles" -name '*.profraw' | wc -l)
if [ "$count" -lt 8 ]; then
    echo "pgo: expected 8 profiles (one per training proxy), found $count" >&2
    exit 1
fi
mkdir -p target/pgo
"$profdata" merge -o target/pgo/conduit-proxy.profdata "$profiles"/*.profraw
cargo build --release -p conduit-proxy --target-dir target/pgo \
    --config "target.$host.rustflags=['-Cprofile-use=$PWD/target/pgo/conduit-proxy.profdata']" >&2
echo "$PWD/target/pgo/$host/release/conduit-proxy"
