"""A small Chrome DevTools Protocol client over chromium's --remote-debugging-pipe (no
WebSocket, no npm): open a page, record console messages, exceptions, log entries and network
requests, evaluate script in it, click.
"""
import json
import os
import select
import subprocess
import time

import browser_util as bu


class Browser:
    def __init__(self, workdir):
        self.r3, self.w3 = os.pipe()  # we write commands; chromium reads fd 3
        self.r4, self.w4 = os.pipe()  # chromium writes fd 4; we read
        r3, w4 = self.r3, self.w4

        def child():
            # Through fresh descriptors: os.pipe() may have returned 3 or 4 themselves, and
            # dup2 onto the same number would leave them close-on-exec.
            a, b = os.dup(r3), os.dup(w4)
            os.dup2(a, 3)
            os.dup2(b, 4)

        self.proc = subprocess.Popen(
            [bu.chromium(), *bu.BASE_FLAGS, "--remote-debugging-pipe",
             f"--user-data-dir={workdir}/cdp-profile", "about:blank"],
            # fds 3 and 4 are set in the child after the fork; closing the others would close them.
            close_fds=False, preexec_fn=child, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        os.close(self.r3)
        os.close(self.w4)
        self.buf = b""
        self.next_id = 0
        self.events = []
        self.session = None

    def _read_message(self, deadline):
        while b"\0" not in self.buf:
            left = deadline - time.time()
            if left <= 0:
                raise TimeoutError("chromium sent nothing in time")
            ready, _, _ = select.select([self.r4], [], [], left)
            if not ready:
                continue
            chunk = os.read(self.r4, 1 << 20)
            if not chunk:
                err = self.proc.stderr.read().decode(errors="replace")[-2000:]
                raise SystemExit(f"FAIL: chromium closed the DevTools pipe (exit {self.proc.poll()}):\n{err}")
            self.buf += chunk
        msg, self.buf = self.buf.split(b"\0", 1)
        return json.loads(msg)

    def call(self, method, params=None, session=True, timeout=30):
        self.next_id += 1
        mid = self.next_id
        msg = {"id": mid, "method": method, "params": params or {}}
        if session and self.session:
            msg["sessionId"] = self.session
        os.write(self.w3, json.dumps(msg).encode() + b"\0")
        deadline = time.time() + timeout
        while True:
            m = self._read_message(deadline)
            if m.get("id") == mid:
                if "error" in m:
                    raise RuntimeError(f"{method}: {m['error']}")
                return m.get("result", {})
            self.events.append(m)

    def wait_event(self, method, timeout=30):
        deadline = time.time() + timeout
        for m in self.events:
            if m.get("method") == method:
                return m
        while True:
            m = self._read_message(deadline)
            self.events.append(m)
            if m.get("method") == method:
                return m

    def open(self, url):
        target = self.call("Target.createTarget", {"url": "about:blank"}, session=False)["targetId"]
        self.session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True},
                                 session=False)["sessionId"]
        for domain in ("Runtime", "Log", "Network", "Page"):
            self.call(domain + ".enable")
        self.events.clear()
        self.call("Page.navigate", {"url": url})
        self.wait_event("Page.loadEventFired")

    def eval(self, expression):
        r = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                           "awaitPromise": True})
        if "exceptionDetails" in r:
            raise RuntimeError(f"{expression}: {r['exceptionDetails']}")
        return r["result"].get("value")

    def problems(self, page_url):
        """Console errors and warnings, uncaught exceptions, log errors, requests beyond the page."""
        out = []
        for m in self.events:
            method, p = m.get("method"), m.get("params", {})
            if method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "warning", "assert"):
                out.append(f"console.{p['type']}: {p.get('args')}")
            elif method == "Runtime.exceptionThrown":
                out.append(f"exception: {p.get('exceptionDetails', {}).get('text')}")
            elif method == "Log.entryAdded" and p.get("entry", {}).get("level") in ("error", "warning"):
                out.append(f"log: {p['entry'].get('text')}")
            elif method == "Network.requestWillBeSent":
                url = p.get("request", {}).get("url", "")
                if url != page_url and not url.startswith("data:"):
                    out.append(f"network request: {url}")
        return out

    def close(self):
        try:
            self.call("Browser.close", session=False, timeout=10)
        except Exception:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
