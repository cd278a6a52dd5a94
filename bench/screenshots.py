"""PNG screenshots of the Dagster UI: ``python -m bench.screenshots --out DIR``.

``make screenshots`` installs headless Chromium when it is missing and runs this. The
pages, each loaded and then with its first Markdown metadata opened: the global asset
graph (the model's group expanded), the model card's latest materialization, the deploy
gate check, and the drift report's latest materialization.

The state folder is a fresh temporary one unless ``--state`` names one (``.tideline``
after ``make demo``). When the model has no model card materialization yet, the demo
chain runs first (``cli.setup_state``, ``cli.demo --model``); when it has no drift
report, a production batch is written (the validated rows with half the numeric columns
read 30% larger, as from a recalibrated instrument) and the model's monitoring job runs.
Then ``dagster-webserver`` starts on a free loopback port and Chromium, driven over the
DevTools protocol on a pipe (no extra package), waits on each page until its data has
loaded (the expected text shows, images are complete and no request has been in flight
for a second) and captures it; a page that scrolls inside is captured whole by growing
the viewport to fit (up to ``--max-height``).

Dagster shows a "Join the Dagster community" dialog on localhost until it is dismissed:
the browser profile is a fresh one whose local storage already holds the dismissal, so
neither the state folder nor the instance changes for it.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WIDTH, HEIGHT = 1600, 1200
SCALED = 1.3  # how much larger the drifted batch's numeric columns read (the first half)
# Local storage the UI reads on load: the community dialog counts as dismissed.
DISMISS_NUX = "localStorage.setItem('communityNux', JSON.stringify('1'));"


@dataclass(frozen=True)
class Shot:
    """One page to capture."""

    name: str  # file name, without .png
    path: str  # URL path and query on the webserver
    expect: str  # text the page shows once its data has loaded
    what: str  # one line for the summary
    click: str | None = None  # a control to click first; without it the shot is skipped


def shots(model: str) -> list[Shot]:
    """The pages of one model, in the order they are captured."""
    assets = f"/assets/{urllib.parse.quote(model)}"
    group = urllib.parse.quote(f"global@global:{model}")
    return [
        Shot("asset_graph", f"/asset-groups?expanded={group}", "model_card",
             f"global asset graph, {model}'s group expanded"),
        Shot("model_card", f"{assets}/model_card?view=events", "model_card",
             "model_card: latest materialization and its metadata"),
        Shot("model_card_markdown", f"{assets}/model_card?view=events", "model_card",
             "model_card: the card's Markdown metadata opened", click="[Show Markdown]"),
        Shot("deploy_gate", f"{assets}/model_card?view=checks&checkDetail=deploy_gate",
             "deploy_gate", "deploy_gate asset check: latest evaluation"),
        Shot("deploy_gate_markdown",
             f"{assets}/model_card?view=checks&checkDetail=deploy_gate", "deploy_gate",
             "deploy_gate: its first Markdown metadata opened", click="[Show Markdown]"),
        Shot("drift_report", f"{assets}/drift_report?view=events", "drift_report",
             "drift_report: latest materialization and its metadata"),
        Shot("drift_report_markdown", f"{assets}/drift_report?view=events", "drift_report",
             "drift_report: its first Markdown metadata opened", click="[Show Markdown]"),
    ]


# ---------------------------------------------------------------------------------------
# State: a model card and a drift report to show


def prepare_state(state: Path, model: str | None) -> str:
    """Point this process at ``state`` and make sure the model has what the pages show.

    Returns the model's name.
    """
    os.environ["TIDELINE_HOME"] = str(state)
    os.environ["DAGSTER_HOME"] = str(state / "dagster")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    if not (state / "dagster" / "dagster.yaml").exists():
        run_module("cli.setup_state", env)

    import dagster as dg

    from pipelines.catalog import selected_spec

    spec = selected_spec(model)
    with dg.DagsterInstance.get() as instance:
        if latest(instance, spec.name, "model_card") is None:
            print(f"no model card for {spec.name} in {state}: running the demo chain",
                  flush=True)
            run_module("cli.demo", env, "--model", spec.name)
        if latest(instance, spec.name, "drift_report") is None:
            print(f"no drift report for {spec.name}: writing a drifted production batch and "
                  "running its monitoring job", flush=True)
            drift_report(instance, spec, state)
    return spec.name


def run_module(module: str, env: dict[str, str], *args: str) -> None:
    proc = subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, env=env)
    if proc.returncode:
        raise SystemExit(f"screenshots: python -m {module} failed (exit {proc.returncode}); "
                         "its output is above")


def latest(instance, model: str, stage: str):
    import dagster as dg

    return instance.get_latest_materialization_event(dg.AssetKey([model, stage]))


def drift_report(instance, spec, state: Path) -> None:
    """Write a production batch that drifted and materialize the model's drift report."""
    from definitions import build_definitions
    from pipelines.artifacts import read_frame
    from pipelines.paths import model_production_dir, store_root
    from pipelines.store import ArtifactStore

    event = latest(instance, spec.name, "validated_features")
    if event is None:
        raise SystemExit(f"screenshots: {spec.name}/validated_features has no "
                         "materialization in the state folder; run `make demo` first")
    store = ArtifactStore(store_root(state))
    content_hash = event.asset_materialization.metadata["content_hash"].value
    frame = read_frame(store, store.get_manifest(content_hash), "features")
    batch = frame[list(spec.columns)].copy()
    numeric = list(spec.numeric_columns)
    for column in numeric[:max(1, len(numeric) // 2)]:
        batch[column] = batch[column] * SCALED
    folder = model_production_dir(state, spec.name) / "batches"
    folder.mkdir(parents=True, exist_ok=True)
    batch.to_parquet(folder / f"screenshots-{int(time.time())}.parquet", index=False)
    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is currently in beta")
        job = build_definitions().resolve_job_def(f"{spec.name}_monitoring_job")
        result = job.execute_in_process(run_config=quiet, instance=instance,
                                        raise_on_error=False)
    if latest(instance, spec.name, "drift_report") is None:
        from cli.demo import failure_message

        raise SystemExit(f"screenshots: {spec.name}_monitoring_job made no drift report: "
                         f"{failure_message(result)}")


# ---------------------------------------------------------------------------------------
# The webserver


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


ASSETS_QUERY = """{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus
  locationOrLoadError { __typename ... on PythonError { message } } } } }
  assetNodes { assetKey { path } } }"""


def graphql(url: str, query: str) -> dict:
    request = urllib.request.Request(f"{url}/graphql", json.dumps({"query": query}).encode(),
                                     {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)["data"]


def wait_for_webserver(url: str, model: str, proc: subprocess.Popen, log: Path,
                       timeout: float) -> None:
    """Until the code location has loaded and the model's assets are in the workspace."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"screenshots: dagster-webserver exited ({proc.returncode}); "
                             f"see {log}:\n{tail(log)}")
        try:
            data = graphql(url, ASSETS_QUERY)
        except (OSError, urllib.error.URLError, ValueError, KeyError, TypeError):
            time.sleep(0.5)
            continue
        entries = data["workspaceOrError"].get("locationEntries") or []
        for entry in entries:
            error = (entry.get("locationOrLoadError") or {}).get("message")
            if error:
                raise SystemExit(f"screenshots: code location {entry['name']} failed to "
                                 f"load: {error.strip().splitlines()[-1]}")
        keys = {tuple(node["assetKey"]["path"]) for node in data.get("assetNodes") or []}
        if entries and all(e["loadStatus"] == "LOADED" for e in entries) and {
                (model, "model_card"), (model, "drift_report")} <= keys:
            return
        time.sleep(0.5)
    raise SystemExit(f"screenshots: dagster-webserver at {url} did not load {model}'s assets "
                     f"in {timeout:.0f} s; see {log}")


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# ---------------------------------------------------------------------------------------
# Chromium over the DevTools protocol (``--remote-debugging-pipe``: fd 3 in, fd 4 out)


class Browser:
    """One headless Chromium page, driven by DevTools protocol messages on a pipe."""

    def __init__(self, executable: str, profile: Path, log: Path):
        to_browser, browser_in = os.pipe()
        browser_out, from_browser = os.pipe()

        def fds() -> None:  # in the child: its fds 3 and 4 are the protocol's pipe ends
            read_end, write_end = os.dup(to_browser), os.dup(from_browser)
            os.dup2(read_end, 3)
            os.dup2(write_end, 4)

        self.log = log
        self.proc = subprocess.Popen(
            [executable, "--headless", "--disable-gpu", "--no-sandbox", "--hide-scrollbars",
             "--no-first-run", "--disable-extensions", "--remote-debugging-pipe",
             f"--user-data-dir={profile}", f"--window-size={WIDTH},{HEIGHT}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log.open("w"),
            preexec_fn=fds, pass_fds=(3, 4), start_new_session=True)
        os.close(to_browser)
        os.close(from_browser)
        self.writer = os.fdopen(browser_in, "wb", buffering=0)
        self.reader = browser_out
        self.buffer = b""
        self.last_id = 0
        self.session: str | None = None
        self.in_flight: set[str] = set()
        self.last_network = time.monotonic()

    def start(self) -> None:
        """Attach to the page Chromium opened and set it up for the captures."""
        targets = self.call("Target.getTargets", session=False)["targetInfos"]
        page = next(t for t in targets if t["type"] == "page")
        self.session = self.call("Target.attachToTarget", {"targetId": page["targetId"],
                                                           "flatten": True},
                                 session=False)["sessionId"]
        for method in ("Page.enable", "Network.enable", "Runtime.enable"):
            self.call(method)
        self.call("Page.addScriptToEvaluateOnNewDocument", {"source": DISMISS_NUX})
        self.resize(HEIGHT)

    def close(self) -> None:
        try:
            self.call("Browser.close", session=False, timeout=5)
            self.proc.wait(10)
        except (OSError, TimeoutError, RuntimeError, subprocess.TimeoutExpired):
            os.killpg(self.proc.pid, 15)
            self.proc.wait(10)
        finally:
            self.writer.close()
            os.close(self.reader)

    def call(self, method: str, params: dict | None = None, session: bool = True,
             timeout: float = 30) -> dict:
        self.last_id += 1
        message = {"id": self.last_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = self.session
        self.writer.write(json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            for reply in self.messages():
                if reply.get("id") == self.last_id:
                    if "error" in reply:
                        raise RuntimeError(f"Chromium refused {method}: "
                                           f"{reply['error'].get('message')}")
                    return reply.get("result", {})
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"Chromium did not answer {method} in {timeout:.0f} s")
            self.receive(left)

    def receive(self, timeout: float) -> None:
        ready, _, _ = select.select([self.reader], [], [], max(timeout, 0))
        if ready:
            chunk = os.read(self.reader, 1 << 20)
            if not chunk:
                raise RuntimeError(f"Chromium closed the DevTools pipe; see {self.log}:\n"
                                   f"{tail(self.log)}")
            self.buffer += chunk

    def messages(self):
        """Whole messages received so far; network events update the in-flight set."""
        while b"\0" in self.buffer:
            raw, self.buffer = self.buffer.split(b"\0", 1)
            message = json.loads(raw)
            method = message.get("method", "")
            # Data requests only: scripts fetched for workers finish in the worker's target.
            if method == "Network.requestWillBeSent" and message["params"].get("type") in (
                    "Fetch", "XHR", "Document"):
                self.in_flight.add(message["params"]["requestId"])
                self.last_network = time.monotonic()
            elif method in ("Network.loadingFinished", "Network.loadingFailed"):
                self.in_flight.discard(message["params"]["requestId"])
                self.last_network = time.monotonic()
            yield message

    def pump(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            for _ in self.messages():
                pass
            self.receive(min(left, 0.1))
        for _ in self.messages():
            pass

    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", {"expression": expression,
                                                "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in result:
            raise RuntimeError(f"page script failed: {result['exceptionDetails'].get('text')}")
        return result["result"].get("value")

    def resize(self, height: int) -> None:
        self.call("Emulation.setDeviceMetricsOverride", {
            "width": WIDTH, "height": height, "deviceScaleFactor": 1, "mobile": False})

    def settle(self, expect: str, timeout: float, quiet: float = 1.0) -> None:
        """Until the page shows ``expect`` and the network has been idle for ``quiet`` s."""
        deadline = time.monotonic() + timeout
        shows = (f"document.body && document.body.innerText.includes({json.dumps(expect)})"
                 " && Array.from(document.images).every(i => i.complete)")
        while time.monotonic() < deadline:
            self.pump(0.25)
            idle = not self.in_flight and time.monotonic() - self.last_network >= quiet
            if idle and self.evaluate(shows) and self.evaluate("document.fonts.ready.then("
                                                               "() => true)"):
                self.pump(0.5)  # a last layout pass (graph layout runs in a worker)
                if not self.in_flight:
                    return
        raise TimeoutError(f"the page did not show {expect!r} with the network idle within "
                           f"{timeout:.0f} s")

    def overflow(self) -> int:
        """How many pixels the tallest inner scrolling area hides below its fold."""
        return int(self.evaluate("""Math.max(0, ...Array.from(document.querySelectorAll('*'))
          .filter(e => e.clientHeight > 80 && ['auto', 'scroll'].includes(
             getComputedStyle(e).overflowY))
          .map(e => e.scrollHeight - e.clientHeight))"""))

    def click(self, text: str) -> bool:
        """Click the first button or link reading ``text``; False when there is none."""
        return bool(self.evaluate(f"""(() => {{
          const el = Array.from(document.querySelectorAll('button, a, [role=button]'))
            .find(e => e.innerText.trim() === {json.dumps(text)});
          if (!el) return false;
          el.scrollIntoView(); el.click(); return true; }})()"""))

    def capture(self, url: str, shot: Shot, dest: Path, timeout: float,
                max_height: int) -> bool:
        """Load ``url``, wait for it, capture it whole into ``dest``; False if skipped."""
        self.resize(HEIGHT)
        self.in_flight.clear()
        self.call("Page.navigate", {"url": url})
        self.last_network = time.monotonic()
        self.settle(shot.expect, timeout)
        if shot.click:
            if not self.click(shot.click):
                return False
            self.settle(shot.expect, timeout)
        height = HEIGHT
        for _ in range(4):  # taller viewport, re-render (virtualized lists grow), again
            hidden = self.overflow()
            if not hidden or height >= max_height:
                break
            height = min(height + hidden, max_height)
            self.resize(height)
            self.settle(shot.expect, timeout, quiet=0.5)
        png = self.call("Page.captureScreenshot", {"format": "png"}, timeout=60)["data"]
        dest.write_bytes(base64.b64decode(png))
        return True


def find_chromium(given: str | None) -> str:
    for name in ([given] if given else ["chromium", "chromium-browser", "google-chrome"]):
        path = shutil.which(name)
        if path:
            return path
    raise SystemExit(f"screenshots: {given or 'chromium'} not found on PATH; run "
                     "`make chromium` (Debian: apt-get install chromium) or pass --chromium")


# ---------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.screenshots",
        description="PNG screenshots of the Dagster UI: asset graph, model card, deploy gate, "
                    "drift report.")
    parser.add_argument("--out", type=Path, default=Path("screenshots"),
                        help="folder for the PNGs (created; default ./screenshots)")
    parser.add_argument("--state", type=Path,
                        help="an existing state folder (TIDELINE_HOME, e.g. .tideline); "
                             "default: a fresh temporary one, removed afterwards")
    parser.add_argument("--model", default=os.environ.get("TIDELINE_MODEL") or None,
                        help="the model whose pages are captured (default: the only one, "
                             "else the demo's)")
    parser.add_argument("--chromium", help="the browser executable (default: chromium)")
    parser.add_argument("--timeout", type=float, default=90,
                        help="seconds to wait for the webserver, and for each page")
    parser.add_argument("--max-height", type=int, default=6000,
                        help="tallest capture in pixels (pages that scroll inside grow)")
    args = parser.parse_args(argv)

    chromium = find_chromium(args.chromium)
    scratch = Path(tempfile.mkdtemp(prefix="tideline-screenshots-"))
    state = args.state.resolve() if args.state else scratch / "state"
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    server, done = None, False
    try:
        model = prepare_state(state, args.model)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        log = scratch / "webserver.log"
        bin_dir = Path(sys.executable).parent
        server = subprocess.Popen(
            [str(bin_dir / "dagster-webserver"), "-w", "workspace.yaml", "-h", "127.0.0.1",
             "-p", str(port)], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
            stdin=subprocess.DEVNULL, stdout=log.open("w"), stderr=subprocess.STDOUT,
            start_new_session=True)
        print(f"dagster-webserver on {url} (state {state})", flush=True)
        wait_for_webserver(url, model, server, log, args.timeout)
        browser = Browser(chromium, scratch / "chromium-profile", scratch / "chromium.log")
        written = []
        try:
            browser.start()
            for shot in shots(model):
                dest = out / f"{shot.name}.png"
                try:
                    taken = browser.capture(url + shot.path, shot, dest, args.timeout,
                                            args.max_height)
                except (TimeoutError, RuntimeError) as exc:
                    raise SystemExit(f"screenshots: {url + shot.path}: {exc}") from None
                if taken:
                    written.append((dest, shot))
                else:
                    dest.unlink(missing_ok=True)  # not a stale one from an earlier run
                    print(f"skipped {shot.name}: no {shot.click!r} on {shot.path}",
                          flush=True)
        finally:
            browser.close()
        for dest, shot in written:
            print(f"{dest}  {shot.what}")
        done = True
        return 0
    finally:
        if server is not None:
            os.killpg(server.pid, 15)
            try:
                server.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, 9)
                server.wait()
        if done:
            shutil.rmtree(scratch, ignore_errors=True)
        else:  # the logs named in the error, and the temporary state, stay to be read
            print(f"screenshots: kept {scratch} (webserver.log, chromium.log"
                  + (", state" if not args.state else "") + ")", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
