"""Starts `tern serve` on a free loopback port for the tests and talks plain HTTP to it."""
import http.client
import json
import re
import signal
import subprocess
import threading
import time

from conftest import binary


class TernServer:
    def __init__(self, model, *extra, threads=2):
        args = [str(binary("tern")), "serve", "-m", str(model), "-t", str(threads), "--port", "0", *map(str, extra)]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.log = []
        deadline = time.time() + 60
        self.port = None
        while time.time() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                break
            self.log.append(line)
            m = re.search(r"on http://[^:]+:(\d+) \(model id '([^']+)'", line)
            if m:
                self.port = int(m.group(1))
                self.model_id = m.group(2)
                break
        if self.port is None:
            self.proc.kill()
            raise RuntimeError("tern serve did not start:\n" + "".join(self.log) + self.proc.stderr.read())
        # Keep draining stderr so the server never blocks on a full pipe.
        self._drain = threading.Thread(target=self._read_log, daemon=True)
        self._drain.start()

    def _read_log(self):
        for line in self.proc.stderr:
            self.log.append(line)

    @property
    def base_url(self):
        return f"http://127.0.0.1:{self.port}/v1"

    def request(self, method, path, body=None, headers=None, timeout=120):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
        h = {"Content-Type": "application/json"}
        h.update(headers or {})
        conn.request(method, path, body=body, headers=h)
        resp = conn.getresponse()
        data = resp.read()
        conn.close()
        return resp.status, data

    def post(self, path, body, **kw):
        status, data = self.request("POST", path, body, **kw)
        return status, json.loads(data) if data else None

    def metrics(self):
        status, data = self.request("GET", "/metrics")
        assert status == 200
        out = {}
        for line in data.decode().splitlines():
            if line.startswith("#") or not line.strip():
                continue
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
        return out

    def wait_for_metric(self, name, value, timeout=5.0):
        deadline = time.time() + timeout
        while True:
            m = self.metrics()
            if m.get(name) == value or time.time() > deadline:
                return m
            time.sleep(0.05)

    def terminate(self, timeout=60):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode
