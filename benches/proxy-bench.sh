#!/usr/bin/env bash
# The end-to-end proxy benchmark: direct, conduit-proxy, haproxy and nginx against one nginx
# upstream on loopback, in one run. A benchmark, not a test: it measures and prints.
#
#   benches/proxy-bench.sh            # 3 rounds of 5 s per load; BENCH_ROUNDS, BENCH_DURATION
#
# Installs what it needs when absent (Debian: nginx haproxy wrk nghttp2-client; crates.io: oha;
# rustup: llvm-tools, for the PGO build).
set -euo pipefail
cd "$(dirname "$0")/.."

. benches/need-tools.sh
need_tools nginx:nginx haproxy:haproxy wrk:wrk h2load:nghttp2-client taskset:util-linux \
    openssl:openssl
command -v oha >/dev/null 2>&1 || cargo install oha --locked

cargo build --release -p conduit-proxy -p conduit-controller -p conduit -p conduit-bench-tls \
    -p conduit-bench-tap
# .cargo/config.toml names the host's target, so the binaries are under target/<triple>/.
bin_dir="$PWD/target/$(rustc -vV | sed -n 's/^host: //p')/release"
# The proxy under test is the PGO build (benches/pgo.sh), the one to ship; the plain build
# runs beside it as "conduit-proxy, no PGO".
pgo_proxy=$(benches/pgo.sh | tail -n 1)
exec python3 benches/proxy_bench.py "$bin_dir" "$pgo_proxy" "$bin_dir/conduit-proxy"
