#!/usr/bin/env python3
"""Checks that every Grafana dashboard panel's query returns data.

Starts walleti (embedded: a temporary SQLite file, the embedded bank simulator) and a real
Prometheus (Debian's `prometheus` package) scraping it every second, drives light load through
the HTTP API (P2P transfers with `walleti loadgen`, a bank top-up, a merchant payment with a
webhook endpoint, a reconciliation), then asks
Prometheus for every panel target of every dashboard in observability/grafana/dashboards and
fails unless each returns at least one finite value. Also lints the exposition with
`promtool check metrics` (shipped with the same package), which must report nothing.

Usage: python3 scripts/check-dashboards.py [path/to/walleti]   (default: target/debug/walleti)
"""

import json
import math
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parent.parent
ADMIN = "dashboard-check-admin-token"
LOAD_SECONDS = 20


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http(method, url, body=None, token=None, key=None):
    request = urllib.request.Request(url, method=method, data=json.dumps(body).encode() if body is not None else None)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    if key:
        request.add_header("Idempotency-Key", key)
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def wait_for(url, what, seconds=60):
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except Exception:
            time.sleep(0.3)
    sys.exit(f"check-dashboards: {what} did not come up at {url}")


def wait_for_first_scrape(prom_port, seconds=60):
    """Prometheus applies its targets a few seconds after it is ready; counters that rise before
    its first scrape would show no increase."""
    query = urllib.parse.urlencode({"query": 'up{job="walleti"} == 1'})
    deadline = time.time() + seconds
    while time.time() < deadline:
        answer = json.load(urllib.request.urlopen(f"http://127.0.0.1:{prom_port}/api/v1/query?{query}", timeout=10))
        if answer["data"]["result"]:
            return
        time.sleep(0.5)
    sys.exit("check-dashboards: prometheus never scraped walleti")


def bank_top_up(base):
    http("POST", f"{base}/v1/users", {"email": "dash@example.com", "phone": "+14155550177", "name": "Dash", "password": "dashboard check 1"})
    token = http("POST", f"{base}/v1/sessions", {"login": "dash@example.com", "password": "dashboard check 1"})["token"]
    onramp = http("POST", f"{base}/v1/onramps", {"provider": "bank", "amount": 1234, "currency": "usd"}, token, "dash-top-up")
    payment = onramp["redirect_url"].rsplit("/", 1)[1]
    http("POST", f"{base}/bank-sim/api/payments/{payment}/approve")
    return token


def merchant_payment(base, user_token):
    """A merchant with a webhook endpoint nobody answers takes an authorised, partly captured payment."""
    http("POST", f"{base}/v1/merchants", {"name": "Dash Shop", "email": "shop@example.com", "password": "dashboard shop 1"})
    session = http("POST", f"{base}/v1/merchants/sessions", {"email": "shop@example.com", "password": "dashboard shop 1"})["token"]
    key = http("POST", f"{base}/v1/merchants/api_keys", {}, session)["secret"]
    http("POST", f"{base}/v1/webhook_endpoints", {"url": "http://127.0.0.1:9/hooks", "events": ["*"]}, key)
    intent = http("POST", f"{base}/v1/payment_intents", {"amount": 500, "currency": "usd", "capture_method": "manual"}, key, "dash-intent")
    http("POST", f"{base}/v1/payment_intents/{intent['id']}/confirm", {}, user_token, "dash-confirm")
    http("POST", f"{base}/v1/payment_intents/{intent['id']}/capture", {"amount_to_capture": 300}, key, "dash-capture")


def panel_queries():
    for path in sorted((ROOT / "observability/grafana/dashboards").glob("*.json")):
        dashboard = json.loads(path.read_text())
        for panel in dashboard["panels"]:
            for target in panel.get("targets", []):
                yield dashboard["title"], panel["title"], target["expr"]


def has_finite_value(result):
    for series in result:
        values = [series["value"]] if "value" in series else series.get("values", [])
        for _, value in values:
            if math.isfinite(float(value)):
                return True
    return False


def main():
    walleti = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) 
    if walleti.is_dir():
        walleti = walleti / "debug" / "walleti"
    prometheus = shutil.which("prometheus")
    if not prometheus:
        sys.exit("check-dashboards: Debian's prometheus package is not installed (apt-get install prometheus)")
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="walleti-dashboards-"))
    app_port, prom_port = free_port(), free_port()
    base = f"http://127.0.0.1:{app_port}"
    env = dict(os.environ, DATABASE_URL=f"sqlite://{workdir}/walleti.db?mode=rwc", WALLETI_BIND=f"127.0.0.1:{app_port}",
               WALLETI_ADMIN_TOKEN=ADMIN, RUST_LOG="warn",
               # The merchant webhook endpoint below is on 127.0.0.1 (nothing listens there).
               WALLETI_WEBHOOK_ALLOW_PRIVATE_NETWORKS="true")
    (workdir / "prometheus.yml").write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        f"scrape_configs:\n  - job_name: walleti\n    static_configs:\n      - targets: ['127.0.0.1:{app_port}']\n")
    processes = []
    try:
        processes.append(subprocess.Popen([str(walleti)], env=env, stdout=subprocess.DEVNULL, stderr=open(workdir / "walleti.log", "w")))
        wait_for(f"{base}/health", "walleti")
        processes.append(subprocess.Popen(
            [prometheus, f"--config.file={workdir}/prometheus.yml", f"--storage.tsdb.path={workdir}/data",
             f"--web.listen-address=127.0.0.1:{prom_port}"],
            stdout=subprocess.DEVNULL, stderr=open(workdir / "prometheus.log", "w")))
        wait_for(f"http://127.0.0.1:{prom_port}/-/ready", "prometheus")
        wait_for_first_scrape(prom_port)
        user_token = bank_top_up(base)
        time.sleep(1)  # the bank's webhook credits the top-up
        # Before the load: the merchant's events must not queue behind thousands of transfers.
        merchant_payment(base, user_token)
        subprocess.run([str(walleti), "loadgen", "--url", base, "--admin-token", ADMIN, "--users", "6",
                        "--concurrency", "4", "--duration-seconds", str(LOAD_SECONDS)], check=True, stdout=subprocess.DEVNULL)
        http("POST", f"{base}/v1/admin/reconciliations", {}, ADMIN)
        time.sleep(6)  # a few more scrapes after the last events (the hold keeper refreshes every 5 s)  # a few more scrapes after the last events
        failures, checked = [], 0
        for dashboard, panel, expr in panel_queries():
            checked += 1
            query = urllib.parse.urlencode({"query": expr})
            answer = json.load(urllib.request.urlopen(f"http://127.0.0.1:{prom_port}/api/v1/query?{query}", timeout=10))
            if answer.get("status") != "success" or not has_finite_value(answer["data"]["result"]):
                failures.append(f"{dashboard} / {panel}: {expr} -> {json.dumps(answer)[:300]}")
        promtool = shutil.which("promtool")
        if promtool:
            exposition = urllib.request.urlopen(f"{base}/metrics", timeout=10).read()
            lint = subprocess.run([promtool, "check", "metrics"], input=exposition, capture_output=True)
            if lint.returncode != 0 or lint.stdout.strip() or lint.stderr.strip():
                failures.append(f"promtool check metrics: {(lint.stdout + lint.stderr).decode()[:2000]}")
            else:
                print("check-dashboards: promtool check metrics reports nothing")
        for failure in failures:
            print(f"NO DATA  {failure}")
        print(f"check-dashboards: {checked - len(failures)} of {checked} panel queries returned data")
        return 1 if failures else 0
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=20)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
