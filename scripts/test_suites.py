#!/usr/bin/env python3
"""Runs the suites of `make test` one by one, times each, and prints a table of seconds.

Every suite has a time budget on this project's reference machine (2 cores) in
tests/budgets.toml; a suite without one is an error, so that a new suite comes with its
cost. Budgets are reported, never enforced: speed is the benchmarks' business, and a loaded
machine must not fail a correct change. The table goes to standard output and to
target/test-times.json, so that two runs can be compared suite by suite.

Stages (lint, rust and python by default, `--full` adds fuzz, or those named with --only):
lint, rust, python, fuzz. The Rust test binaries are built once (`cargo test --no-run`) and
then run one by one, each from its package folder as `cargo test` runs it. The fuzz smoke run
(a sanitizer build of every dependency, then 60 s of libFuzzer) belongs to `make test-full`,
run before a release; `make test` replays its seeds and regressions through the same
invariants instead (tests/bad_input.rs).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CARGO_FLAGS = os.environ.get("CARGO_FLAGS", "--release --locked").split()
LOG_DIR = ROOT / "target" / "test-logs"


def budgets() -> dict[str, float]:
    with open(ROOT / "tests" / "budgets.toml", "rb") as f:
        return {name: float(seconds) for name, seconds in tomllib.load(f)["budgets"].items()}


class Suite:
    def __init__(self, name: str, command: list[str], cwd: Path = ROOT, env: dict | None = None):
        self.name, self.command, self.cwd, self.env = name, command, cwd, env
        self.seconds = 0.0
        self.ok = False
        self.ran = False

    def run(self) -> None:
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        log = LOG_DIR / f"{self.name.replace('/', '_')}.log"
        print(f"==> {self.name}: {' '.join(self.command)}", flush=True)
        started = time.monotonic()
        with open(log, "w") as out:
            process = subprocess.Popen(
                self.command, cwd=self.cwd, env={**os.environ, **(self.env or {})},
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace",
            )
            assert process.stdout is not None
            for line in process.stdout:
                out.write(line)
                sys.stdout.write(line)
            self.ok = process.wait() == 0
        self.seconds = time.monotonic() - started
        self.ran = True
        print(f"<== {self.name}: {'ok' if self.ok else 'FAILED'} in {self.seconds:.1f} s", flush=True)


def lint_suites() -> list[Suite]:
    cargo = ["cargo"]
    return [
        Suite("lint/fmt", cargo + ["fmt", "--all", "--check"]),
        Suite("lint/clippy", cargo + ["clippy", *CARGO_FLAGS, "--workspace", "--all-targets",
                                      "--", "-D", "warnings"]),
        Suite("lint/clippy-cuda", cargo + ["clippy", *CARGO_FLAGS, "--workspace", "--features",
                                           "cuda", "--lib", "--", "-D", "warnings"]),
        Suite("lint/doc", cargo + ["doc", *CARGO_FLAGS, "--workspace", "--no-deps"],
              env={"RUSTDOCFLAGS": "-D warnings"}),
    ]


def rust_suites(python: str) -> tuple[Suite, list[Suite]]:
    """Builds the test binaries (itself a row of the table: compiling is much of the cost);
    one suite per test binary of the workspace, plus the doc tests and the cuda unit tests."""
    build = Suite("rust/build", ["cargo", "test", *CARGO_FLAGS, "--workspace", "--no-run",
                                 "--message-format=json"])
    print(f"==> {build.name}", flush=True)
    started = time.monotonic()
    built = subprocess.run(build.command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    build.seconds, build.ok, build.ran = time.monotonic() - started, built.returncode == 0, True
    if not build.ok:
        sys.exit("the Rust test binaries did not build (cargo's errors are above)")
    suites = []
    for line in built.stdout.splitlines():
        message = json.loads(line)
        if message.get("reason") != "compiler-artifact" or not message.get("executable"):
            continue
        if not message["profile"]["test"]:
            continue
        target = message["target"]
        package = Path(message["manifest_path"]).parent
        kind = "lib" if target["kind"][0].endswith("lib") else target["kind"][0]
        prefix = "" if package == ROOT else f"{package.name}/"
        label = {"test": target["name"], "bin": f"bin-{target['name']}"}.get(kind, kind)
        name = f"rust/{prefix}{label}"
        suites.append(Suite(name, [message["executable"]], cwd=package, env={
            "CARGO_MANIFEST_DIR": str(package), "DICOM_XAI_PYTHON": python,
        }))
    suites.sort(key=lambda s: s.name)
    suites.append(Suite("rust/doctests", ["cargo", "test", *CARGO_FLAGS, "--workspace", "--doc"]))
    suites.append(Suite("rust/lib-cuda", ["cargo", "test", *CARGO_FLAGS, "--features", "cuda",
                                          "--lib", "cuda_libraries"]))
    return build, suites


def stage_suites(stage: str, python: str) -> list[Suite]:
    """The suites of a stage, in order; the Rust stage's first is the build of its test
    binaries, which has run by the time this returns."""
    if stage == "lint":
        return lint_suites()
    if stage == "rust":
        build, binaries = rust_suites(python)
        return [build, *binaries]
    if stage == "python":
        return [Suite("python/pytest", [python, "-m", "pytest", "onnx/tests", "bench/peer/tests",
                                        "scripts/tests",
                                        "-q", "--durations=15"])]
    return [Suite("fuzz/smoke", ["bash", "scripts/fuzz_smoke.sh"])]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", choices=["lint", "rust", "python", "fuzz"])
    parser.add_argument("--full", action="store_true", help="every stage, the fuzz smoke run too")
    parser.add_argument("--python", default=str(ROOT / ".venv/bin/python"))
    parser.add_argument("--setup-seconds", type=float,
                        help="how long `make setup` took before, shown as the table's first row")
    parser.add_argument("filter", nargs="*", help="run only suites whose name contains one of these")
    args = parser.parse_args()
    stages = args.only or ["lint", "rust", "python"] + (["fuzz"] if args.full else [])
    limits = budgets()

    done: list[Suite] = []
    if args.setup_seconds is not None:
        setup = Suite("setup", ["make", "setup", "demo"])
        setup.seconds, setup.ok, setup.ran = args.setup_seconds, True, True
        done.append(setup)
    started = time.monotonic()
    for stage in stages:
        chosen = [s for s in stage_suites(stage, args.python)
                  if s.ran or not args.filter or any(f in s.name for f in args.filter)]
        missing = [s.name for s in done + chosen if s.name not in limits]
        if missing:
            print(f"no time budget in tests/budgets.toml for: {', '.join(missing)}",
                  file=sys.stderr)
            return 2
        for suite in chosen:
            if not suite.ran:
                suite.run()
            done.append(suite)
    total = time.monotonic() - started + (args.setup_seconds or 0.0)
    suites = done

    rows = [(s.name, s.seconds, limits.get(s.name, 0.0), s.ok) for s in suites]
    width = max(len(r[0]) for r in rows) if rows else 10
    print(f"\n{'suite':<{width}}  {'seconds':>8}  {'budget':>7}  result")
    for name, seconds, budget, ok in rows:
        note = "ok" if ok else "FAILED"
        if seconds > budget:
            note += " (over budget)"
        print(f"{name:<{width}}  {seconds:8.1f}  {budget:7.0f}  {note}")
    print(f"{'total':<{width}}  {total:8.1f}  {sum(r[2] for r in rows):7.0f}")
    (ROOT / "target").mkdir(exist_ok=True)
    (ROOT / "target" / "test-times.json").write_text(json.dumps(
        {"total": total, "suites": {r[0]: {"seconds": r[1], "ok": r[3]} for r in rows}},
        indent=1))
    failed = [s.name for s in suites if not s.ok]
    if failed:
        print(f"failed: {', '.join(failed)} (logs in {LOG_DIR.relative_to(ROOT)})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
