#!/usr/bin/env python3
"""End-to-end proxy benchmark; run through benches/proxy-bench.sh.

  proxy_bench.py BIN_DIR PROXY [PLAIN_PROXY]   measure (PROXY: the PGO build)
  proxy_bench.py --train BIN_DIR PROXY         the PGO training run (benches/pgo.sh)

Every proxy is pinned to core 1; the upstream nginx and the load generators to core 0. Each
proxy forwards to the same upstream, which answers every request with a 1 KiB body. Loads:

Every proxy runs all the time; the loads go round-robin over them, BENCH_ROUNDS times
(default 3) for BENCH_DURATION seconds each (default 5), and the table shows the median round,
so that a slow spell on a shared machine touches every proxy alike.

  h1 c=1       wrk, 1 connection, HTTP/1.1 keep-alive
  h1 c=64      wrk, 64 connections
  h2 1x1       h2load, 1 connection x 1 stream (HTTP/2 prior knowledge)
  h2 4x32      h2load, 4 connections x 32 streams
  fixed 2k/s   oha at a fixed 2,000 requests/s, latency corrected for coordinated omission

Latency percentiles come from wrk's histogram, h2load's per-request log and oha's corrected
histogram. CPU is the proxy's user+system time over the load's wall time (100% = one core);
RSS is resident memory idle (before any load) and at its peak (VmHWM) over the whole run.
"anon RSS" is the largest anonymous part of it seen at the end of a load (heap and stacks: the
memory that is the process's own); the rest of RSS is the program and its shared libraries,
mapped from the page cache and shared with every process that maps the same files.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

DURATION = int(os.environ.get("BENCH_DURATION", "5"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
# To measure a part only (while tuning): names, separated by ";", of loads and of proxies, as the
# table shows them. The direct path is always measured, since the other rows are relative to it.
# Either one leaves out the handshake and tap measurements.
ONLY_LOADS = [n for n in os.environ.get("BENCH_LOADS", "").split(";") if n]
ONLY_PROXIES = [n for n in os.environ.get("BENCH_PROXIES", "").split(";") if n]
PROXY_CORE, LOAD_CORE = "1", "0"
UP_H1, UP_H2 = 18080, 18081
# Two more upstream ports per protocol: with the first, the three endpoints of the balanced run.
UP_H1_MORE, UP_H2_MORE = (18082, 18083), (18084, 18085)
# The balanced run's service: the controller knows it by this "cluster IP", and the proxy's
# outbound listeners sit there, so explicit-mode requests name it with no extra header.
SERVICE_IP, SERVICE_H1, SERVICE_H2 = "127.0.0.2", 19150, 19151
# The meshed pair: a client-side proxy (outbound, on this "cluster IP") and a server-side
# proxy (inbound, forwarding to the upstream), mTLS and HTTP/2 between them.
MESH_IP, MESH_H1, MESH_H2 = "127.0.0.3", 19160, 19161
# The server-side h1 proxy's tap port (its admin port, 19195, minus 30).
MESH_TAP_H1 = 19165
MESH_IN_H1, MESH_IN_H2 = 19163, 19164
SERVER_ID = "server.bench.serviceaccount.identity.conduit.cluster.local"
CLIENT_ID = "client.bench.serviceaccount.identity.conduit.cluster.local"
BODY = "x" * 1024
WRK_LUA = """
done = function(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
      + summary.errors.status + summary.errors.timeout
  io.write(string.format("BENCH %f %d %d %d %d\\n",
      summary.requests / (summary.duration / 1e6),
      latency:percentile(50), latency:percentile(99), latency:percentile(99.9), errors))
end
"""


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


def pinned(core, cmd):
    return ["taskset", "-c", core] + cmd


def addr(port):
    """`host:port` for a port on 127.0.0.1, or an address given whole."""
    return f"127.0.0.1:{port}" if isinstance(port, int) else port


def wait_ready(admin, timeout=20):
    """Waits for a proxy's /ready (with an identity: its first certificate)."""
    import urllib.request
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"http://{admin}/ready", timeout=1) as rsp:
                if rsp.status == 200:
                    return
        except Exception:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{admin} never became ready")


def wait_port(port, timeout=10):
    import socket
    host, p = addr(port).rsplit(":", 1)
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection((host, int(p)), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"port {port} never opened")


def proc_stat(pid):
    """(cpu seconds, rss bytes, peak rss bytes, anonymous rss bytes) of a process."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    rss = peak = anon = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) * 1024
            elif line.startswith("VmHWM:"):
                peak = int(line.split()[1]) * 1024
            elif line.startswith("RssAnon:"):
                anon = int(line.split()[1]) * 1024
    return cpu, rss, peak, anon


def children_of(pid):
    try:
        out = run(["pgrep", "-P", str(pid)]).stdout.split()
        return [int(p) for p in out]
    except subprocess.CalledProcessError:
        return []


class Instance:
    """One process tree under test, pinned to the proxy core."""

    def __init__(self, cmd, ports, env=None):
        self.proc = subprocess.Popen(pinned(PROXY_CORE, cmd), env=env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        for p in ports:
            wait_port(p)

    def sample(self):
        """(cpu seconds, rss bytes, peak rss bytes, anonymous rss bytes), summed over the
        process tree."""
        total = [0.0, 0, 0, 0]
        for pid in [self.proc.pid] + children_of(self.proc.pid):
            try:
                for i, v in enumerate(proc_stat(pid)):
                    total[i] += v
            except FileNotFoundError:
                pass
        return tuple(total)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class Subject:
    """A proxy under test (or the direct path): its instances and the port per protocol."""

    def __init__(self, name, ports, instances=()):
        self.name, self.ports, self.instances = name, ports, list(instances)

    def cpu(self):
        return sum(i.sample()[0] for i in self.instances)

    def rss(self):
        return max((i.sample()[1] for i in self.instances), default=0)

    def peak(self):
        return max((i.sample()[2] for i in self.instances), default=0)

    def anon(self):
        return max((i.sample()[3] for i in self.instances), default=0)

    def stop(self):
        for i in self.instances:
            i.stop()


def percentile(sorted_values, q):
    if not sorted_values:
        return 0
    i = min(len(sorted_values) - 1, int(q / 100.0 * len(sorted_values)))
    return sorted_values[i]


def load_wrk(port, conns, tmp, duration, post_bytes=0):
    script = os.path.join(tmp, "pct.lua")
    with open(script, "w") as f:
        if post_bytes:
            f.write(f'wrk.method = "POST"\nwrk.body = string.rep("x", {post_bytes})\n')
        f.write(WRK_LUA)
    out = run(pinned(LOAD_CORE, ["wrk", "-t1", f"-c{conns}", f"-d{duration}s", "-s", script,
                                 f"http://{addr(port)}/"])).stdout
    line = next(l for l in out.splitlines() if l.startswith("BENCH "))
    rps, p50, p99, p999, errors = line.split()[1:]
    return dict(rps=float(rps), p50=int(p50), p99=int(p99), p999=int(p999), errors=int(errors))


def load_h2load(port, conns, streams, tmp, duration, post_bytes=0, requests=None):
    """h2load for `duration` seconds, or for a number of `requests`: at the end of a timed
    run h2load may count the streams still in flight as failed."""
    log = os.path.join(tmp, "h2load.log")
    if os.path.exists(log):
        os.remove(log)  # h2load appends to an existing log
    post = []
    if post_bytes:
        data = os.path.join(tmp, "post.bin")
        with open(data, "wb") as f:
            f.write(b"x" * post_bytes)
        post = ["-d", data]
    until = ["-n", str(requests)] if requests else ["-D", str(duration)]
    out = run(pinned(LOAD_CORE, ["h2load", f"-c{conns}", f"-m{streams}", "-t1"] + until
                     + ["--log-file", log] + post + [f"http://{addr(port)}/"])).stdout
    rps = 0.0
    failed = 0
    for line in out.splitlines():
        if line.startswith("finished in"):
            rps = float(line.split(",")[1].split()[0])
        if line.startswith("requests:"):
            parts = line.replace(",", "").split()
            failed = int(parts[parts.index("failed") - 1])
    if failed:
        # What failed: non-2xx statuses, errored streams, or streams cut off at the end.
        print("    h2load: " + " / ".join(l.strip() for l in out.splitlines()
                                         if l.startswith(("requests:", "status codes:"))),
              file=sys.stderr, flush=True)
    lat = []
    with open(log) as f:
        for line in f:
            cols = line.split()
            if len(cols) >= 3:
                lat.append(int(cols[2]))
    lat.sort()
    return dict(rps=rps, p50=percentile(lat, 50), p99=percentile(lat, 99),
                p999=percentile(lat, 99.9), errors=failed)


def load_oha(port, rate, duration):
    out = run(pinned(LOAD_CORE, ["oha", "--no-tui", "--output-format", "json", "-z", f"{duration}s",
                                 "-q", str(rate), "--latency-correction", "-c", "32",
                                 f"http://{addr(port)}/"])).stdout
    data = json.loads(out)
    pct = data["latencyPercentiles"]
    us = lambda key: int(float(pct[key]) * 1e6)
    ok = sum(v for k, v in data.get("statusCodeDistribution", {}).items() if k.startswith("2"))
    # Requests still in flight when the duration ends are cut off by oha itself, not failed.
    errors = {k: v for k, v in data.get("errorDistribution", {}).items() if "deadline" not in k}
    total = sum(data.get("statusCodeDistribution", {}).values()) + sum(errors.values())
    return dict(rps=float(data["summary"]["requestsPerSec"]), p50=us("p50"), p99=us("p99"),
                p999=us("p99.9"), errors=total - ok)


TAP_MODES = [("no tap", None), ("tap matching nothing", "nothing"),
             ("tap matching everything", "everything")]
TAP_LOADS = [
    ("h1 c=1", lambda addr, tmp: load_wrk(addr, 1, tmp, DURATION)),
    ("h1 c=64", lambda addr, tmp: load_wrk(addr, 64, tmp, DURATION)),
]
LOADS = [
    ("h1 c=1", "h1", lambda port, tmp: load_wrk(port, 1, tmp, DURATION)),
    ("h1 c=64", "h1", lambda port, tmp: load_wrk(port, 64, tmp, DURATION)),
    ("h2 1x1", "h2", lambda port, tmp: load_h2load(port, 1, 1, tmp, DURATION)),
    ("h2 4x32", "h2", lambda port, tmp: load_h2load(port, 4, 32, tmp, DURATION)),
    ("fixed 2k/s", "h1", lambda port, tmp: load_oha(port, 2000, DURATION)),
]
# The training run of a PGO build (`--train`, from benches/pgo.sh): each conduit subject
# carries each of these once, request bodies too, so that the profile covers what a proxy
# does rather than only the measured loads. HTTP/2 loads are counted in requests (about two
# seconds' worth through the meshed pair), so that none is cut off in flight. Each proxy's
# first load is its widest burst, met cold (before discovery has answered), since the
# training fails on any failed request: a cold meshed pair once refused most of a 4x32 burst.
TRAIN_DURATION = int(os.environ.get("BENCH_TRAIN_DURATION", "2"))
TRAIN_LOADS = [
    ("h1 c=64", "h1", lambda port, tmp: load_wrk(port, 64, tmp, TRAIN_DURATION)),
    ("h1 c=1", "h1", lambda port, tmp: load_wrk(port, 1, tmp, TRAIN_DURATION)),
    ("h1 POST 4 KiB c=8", "h1",
     lambda port, tmp: load_wrk(port, 8, tmp, TRAIN_DURATION, post_bytes=4096)),
    ("h2 4x32", "h2",
     lambda port, tmp: load_h2load(port, 4, 32, tmp, None, requests=35000 * TRAIN_DURATION)),
    ("h2 1x1", "h2",
     lambda port, tmp: load_h2load(port, 1, 1, tmp, None, requests=3500 * TRAIN_DURATION)),
    ("h2 POST 4 KiB 2x8", "h2", lambda port, tmp: load_h2load(
        port, 2, 8, tmp, None, post_bytes=4096, requests=17000 * TRAIN_DURATION)),
]


def handshakes(bin_dir, identity_dir, duration, conc):
    """New mutual-TLS handshakes against the meshed pair's server-side proxy, from the load
    core: conduit-bench-tls's result line."""
    out = run(pinned(LOAD_CORE, [os.path.join(bin_dir, "conduit-bench-tls"),
                                 f"127.0.0.1:{MESH_IN_H1}", identity_dir, SERVER_ID,
                                 str(duration), str(conc)])).stdout
    return next(l for l in out.splitlines() if l.startswith("BENCH "))


