"""Requests/s and latency of `seqkit serve` on loopback, for predict and generate.

    python scripts/bench_serve.py                       # trains a throwaway 1 x 256 LSTM char-LM
    python scripts/bench_serve.py --run runs/NAME --seconds 10 --clients 1,8,32 --markdown docs/benchmarks.md
    python scripts/bench_serve.py --batching --markdown docs/benchmarks.md   # --enable_batching on vs off

Starts `seqkit serve` as a subprocess on free ports, then for each endpoint
and each number of concurrent clients runs that many threads for a fixed
time, each with its own keep-alive HTTP connection sending one request after
another. Reports requests/s, p50/p99 latency, errors and the server's RSS.
With --batching: one server without batching and one per batching setting
(TF Serving's --batching_parameters_file), --clients concurrent 1-row predict
clients, the servers taking turns for --rounds rounds; reports requests/s,
latency and each setting's throughput over the unbatched server's (the median
of the per-round ratios), and that every server gave the same answers.
Only 127.0.0.1 is ever contacted.
"""

import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchdoc import cpu_model, write_section  # noqa: E402


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def wait_ready(server, port, name, timeout=180):
    """Poll GET /v1/models/NAME until the server answers 200 (exit if it dies or times out)."""
    deadline = time.time() + timeout
    while True:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", f"/v1/models/{name}")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        if server.poll() is not None or time.time() > deadline:
            sys.exit("seqkit serve did not start")
        time.sleep(0.5)


