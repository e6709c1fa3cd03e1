"""Soak test of `seqkit serve`: concurrent clients mixing valid and malformed requests.

    python scripts/soak_serve.py                            # 16 clients, 60 s
    python scripts/soak_serve.py --clients 32 --seconds 120 --markdown docs/benchmarks.md
    python scripts/soak_serve.py --clients 32 --seconds 600 --churn 6 --markdown docs/benchmarks.md

Starts `seqkit serve` (127.0.0.1 only) on a throwaway char-LM (or --run),
then every client sends, one after another for --seconds, a random mix of:
valid predict and generate requests, and malformed ones (broken JSON, wrong
types, a body over the server's --max-body-bytes, unknown models and
signatures, a length over --max-length). Reports requests served per kind,
wrong answers (a valid request that failed or whose answer differs from the
first one of its kind, or a bad one that was not refused with the right
status: all must be 0), p50/p99 latency of the valid ones, and the server's
RSS over time. Exits 1 on any wrong answer.

With --churn SECONDS, versions come and go while the clients run, as in
continuous deployment: every SECONDS a new version (a copy of the model) is
published the way `seqkit export` writes one (a hidden folder, then a
rename) and the version two behind it is deleted; the server polls every
0.5 s under TF Serving's `latest` policy. The report adds the versions
published and deleted and the version served at the end (it must be the last
one published).
"""

import argparse
import http.client
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_serve import ROOT, rss_mib, serve_run  # noqa: E402
from benchdoc import cpu_model, write_section  # noqa: E402

sys.path.insert(0, str(ROOT))

MAX_BODY = 64 * 1024
MAX_LENGTH = 400


def kinds():
    """name -> (weight, path, body bytes, expected status)."""
    predict = "/v1/models/soak:predict"
    gen = {"prime": "def ", "length": 60, "temperature": 0.8, "top_k": 0, "top_p": 0.95, "seed": 1}
    return {
        "predict": (40, predict, json.dumps({"instances": ["import os\n", "class A"]}), 200),
        "generate 60": (20, predict, json.dumps({"signature_name": "generate", "instances": [gen]}), 200),
        "broken JSON": (8, predict, '{"instances": ["a"', 400),
        "wrong type": (8, predict, json.dumps({"instances": [{"text": 3}]}), 400),
        "body over limit": (4, predict, json.dumps({"instances": ["x" * (2 * MAX_BODY)]}), 413),
        "unknown model": (8, "/v1/models/nope:predict", json.dumps({"instances": ["a"]}), 404),
        "unknown signature": (6, predict, json.dumps({"signature_name": "nope", "instances": ["a"]}), 400),
        "length over limit": (6, predict, json.dumps({"signature_name": "generate", "instances": [
            {**gen, "length": MAX_LENGTH + 1}]}), 400),
    }