def train(subjects, tmp, bin_dir, identity_dir):
    """Carries the training loads through every conduit subject; a request that fails
    fails the training, since a profile of error paths would mislead the optimizer."""
    for sub in subjects:
        for load_name, proto, fn in TRAIN_LOADS:
            res = fn(sub.ports[proto], tmp)
            print(f"  train {sub.name:26} {load_name:18} {res['rps']:>9.0f} req/s  "
                  f"errors {res['errors']}", file=sys.stderr, flush=True)
            if res["errors"]:
                raise RuntimeError(f"{sub.name}: {res['errors']} failed requests in {load_name}")
    print("  train " + handshakes(bin_dir, identity_dir, TRAIN_DURATION, 4), file=sys.stderr)


def haproxy_conf(tmp, name, listen, upstream, tls=None, certs=None):
    """A haproxy configuration file: one thread, HTTP/1 on listen[0] to upstream[0], HTTP/2
    on listen[1] to upstream[1] (HTTP/2 to it as well). With `tls="accept"` both frontends
    take only mutual TLS with ALPN h2, as a meshed server-side proxy does; with
    `tls="connect"` both backends speak HTTP/2 over mutual TLS to them, as a meshed
    client-side proxy does (its HTTP/1 requests carried as HTTP/2)."""
    bind, server = {
        None: ("", ""),
        "accept": (f" ssl crt {certs}/server.pem ca-file {certs}/ca.crt verify required alpn h2", ""),
        "connect": ("", f" ssl crt {certs}/client.pem ca-file {certs}/ca.crt verify required"
                        f" verifyhost server sni str(server) alpn h2"),
    }[tls]
    path = os.path.join(tmp, name)
    with open(path, "w") as f:
        f.write(f"""
global
  nbthread 1
  maxconn 4096
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  http-reuse always
frontend h1
  bind 127.0.0.1:{listen[0]}{bind}
  default_backend up_h1
frontend h2
  bind 127.0.0.1:{listen[1]}{bind or " proto h2"}
  default_backend up_h2
backend up_h1
  server s1 127.0.0.1:{upstream[0]}{server}
backend up_h2
  server s1 127.0.0.1:{upstream[1]}{server or " proto h2"}
""")
    return path