def start_server(base, port, name, *options):
    """`seqkit serve BASE` on 127.0.0.1:PORT (REST only) as a subprocess, once it answers for NAME."""
    server = subprocess.Popen([sys.executable, "-m", "seqkit.cli", "serve", str(base), "--port", str(port),
                               "--grpc-port", "0", *options], env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_ready(server, port, name)
    return server


def serve_run(tmp, run_dir, name, *options):
    """Export RUN_DIR (None: a throwaway char-LM trained under TMP) as NAME into TMP/saved_models and
    start `seqkit serve` on it (``start_server``): ``(port, server)``."""
    from seqkit import export

    base = Path(tmp) / "saved_models"
    export.export(run_dir or make_run(tmp), name=name, out=base)
    port = free_port()
    return port, start_server(base, port, name, *options)


def make_run(tmp):
    from seqkit.config import CharLMConfig
    from seqkit.tasks import char_lm

    config = CharLMConfig(units=256, layers=1, seq_len=100, batch_size=32, steps=20, steps_per_epoch=20,
                          max_chars=200_000, seed=0, out=str(Path(tmp) / "bench"))
    return char_lm.train(config, verbose=0)["run_dir"]


def bodies(prime_length=40, generate_length=100):
    prime = "def main(argv):\n    return " [:prime_length]
    predict = {"instances": [prime]}
    generate = {"signature_name": "generate", "instances": [
        {"prime": prime, "length": generate_length, "temperature": 0.8, "top_k": 0, "top_p": 1.0, "seed": 1}]}
    return {"predict": json.dumps(predict).encode(), f"generate {generate_length}": json.dumps(generate).encode()}


def load(port, path, body, clients, seconds):
    """Latencies (s) of successful requests and the error count over ``seconds``."""
    latencies, errors, lock = [], [0], threading.Lock()
    stop = time.perf_counter() + seconds

    def client():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        mine, bad = [], 0
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            try:
                conn.request("POST", path, body, {"Content-Type": "application/json"})
                response = conn.getresponse()
                response.read()
                ok = response.status == 200
            except (OSError, http.client.HTTPException):
                ok = False
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            if ok:
                mine.append(time.perf_counter() - t0)
            else:
                bad += 1
        with lock:
            latencies.extend(mine)
            errors[0] += bad

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, errors[0]


BATCHING = {  # name -> BatchingParameters text
    "batching, timeout 0": "max_batch_size { value: 32 } batch_timeout_micros { value: 0 } "
                           "num_batch_threads { value: 2 }",
    "batching, timeout 2 ms": "max_batch_size { value: 32 } batch_timeout_micros { value: 2000 } "
                              "num_batch_threads { value: 2 }",
}


def answer(port, body):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    conn.request("POST", "/v1/models/bench:predict", body, {"Content-Type": "application/json"})
    return json.loads(conn.getresponse().read())


def report(args, heading, setup, text):
    """Print ``text`` and, with --markdown, write it as the section ``heading`` with the command and machine."""
    print("\n" + text)
    if args.markdown:
        command = "python scripts/bench_serve.py " + " ".join(sys.argv[1:])
        write_section(args.markdown, heading,
                      f"{heading}\n\n`{command}` ({setup}; 1 x 256 LSTM char-LM, {cpu_model()}, {os.cpu_count()} "
                      f"cores, REST on loopback, server and clients on the same machine):\n\n{text}")


def batching(args):
    """Throughput of 1-row predicts with and without --enable_batching, servers taking turns."""
    from seqkit import export

    clients = max(int(c) for c in args.clients.split(","))
    body = bodies()["predict"]
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "saved_models"
        export.export(args.run or make_run(tmp), name="bench", out=base)
        servers = {}
        try:
            for name, text in {"no batching": None, **BATCHING}.items():
                options = []
                if text:
                    params = Path(tmp) / f"batching{len(servers)}.txt"
                    params.write_text(text, encoding="utf-8")
                    options = ["--enable_batching", "--batching_parameters_file", str(params)]
                port = free_port()
                servers[name] = (port, start_server(base, port, "bench", *options))
                load(port, "/v1/models/bench:predict", body, clients, 1.0)  # warm-up
            answers = {name: answer(port, body) for name, (port, _) in servers.items()}
            same = all(a == answers["no batching"] for a in answers.values())
            results = {name: [] for name in servers}
            for r in range(args.rounds):
                for name, (port, _) in servers.items():
                    latencies, errors = load(port, "/v1/models/bench:predict", body, clients, args.seconds)
                    results[name].append((latencies, errors))
                    print(f"round {r + 1} {name:24s}: {len(latencies) / args.seconds:8.1f} req/s  errors {errors}",
                          flush=True)
        finally:
            for _, server in servers.values():
                server.terminate()
                server.wait(timeout=30)
    base_rates = [len(lat) / args.seconds for lat, _ in results["no batching"]]
    table = ["| server | requests/s (median of rounds) | x no batching | p50 ms | p99 ms | errors |",
             "|---|---|---|---|---|---|"]
    for name, rounds in results.items():
        rates = [len(lat) / args.seconds for lat, _ in rounds]
        ratio = statistics.median(r / b for r, b in zip(rates, base_rates))
        q = statistics.quantiles([x for lat, _ in rounds for x in lat], n=100)
        table.append(f"| {name} | {statistics.median(rates):.1f} | {ratio:.2f} | {1000 * q[49]:.1f} | "
                     f"{1000 * q[98]:.1f} | {sum(e for _, e in rounds)} |")
    settings = "; ".join(f"{name}: `{text}`" for name, text in BATCHING.items())
    text = "\n".join(table) + f"\n\nSame answer from every server: {same}. Batching parameters: {settings}.\n"
    report(args, "## Serving: batching", f"{clients} concurrent clients each sending 1-row predict requests one "
           f"after another, {args.rounds} rounds of {args.seconds:g} s per server, servers taking turns", text)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", help="A char-LM run directory (default: train a throwaway one).")
    parser.add_argument("--seconds", type=float, default=8.0, help="Time per (endpoint, clients) cell.")
    parser.add_argument("--clients", default="1,8,32")
    parser.add_argument("--markdown", help="Write the table into this file as its '## Serving' section.")
    parser.add_argument("--batching", action="store_true", help="Compare --enable_batching settings with none.")
    parser.add_argument("--rounds", type=int, default=3, help="With --batching: turns per server.")
    args = parser.parse_args()
    if args.batching:
        return batching(args)

    with tempfile.TemporaryDirectory() as tmp:
        port, server = serve_run(tmp, args.run, "bench")
        try:
            rss_start = rss_mib(server.pid)
            rows = []
            for name, body in bodies().items():
                load(port, "/v1/models/bench:predict", body, 1, 1.0)  # warm-up: traces, thread pool
                for clients in [int(c) for c in args.clients.split(",")]:
                    latencies, errors = load(port, "/v1/models/bench:predict", body, clients, args.seconds)
                    q = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [float("nan")] * 99
                    rows.append((name, clients, len(latencies) / args.seconds, 1000 * q[49], 1000 * q[98], errors))
                    print(f"{name:14s} clients {clients:3d}: {rows[-1][2]:8.1f} req/s  p50 {rows[-1][3]:7.1f} ms  "
                          f"p99 {rows[-1][4]:7.1f} ms  errors {errors}", flush=True)
            rss_end = rss_mib(server.pid)
        finally:
            server.terminate()
            server.wait(timeout=30)

    table = ["| request | clients | requests/s | p50 ms | p99 ms | errors |", "|---|---|---|---|---|---|"]
    table += [f"| {n} | {c} | {r:.1f} | {p50:.1f} | {p99:.1f} | {e} |" for n, c, r, p50, p99, e in rows]
    text = "\n".join(table) + f"\n\nServer RSS: {rss_start:.0f} MiB after start-up, {rss_end:.0f} MiB at the end.\n"
    report(args, "## Serving", f"{args.seconds:g} s per cell", text)


if __name__ == "__main__":
    main()