def same(a, b, tol=1e-5):
    """JSON answers equal, numbers to ``tol``."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k], tol) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y, tol) for x, y in zip(a, b))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return abs(a - b) <= tol
    return a == b


def churn(models, every, stop, report):
    """Publish a new version every ``every`` s and delete the one two behind it, until ``stop``."""
    pristine = models.parent / "pristine"
    shutil.copytree(models / "1", pristine)
    version = 1
    while time.perf_counter() + every < stop:
        time.sleep(every)
        version += 1
        hidden = models / f".{version}.tmp"
        shutil.copytree(pristine, hidden)
        os.rename(hidden, models / str(version))  # appears whole, as seqkit export writes it
        report["published"] = version - 1
        if version - 2 >= 1:
            shutil.rmtree(models / str(version - 2))
            report["deleted"] += 1
    report["last"] = version


def client(port, stop, seed, results, lock, reference):
    rng = random.Random(seed)
    table = kinds()
    names = list(table)
    weights = [table[n][0] for n in names]
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    mine = {n: {"count": 0, "wrong": 0, "latency": []} for n in names}
    while time.perf_counter() < stop:
        name = rng.choices(names, weights)[0]
        _, path, body, expected = table[name]
        t0, response = time.perf_counter(), None
        try:
            conn.request("POST", path, body.encode(), {"Content-Type": "application/json"})
            response = conn.getresponse()
            payload = response.read()
            status = response.status
            answer = json.loads(payload)
            ok = status == expected and (("error" in answer) if status != 200
                                         else same(reference.setdefault(name, answer), answer))
        except (OSError, http.client.HTTPException, ValueError):
            ok = False
        if not ok or response.getheader("connection", "").lower() == "close":
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        entry = mine[name]
        entry["count"] += 1
        entry["wrong"] += not ok
        if ok and expected == 200:
            entry["latency"].append(time.perf_counter() - t0)
    with lock:
        for name, entry in mine.items():
            total = results.setdefault(name, {"count": 0, "wrong": 0, "latency": []})
            for key in entry:
                total[key] += entry[key]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", help="A char-LM run directory (default: train a throwaway one).")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--churn", type=float, default=0.0,
                        help="Publish a version every CHURN s and delete old ones while the clients run (0: off).")
    parser.add_argument("--markdown", help="Write the report into this file as its soak test section.")
    args = parser.parse_args()

    churned = {"published": 0, "deleted": 0, "last": 1}
    with tempfile.TemporaryDirectory() as tmp:
        options = ["--max-body-bytes", str(MAX_BODY), "--max-length", str(MAX_LENGTH)]
        if args.churn:
            options += ["--file_system_poll_wait_seconds", "0.5"]
        port, server = serve_run(tmp, args.run, "soak", *options)
        try:
            warm, reference = {}, {}
            client(port, time.perf_counter() + 3, 0, warm, threading.Lock(), reference)  # traces, thread pool
            rss = [(0.0, rss_mib(server.pid))]
            results, lock = {}, threading.Lock()
            start = time.perf_counter()
            stop = start + args.seconds
            threads = [threading.Thread(target=client, args=(port, stop, i + 1, results, lock, reference))
                       for i in range(args.clients)]
            if args.churn:
                threads.append(threading.Thread(target=churn, args=(Path(tmp) / "saved_models" / "soak", args.churn,
                                                                     stop, churned)))
            for t in threads:
                t.start()
            while any(t.is_alive() for t in threads):
                time.sleep(min(5.0, max(0.1, stop - time.perf_counter())))
                if time.perf_counter() - start >= rss[-1][0] + (5.0 if args.seconds <= 120 else 30.0):
                    rss.append((time.perf_counter() - start, rss_mib(server.pid)))
            rss.append((time.perf_counter() - start, rss_mib(server.pid)))
            alive = server.poll() is None
            served = None
            if args.churn:
                time.sleep(3)  # a poll or two: the last version published is loaded
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                conn.request("GET", "/v1/models/soak")
                served = [int(v["version"]) for v in json.loads(conn.getresponse().read())["model_version_status"]
                          if v["state"] == "AVAILABLE"]
        finally:
            server.terminate()
            server.wait(timeout=30)

    lines = ["| request | expected | sent | wrong answers | p50 ms | p99 ms |", "|---|---|---|---|---|---|"]
    wrong = 0
    for name, (_, _, _, expected) in kinds().items():
        entry = results.get(name, {"count": 0, "wrong": 0, "latency": []})
        wrong += entry["wrong"]
        lat = entry["latency"]
        q = statistics.quantiles(lat, n=100) if len(lat) > 1 else None
        p50, p99 = (f"{1000 * q[49]:.1f}", f"{1000 * q[98]:.1f}") if q else ("-", "-")
        lines.append(f"| {name} | {expected} | {entry['count']} | {entry['wrong']} | {p50} | {p99} |")
    total = sum(e["count"] for e in results.values())
    text = "\n".join(lines) + (
        f"\n\n{total} requests in {args.seconds:g} s from {args.clients} clients ({total / args.seconds:.0f}/s); "
        f"wrong answers: {wrong}; server alive at the end: {alive}.\n"
        f"Server RSS (MiB) after warm-up {rss[0][1]:.0f}, then "
        + ", ".join(f"{m:.0f} at {t:.0f} s" for t, m in rss[1:]) + ".\n")
    if args.churn:
        text += (f"Versions published during the soak: {churned['published']} (one every {args.churn:g} s), deleted: "
                 f"{churned['deleted']}; served at the end: {served} (last published: {churned['last']}).\n")
    churn_ok = not args.churn or served == [churned["last"]]
    print(text)
    if args.markdown:
        command = "python scripts/soak_serve.py " + " ".join(sys.argv[1:])
        title = "## Serving soak test, versions coming and going" if args.churn else "## Serving soak test"
        write_section(args.markdown, title,
                      f"{title}\n\n`{command}` (1 x 256 LSTM char-LM, {cpu_model()}, {os.cpu_count()} cores, "
                      f"clients and server on one machine, --max-body-bytes {MAX_BODY}, --max-length {MAX_LENGTH}):"
                      f"\n\n{text}")
    sys.exit(1 if wrong or not alive or not churn_ok else 0)


if __name__ == "__main__":
    main()