def haproxy_certs(tmp):
    """A CA and two leaves it signed (ECDSA P-256, as the mesh's), `server` and `client`,
    for the haproxy chain's mutual-TLS hop; each leaf's PEM holds its key too."""
    d = os.path.join(tmp, "haproxy-certs")
    os.makedirs(d)
    ossl = lambda *args: run(["openssl", *args], cwd=d)
    ossl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "ca.key")
    ossl("req", "-x509", "-new", "-key", "ca.key", "-subj", "/CN=bench-ca", "-days", "2",
         "-out", "ca.crt")
    for leaf in ("server", "client"):
        ossl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", f"{leaf}.key")
        ossl("req", "-new", "-key", f"{leaf}.key", "-subj", f"/CN={leaf}", "-out", f"{leaf}.csr")
        with open(os.path.join(d, f"{leaf}.ext"), "w") as f:
            f.write(f"subjectAltName=DNS:{leaf}\n")
        ossl("x509", "-req", "-in", f"{leaf}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
             "-CAcreateserial", "-days", "2", "-extfile", f"{leaf}.ext", "-out", f"{leaf}.crt")
        with open(os.path.join(d, f"{leaf}.pem"), "w") as f:
            f.write(open(os.path.join(d, f"{leaf}.crt")).read() + open(os.path.join(d, f"{leaf}.key")).read())
    return d


def nginx_conf(tmp, name, body):
    path = os.path.join(tmp, name)
    os.makedirs(os.path.join(path, "logs"), exist_ok=True)
    conf = os.path.join(path, "nginx.conf")
    with open(conf, "w") as f:
        f.write(f"""
worker_processes 1;
daemon off;
master_process on;
pid {path}/nginx.pid;
error_log {path}/logs/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {path}; proxy_temp_path {path}; fastcgi_temp_path {path};
  uwsgi_temp_path {path}; scgi_temp_path {path};
  keepalive_requests 1000000;
  http2_max_requests 1000000;
  {body}
}}
""")
    return ["nginx", "-p", path, "-c", conf]


# The targets, compared round by round: (subject, yardstick, how many of its hops). A pair's
# yardstick of "twice one haproxy hop" scales the single hop's added latency by two.
PAIRED = [("conduit-proxy", "haproxy", 1),
          ("conduit meshed pair (mTLS)", "haproxy", 2),
          ("conduit meshed pair (mTLS)", "haproxy, two hops (mTLS)", 1)]


def paired_lines(results, load_names, names):
    """Table rows comparing each PAIRED subject with its yardstick round by round."""
    def median(values):
        values = sorted(values)
        mid = len(values) // 2
        return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2

    lines = []
    for subject, yardstick, hops in PAIRED:
        if not {subject, yardstick, "direct"} <= names:
            continue
        label = f"{subject} vs {'twice ' if hops == 2 else ''}{yardstick}"
        for load in load_names:
            rounds = list(zip(results[(subject, load)], results[(yardstick, load)],
                              results[("direct", load)]))
            cells = []
            for key in ("p50", "p99"):
                deltas = [(s[key] - d[key]) - hops * (y[key] - d[key])
                          for (s, _), (y, _), (d, _) in rounds]
                met = sum(1 for x in deltas if x <= 0)
                cells.append(f"{median(deltas):+.0f} ({met}/{len(deltas)})")
            if hops == 1:
                ratios = [s["rps"] / y["rps"] for (s, _), (y, _), _ in rounds]
                met = sum(1 for r in ratios if r >= 1)
                cells.append(f"{median(ratios):.3f} ({met}/{len(ratios)})")
            else:
                cells.append("-")  # no throughput target against one hop's
            lines.append(f"| {label} | {load} | " + " | ".join(cells) + " |")
    return lines


