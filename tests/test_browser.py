"""The report page in a real browser: headless Chromium (Debian's ``chromium`` package) loads index.html of a
hand-made store's report (`tests.test_report_html_fair.build_fair_store`), sorts and filters the sweep table,
opens a row's provenance, filters a sample grid by class, and logs no console error or uncaught exception.

The browser is driven over the DevTools protocol through ``--remote-debugging-pipe`` (NUL-separated JSON on file
descriptors 3 and 4): no WebDriver, no websocket client, no Python package beyond the standard library. Clicks
and typing are real input events (``Input.dispatchMouseEvent``, ``Input.insertText``), not calls of handlers.
Without Chromium the tests are skipped, saying so (``make browser`` installs it as root through apt-get).
``STEPBENCH_SCREENSHOTS=DIR`` also saves the page at 1024 px and at 1600 px wide into DIR.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from tests.test_report_html_fair import SUITE, build_fair_store

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "chrome")
TIMEOUT = 30.0


def chromium_path() -> str | None:
    env = os.environ.get("STEPBENCH_CHROMIUM")
    if env:
        return env if Path(env).is_file() else None
    return next((p for p in map(shutil.which, CANDIDATES) if p), None)


def _high(fd: int) -> int:
    """``fd`` moved to a descriptor number of at least 10 (the old one closed), so mapping it onto 3 or 4 in the
    child cannot clobber the other end; `bash` does the mapping (dash takes one-digit descriptors only)."""
    new = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return new


class Browser:
    """One headless Chromium with one page, spoken to over the DevTools pipe."""

    def __init__(self, exe: str, width: int, height: int):
        self._profile = tempfile.mkdtemp(prefix="stepbench-chromium-")
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()
        # the child's ends above 9 first, so `3<&r 4>&w` cannot overwrite one with the other
        to_chrome_r, from_chrome_w = (_high(fd) for fd in (to_chrome_r, from_chrome_w))
        args = [exe, "--headless=new", "--remote-debugging-pipe", "--no-sandbox", "--disable-gpu",
                "--no-first-run", "--no-default-browser-check", "--disable-extensions", "--mute-audio",
                "--allow-file-access-from-files", f"--user-data-dir={self._profile}",
                f"--window-size={width},{height}", "about:blank"]
        self.proc = subprocess.Popen(["bash", "-c", f'exec "$@" 3<&{to_chrome_r} 4>&{from_chrome_w}', "bash", *args],
                                     pass_fds=(to_chrome_r, from_chrome_w), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._next, self._replies, self.events = 0, {}, []
        self._cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()
        target = next(t for t in self.call("Target.getTargets")["targetInfos"] if t["type"] == "page")
        self.session = self.call("Target.attachToTarget", targetId=target["targetId"], flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.send(f"{domain}.enable")
        self.resize(width, height)

    def _read(self):
        buf = b""
        while True:
            chunk = os.read(self._from_chrome, 1 << 16)
            if not chunk:
                break
            buf += chunk
            *msgs, buf = buf.split(b"\0")
            with self._cond:
                for raw in msgs:
                    m = json.loads(raw)
                    if "id" in m:
                        self._replies[m["id"]] = m
                    else:
                        self.events.append(m)
                self._cond.notify_all()

    def call(self, method: str, session: str | None = None, **params):
        with self._cond:
            self._next += 1
            n = self._next
        msg = {"id": n, "method": method, "params": params, **({"sessionId": session} if session else {})}
        os.write(self._to_chrome, json.dumps(msg).encode() + b"\0")
        with self._cond:
            if not self._cond.wait_for(lambda: n in self._replies, timeout=TIMEOUT):
                raise TimeoutError(f"no reply to {method} within {TIMEOUT} s")
            reply = self._replies.pop(n)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def send(self, method: str, **params):
        """A command to the page's session."""
        return self.call(method, self.session, **params)

    def wait_event(self, method: str, since: int = 0) -> dict:
        with self._cond:
            ok = self._cond.wait_for(lambda: any(e["method"] == method for e in self.events[since:]), TIMEOUT)
        assert ok, f"no {method} within {TIMEOUT} s"
        return next(e for e in self.events[since:] if e["method"] == method)

    def resize(self, width: int, height: int):
        self.send("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1,
                  mobile=False)

    def open(self, url: str):
        n = len(self.events)
        self.send("Page.navigate", url=url)
        self.wait_event("Page.loadEventFired", n)

    def js(self, expr: str):
        r = self.send("Runtime.evaluate", expression=expr, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            raise AssertionError(f"page script failed: {r['exceptionDetails']}")
        return r["result"].get("value")

    def click(self, selector: str):
        """A real left click in the middle of the first element matching ``selector`` (scrolled into view)."""
        box = self.js(f"(() => {{const e = document.querySelector({json.dumps(selector)}); "
                      "e.scrollIntoView({block: 'center', inline: 'center'}); const r = e.getBoundingClientRect(); "
                      "return [r.x + r.width / 2, r.y + r.height / 2];})()")
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", type=kind, x=box[0], y=box[1], button="left",
                      clickCount=0 if kind == "mouseMoved" else 1)

    def type(self, selector: str, text: str):
        self.click(selector)
        self.send("Input.insertText", text=text)

    def errors(self) -> list[str]:
        """Console errors, uncaught exceptions and error log entries seen so far."""
        out = []
        for e in list(self.events):
            p = e.get("params", {})
            if e["method"] == "Runtime.exceptionThrown":
                out.append(json.dumps(p.get("exceptionDetails", {}))[:500])
            elif e["method"] == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                out.append(" ".join(str(a.get("value", a.get("description"))) for a in p.get("args", [])))
            elif e["method"] == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                out.append(p["entry"].get("text", ""))
        return out

    def screenshot(self, path: Path, full: bool = True):
        import base64
        clip = None
        if full:
            size = self.send("Page.getLayoutMetrics")["cssContentSize"]
            clip = {"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], 16000), "scale": 1}
        r = self.send("Page.captureScreenshot", format="png", captureBeyondViewport=full, **({"clip": clip}
                                                                                                if clip else {}))
        path.write_bytes(base64.b64decode(r["data"]))

    def close(self):
        try:
            self.call("Browser.close")
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._to_chrome)
        shutil.rmtree(self._profile, ignore_errors=True)


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    exe = chromium_path()
    if exe is None:
        pytest.skip("Chromium not found (chromium, chromium-browser or google-chrome on PATH, or "
                    "$STEPBENCH_CHROMIUM): `make browser` installs Debian's chromium package (needs root and apt-get)")
    import bench
    from bench.report import write_report
    tmp = tmp_path_factory.mktemp("browser")
    db = tmp / "b.duckdb"
    build_fair_store(db, tmp / "hf.yaml")
    write_report(bench.load(db), tmp / "rep", db=db)
    index = tmp / "rep" / SUITE / "index.html"
    b = Browser(exe, 1024, 800)
    try:
        b.open(index.as_uri())
        yield b
    finally:
        b.close()


# the sweep table's rows as the page shows them: per row its visibility and the data-v of each cell
ROWS = ("Array.from(document.querySelectorAll('#sweep-table tbody tr')).map(r => ({shown: r.offsetParent !== null, "
        "text: r.textContent, v: Array.from(r.cells).map(c => c.getAttribute('data-v'))}))")
HEADS = "Array.from(document.querySelectorAll('#sweep-table thead th')).map(h => h.textContent)"


def test_no_sideways_scrolling_at_1024_px_and_boards_fit(page):
    assert page.js("window.innerWidth") == 1024
    assert page.js("document.documentElement.scrollWidth") <= 1024
    fits = page.js("Array.from(document.querySelectorAll('table.lb')).map(t => "
                   "[t.parentElement.scrollWidth, t.parentElement.clientWidth])")
    assert fits and all(sw <= cw + 1 for sw, cw in fits), fits          # no board is cut off at 1024 px


def test_sorting_the_sweep_by_a_column(page):
    heads = page.js(HEADS)
    i = next(k for k, h in enumerate(heads) if h.startswith("FID"))
    before = [r["v"][i] for r in page.js(ROWS)]
    page.click(f"#sweep-table thead th:nth-child({i + 1})")
    asc = [r["v"][i] for r in page.js(ROWS)]
    assert page.js(f"document.querySelector('#sweep-table thead th:nth-child({i + 1})').getAttribute('aria-sort')") \
        == "ascending"
    nums = [float(v) for v in asc]
    assert nums == sorted(nums) and asc != before and sorted(asc) == sorted(before)
    page.click(f"#sweep-table thead th:nth-child({i + 1})")
    assert [float(r["v"][i]) for r in page.js(ROWS)] == sorted(nums, reverse=True)
    j = heads.index("NFE")                                              # real-vs-real rows have none
    for direction in ("ascending", "descending"):
        page.click(f"#sweep-table thead th:nth-child({j + 1})")
        got = [r["v"][j] for r in page.js(ROWS)]
        vals = [float(v) for v in got if v]
        assert got[-2:] == ["", ""] and all(got[:-2])                  # missing values last either way
        assert vals == sorted(vals, reverse=direction == "descending"), direction


def test_filtering_the_sweep_hides_the_other_rows(page):
    rows = page.js(ROWS)
    assert all(r["shown"] for r in rows)
    page.type("#filter", "one mini-ood")
    rows = page.js(ROWS)
    shown = [r for r in rows if r["shown"]]
    want = [r for r in rows if "one" in r["text"].lower() and "mini-ood" in r["text"].lower()]
    assert len(shown) == len(want) == 4 and len(rows) - len(shown) == len(rows) - 4
    assert page.js("document.getElementById('filter-count').textContent") == f"4 of {len(rows)} rows shown"
    page.js("(() => {const f = document.getElementById('filter'); f.value = ''; "
            "f.dispatchEvent(new Event('input'));})()")
    assert all(r["shown"] for r in page.js(ROWS))


def test_expanding_a_row_shows_its_provenance(page):
    sel = "#sweep-table tbody tr:first-child details"
    visible = f"document.querySelector('{sel} pre').checkVisibility()"
    height = f"document.querySelector('{sel}').getBoundingClientRect().height"
    assert page.js(f"document.querySelector('{sel}').open") is False and page.js(visible) is False
    closed = page.js(height)
    page.click(f"{sel} summary")
    assert page.js(f"document.querySelector('{sel}').open") is True and page.js(visible) is True
    assert page.js(height) > closed + 50                                # the provenance takes room on the page
    text = page.js(f"document.querySelector('{sel} pre').innerText")
    assert "provenance.adapter_version = \"toy-1\"" in text and "config.dataset_source" in text


def test_the_class_filter_shows_one_class_of_samples(page):
    grid = "document.getElementById('grid-0')"
    count = f"Array.from({grid}.querySelectorAll('td.tile')).filter(c => c.offsetParent !== null).length"
    total = page.js(count)
    page.js("(() => {const s = document.querySelector('select.classfilter'); s.value = 'star'; "
            "s.dispatchEvent(new Event('change'));})()")
    shown = page.js(f"Array.from({grid}.querySelectorAll('td.tile')).filter(c => c.offsetParent !== null)"
                    ".map(c => c.getAttribute('data-class'))")
    assert shown and set(shown) == {"star"} and len(shown) == total // 3


def test_no_console_errors(page):
    assert page.errors() == []


def test_screenshots_when_asked(page):
    out = os.environ.get("STEPBENCH_SCREENSHOTS")
    if not out:
        pytest.skip("set STEPBENCH_SCREENSHOTS=DIR to save the page at 1024 px and 1600 px")
    d = Path(out)
    d.mkdir(parents=True, exist_ok=True)
    page.open(page.js("location.href"))                                # as first loaded: no sorting or filter
    page.screenshot(d / "report-1024.png")
    page.resize(1600, 1000)
    time.sleep(0.3)
    page.screenshot(d / "report-1600.png")
    page.resize(1024, 800)
    assert (d / "report-1024.png").stat().st_size > 0