def main():
    args = sys.argv[1:]
    training = args[:1] == ["--train"]
    if training:
        args = args[1:]
    if len(args) not in (2, 3) or (training and len(args) != 2):
        sys.exit("usage: proxy_bench.py [--train] BIN_DIR PROXY [PLAIN_PROXY]")
    # BIN_DIR holds the release build of the other binaries (controller, CLI, bench tools);
    # PROXY is the conduit-proxy under test (the PGO build), PLAIN_PROXY the same proxy
    # without PGO, measured beside it.
    bin_dir, conduit = args[0], args[1]
    plain = args[2] if len(args) == 3 else None
    tmp = tempfile.mkdtemp(prefix="conduit-bench-")
    upstream = subprocess.Popen(pinned(LOAD_CORE, nginx_conf(tmp, "upstream", f"""
  server {{ listen 127.0.0.1:{UP_H1}; location / {{ default_type text/plain; return 200 "{BODY}"; }} }}
  server {{ listen 127.0.0.1:{UP_H2} http2; location / {{ default_type text/plain; return 200 "{BODY}"; }} }}
""" + "".join(f"""
  server {{{{ listen 127.0.0.1:{p}; location / {{{{ default_type text/plain; return 200 "{BODY}"; }}}} }}}}
""".replace("{{", "{").replace("}}", "}") for p in UP_H1_MORE) + "".join(f"""
  server {{{{ listen 127.0.0.1:{p} http2; location / {{{{ default_type text/plain; return 200 "{BODY}"; }}}} }}}}
""".replace("{{", "{").replace("}}", "}") for p in UP_H2_MORE))), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(UP_H1)
    wait_port(UP_H2)

    env = dict(os.environ, CONDUIT_PROXY_LOG="warn", CONDUIT_PROXY_CORES="1")
    haproxy_cfg = haproxy_conf(tmp, "haproxy.cfg", (19280, 19281), (UP_H1, UP_H2))

    conduit_env = lambda port, up, admin: dict(
        env, CONDUIT_PROXY_INBOUND_LISTEN_ADDR=f"127.0.0.1:{port}",
        CONDUIT_PROXY_OUTBOUND_LISTEN_ADDR=f"127.0.0.1:{port - 10}",
        CONDUIT_PROXY_INBOUND_FORWARD_ADDR=f"127.0.0.1:{up}",
        CONDUIT_PROXY_ADMIN_LISTEN_ADDR=f"127.0.0.1:{admin}")
    nginx_proxy_body = f"""
  upstream up_h1 {{ server 127.0.0.1:{UP_H1}; keepalive 128; }}
  server {{ listen 127.0.0.1:19380; location / {{ proxy_pass http://up_h1; proxy_http_version 1.1; proxy_set_header Connection ""; }} }}
  server {{ listen 127.0.0.1:19381 http2; location / {{ proxy_pass http://up_h1; proxy_http_version 1.1; proxy_set_header Connection ""; }} }}
"""
    subjects = []
    controller = None
    results = {}  # (subject, load) -> list of (result, cpu%)
    anon_peak = {}  # subject -> largest anonymous RSS seen at the end of a load
    tap_results, tap_events = {}, {}  # (tap mode, load) -> results; mode -> events read
    try:
        if not training:
            subjects.append(Subject("direct", {"h1": UP_H1, "h2": UP_H2}))
        # One conduit-proxy per upstream protocol: its inbound side forwards to one address.
        subjects.append(Subject("conduit-proxy", {"h1": 19143, "h2": 19144}, [
            Instance([conduit], [19143], conduit_env(19143, UP_H1, 19191)),
            Instance([conduit], [19144], conduit_env(19144, UP_H2, 19192)),
        ]))
        if plain is not None:
            subjects.append(Subject("conduit-proxy, no PGO", {"h1": 19145, "h2": 19146}, [
                Instance([plain], [19145], conduit_env(19145, UP_H1, 19189)),
                Instance([plain], [19146], conduit_env(19146, UP_H2, 19190)),
            ]))
        # The same proxy with the controller: each request balanced over three endpoints.
        registry = os.path.join(tmp, "registry.yaml")
        with open(registry, "w") as f:
            f.write(f"services:\n  - name: bench\n    namespace: bench\n    clusterIPs: [{SERVICE_IP}]\n    ports:\n")
            for port, ups in ((SERVICE_H1, (UP_H1,) + UP_H1_MORE), (SERVICE_H2, (UP_H2,) + UP_H2_MORE)):
                f.write(f"      - port: {port}\n        endpoints:\n")
                f.writelines(f"          - address: 127.0.0.1:{u}\n" for u in ups)
            f.write(f"  - name: mesh\n    namespace: bench\n    clusterIPs: [{MESH_IP}]\n    ports:\n")
            for port, inbound in ((MESH_H1, MESH_IN_H1), (MESH_H2, MESH_IN_H2)):
                f.write(f"      - port: {port}\n        endpoints:\n"
                        f"          - address: 127.0.0.1:{inbound}\n            identity: {SERVER_ID}\n")
        identity_dir = os.path.join(tmp, "identity")
        run([os.path.join(bin_dir, "conduit"), "issuer", identity_dir])
        tokens = {}
        for sa in ("client", "server"):
            tokens[sa] = os.path.join(tmp, f"token-{sa}")
            with open(tokens[sa], "w") as f:
                f.write(run([os.path.join(bin_dir, "conduit"), "token", "--key",
                             os.path.join(identity_dir, "token.key"), f"bench/{sa}"]).stdout.strip())
        controller_bin = os.path.join(bin_dir, "conduit-controller")
        controller = subprocess.Popen(pinned(LOAD_CORE, [
            controller_bin, "--discovery", f"file:{registry}", "--destination-addr", "127.0.0.1:18086",
            "--admin-addr", "127.0.0.1:18990", "--log", "warn", "--identity-dir", identity_dir,
            "--identity-tokens", f"local:{os.path.join(identity_dir, 'token.key')}"]),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(18086)
        balanced_env = lambda port, inbound, admin: dict(
            env, CONDUIT_PROXY_OUTBOUND_LISTEN_ADDR=f"{SERVICE_IP}:{port}",
            CONDUIT_PROXY_INBOUND_LISTEN_ADDR=f"127.0.0.1:{inbound}",
            CONDUIT_PROXY_ADMIN_LISTEN_ADDR=f"127.0.0.1:{admin}",
            CONDUIT_PROXY_DESTINATION_SVC_ADDR="127.0.0.1:18086")
        subjects.append(Subject("conduit, 3 endpoints",
                                {"h1": f"{SERVICE_IP}:{SERVICE_H1}", "h2": f"{SERVICE_IP}:{SERVICE_H2}"}, [
            Instance([conduit], [f"{SERVICE_IP}:{SERVICE_H1}"], balanced_env(SERVICE_H1, 19153, 19193)),
            Instance([conduit], [f"{SERVICE_IP}:{SERVICE_H2}"], balanced_env(SERVICE_H2, 19154, 19194)),
        ]))
        anchors = open(os.path.join(identity_dir, "ca.crt")).read()
        # Each meshed proxy serves tap on its own port: its admin port minus 30.
        meshed_env = lambda sa, admin, **vars: dict(
            env, CONDUIT_PROXY_ADMIN_LISTEN_ADDR=f"127.0.0.1:{admin}",
            CONDUIT_PROXY_TAP_LISTEN_ADDR=f"127.0.0.1:{admin - 30}",
            CONDUIT_PROXY_DESTINATION_SVC_ADDR="127.0.0.1:18086",
            CONDUIT_PROXY_IDENTITY_LOCAL_NAME=f"{sa}.bench.serviceaccount.identity.conduit.cluster.local",
            CONDUIT_PROXY_IDENTITY_TRUST_ANCHORS=anchors,
            CONDUIT_PROXY_IDENTITY_TOKEN_FILE=tokens[sa], **vars)
        pair = []
        for out_port, in_port, up, admin in ((MESH_H1, MESH_IN_H1, UP_H1, 19195), (MESH_H2, MESH_IN_H2, UP_H2, 19197)):
            pair.append(Instance([conduit], [f"127.0.0.1:{in_port}"], meshed_env(
                "server", admin, CONDUIT_PROXY_INBOUND_LISTEN_ADDR=f"127.0.0.1:{in_port}",
                CONDUIT_PROXY_OUTBOUND_LISTEN_ADDR=f"127.0.0.1:{in_port + 20}",
                CONDUIT_PROXY_INBOUND_FORWARD_ADDR=f"127.0.0.1:{up}")))
            pair.append(Instance([conduit], [f"{MESH_IP}:{out_port}"], meshed_env(
                "client", admin + 1, CONDUIT_PROXY_OUTBOUND_LISTEN_ADDR=f"{MESH_IP}:{out_port}",
                CONDUIT_PROXY_INBOUND_LISTEN_ADDR=f"127.0.0.1:{out_port + 10}")))
        for admin in (19195, 19196, 19197, 19198):
            wait_ready(f"127.0.0.1:{admin}")
        subjects.append(Subject("conduit meshed pair (mTLS)",
                                {"h1": f"{MESH_IP}:{MESH_H1}", "h2": f"{MESH_IP}:{MESH_H2}"}, pair))
        if training:
            train(subjects, tmp, bin_dir, identity_dir)
            return
        haproxy = Instance(["haproxy", "-f", haproxy_cfg], [19280, 19281])
        subjects.append(Subject("haproxy", {"h1": 19280, "h2": 19281}, [haproxy]))
        # The meshed pair's yardstick in its own topology: two haproxy hops on the proxy core,
        # mutual TLS 1.3 and HTTP/2 between them, as between the meshed proxies.
        certs = haproxy_certs(tmp)
        subjects.append(Subject("haproxy, two hops (mTLS)", {"h1": 19290, "h2": 19291}, [
            Instance(["haproxy", "-f", haproxy_conf(tmp, "haproxy-chain.cfg", (19290, 19291),
                                                    (19282, 19283), "connect", certs)],
                     [19290, 19291]),
            Instance(["haproxy", "-f", haproxy_conf(tmp, "haproxy-tls.cfg", (19282, 19283),
                                                    (UP_H1, UP_H2), "accept", certs)],
                     [19282, 19283])]))
        subjects.append(Subject("nginx", {"h1": 19380, "h2": 19381},
                                [Instance(nginx_conf(tmp, "proxy", nginx_proxy_body), [19380, 19381])]))
        time.sleep(0.5)
        idle = {sub.name: sub.rss() for sub in subjects}
        # Round-robin: every proxy runs each load once per round, so a slow spell on a shared
        # machine touches all of them alike; the table reports the median round.
        loads = [l for l in LOADS if not ONLY_LOADS or l[0] in ONLY_LOADS]
        measured = [s for s in subjects
                    if not ONLY_PROXIES or s.name == "direct" or s.name in ONLY_PROXIES]
        for rnd in range(ROUNDS):
            for load_name, proto, fn in loads:
                for sub in measured:
                    cpu0, t0 = sub.cpu(), time.time()
                    res = fn(sub.ports[proto], tmp)
                    cpu = 100.0 * (sub.cpu() - cpu0) / (time.time() - t0)
                    # Right after a load, before the allocator hands anything back.
                    anon_peak[sub.name] = max(anon_peak.get(sub.name, 0), sub.anon())
                    results.setdefault((sub.name, load_name), []).append((res, cpu))
                    print(f"  round {rnd + 1} {sub.name:20} {load_name:11} {res['rps']:>9.0f} req/s  "
                          f"p50 {res['p50']} us  p99 {res['p99']} us  errors {res['errors']}",
                          file=sys.stderr, flush=True)
                    time.sleep(0.5)
        peak = {sub.name: sub.peak() for sub in subjects}
        # New mutual-TLS handshakes per second against the server-side proxy (a client
        # certificate each time, ALPN h2), from the load core.
        partial = bool(ONLY_LOADS or ONLY_PROXIES)
        handshake_lines = [] if partial else [
            handshakes(bin_dir, identity_dir, DURATION, conc) for conc in (1, 4)]
        # What a tap costs: the meshed pair's HTTP/1 loads with no tap, a tap on the
        # server-side proxy matching nothing, and one matching everything (at the proxy's
        # default tap rate limit, as `conduit tap` asks). Interleaved rounds, medians.
        for rnd in range(0 if partial else ROUNDS):
            for mode, arg in TAP_MODES:
                tapper = None
                if arg is not None:
                    tapper = subprocess.Popen(pinned(LOAD_CORE, [
                        os.path.join(bin_dir, "conduit-bench-tap"), f"127.0.0.1:{MESH_TAP_H1}",
                        identity_dir, SERVER_ID, arg]), stdout=subprocess.PIPE, text=True)
                    if tapper.stdout.readline().strip() != "READY":
                        raise RuntimeError("conduit-bench-tap did not open its tap")
                for load_name, fn in TAP_LOADS:
                    res = fn(f"{MESH_IP}:{MESH_H1}", tmp)
                    tap_results.setdefault((mode, load_name), []).append(res)
                    print(f"  tap round {rnd + 1} {mode:24} {load_name:8} {res['rps']:>9.0f} req/s  "
                          f"p99 {res['p99']} us", file=sys.stderr, flush=True)
                    time.sleep(0.5)
                if tapper is not None:
                    tapper.send_signal(signal.SIGTERM)
                    out = tapper.communicate(timeout=10)[0]
                    events = next(l for l in out.splitlines() if l.startswith("BENCH events"))
                    tap_events.setdefault(mode, []).append(int(events.split()[-1]))
        # The tap layer alone, with no sockets: the end-to-end rows above move by more than
        # its cost from one round to the next.
        tap_layer = [] if partial else [l for l in run(pinned(PROXY_CORE, [
            os.path.join(bin_dir, "conduit-bench-tap"), "layer", "1000000"])).stdout.splitlines()
            if l.startswith("BENCH ")]
    finally:
        for sub in subjects:
            sub.stop()
        if controller is not None:
            controller.send_signal(signal.SIGTERM)
            controller.wait(timeout=10)
        upstream.send_signal(signal.SIGTERM)
        upstream.wait(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)

    def median(values):
        values = sorted(values)
        return values[len(values) // 2]

    table = {}
    for key, runs in results.items():
        table[key] = ({k: median([r[k] for r, _ in runs]) for k in ("rps", "p50", "p99", "p999")},
                      sum(r["errors"] for r, _ in runs), median([c for _, c in runs]))
    print()
    print(f"Loopback, 1 KiB responses; {ROUNDS} rounds of {DURATION}s per load and proxy, medians "
          f"shown; proxy on core {PROXY_CORE}, upstream and load generator on core {LOAD_CORE}. "
          "Latency in microseconds.")
    print()
    print("| proxy | load | req/s | p50 | p99 | p99.9 | errors | proxy CPU | RSS idle / peak "
          "| anon RSS | added p50 | added p99 | throughput vs direct |")
    print("|" + "---|" * 13)
    for sub in measured:
        for load_name, _, _ in loads:
            res, errors, cpu = table[(sub.name, load_name)]
            d = table[("direct", load_name)][0]
            if sub.name == "direct":
                extra = "- | - | - | - | - | -"
            else:
                extra = (f"{cpu:.0f}% | {idle[sub.name] / 2**20:.1f} / {peak[sub.name] / 2**20:.1f} MiB"
                         f" | {anon_peak.get(sub.name, 0) / 2**20:.1f} MiB"
                         f" | {res['p50'] - d['p50']:+d} | {res['p99'] - d['p99']:+d}"
                         f" | {res['rps'] / d['rps']:.2f}")
            print(f"| {sub.name} | {load_name} | {res['rps']:.0f} | {res['p50']} | {res['p99']} "
                  f"| {res['p999']} | {errors} | {extra} |")
    paired = paired_lines(results, [l for l, _, _ in loads], {s.name for s in measured})
    if paired:
        print()
        print("Paired by round (each round runs every proxy on a load back to back, so a slow")
        print("spell shifts both sides of a pair alike). Per round: Δ = the subject's added latency")
        print("minus the yardstick's (µs; <= 0 meets a latency target), and the subject's req/s over")
        print("the yardstick's (>= 1 meets a throughput target); each cell is the median over the")
        print(f"{ROUNDS} rounds, then in how many rounds it was met.")
        print()
        print("| subject vs yardstick | load | Δ added p50 | Δ added p99 | req/s ratio |")
        print("|---|---|---|---|---|")
        for line in paired:
            print(line)
    if partial:
        return
    print()
    print("Tap on the meshed pair's server-side proxy (HTTP/1 loads; medians of "
          f"{ROUNDS} rounds):")
    print()
    print("| tap | load | req/s | p50 | p99 | throughput vs no tap | p99 vs no tap | events read |")
    print("|" + "---|" * 8)
    for mode, _ in TAP_MODES:
        for load_name, _ in TAP_LOADS:
            runs = tap_results[(mode, load_name)]
            res = {k: median([r[k] for r in runs]) for k in ("rps", "p50", "p99")}
            base = {k: median([r[k] for r in tap_results[(TAP_MODES[0][0], load_name)]])
                    for k in ("rps", "p99")}
            events = median(tap_events[mode]) if mode in tap_events else "-"
            print(f"| {mode} | {load_name} | {res['rps']:.0f} | {res['p50']} | {res['p99']} "
                  f"| {res['rps'] / base['rps'] - 1:+.1%} | {res['p99'] / base['p99'] - 1:+.1%} "
                  f"| {events} |")
    print()
    print("The tap layer alone (a service answering at once; nanoseconds per request):")
    for line in tap_layer:
        print("  " + line[len("BENCH "):])
    print()
    print("The meshed pair is two conduit-proxy processes per protocol on the proxy core, and")
    print("\"haproxy, two hops (mTLS)\" two haproxy processes: CPU is their sum, RSS the largest one's.")
    print("mTLS handshakes against the server-side proxy:")
    for line in handshake_lines:
        print("  " + line[len("BENCH "):])


if __name__ == "__main__":
    main()
