"""Benchmark `celery-timeouts scan` on large generated input: time and peak RSS.

Run: python benchmarks/bench_scan.py [--quick] [--json]

Each case is scanned in a fresh subprocess (wall and CPU time are both reported: on a
shared machine the CPU time is the one to compare) (so its peak RSS is its own) with an
address-space cap (so a regression cannot take the machine down) and a timeout:
  * modules of 1k, 4k and 8k functions that each arm and cancel an alarm;
  * a ~10 MB module mixing such functions, classes and generated-code style
    (protobuf `_pb2.py`-like module-level assignments);
  * a ~10 MB module that never mentions `signal` (the fast path).
The issue that prompted it measured 4k functions at 13 s / 284 MB and a 5 MB module
at 24 GB before the scanner kept only the bindings that can lead to a finding.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MEMORY_CAP_BYTES = 4 * 1024**3
TIMEOUT_SECONDS = 180.0

FUNCTION = """
def handler_{i}(signum, frame):
    raise RuntimeError("timed out in task {i}")


def task_{i}(items, limit={i}):
    signal.signal(signal.SIGALRM, handler_{i})
    signal.alarm(limit % 60 + 1)
    try:
        total = 0
        for item in items:
            if item > {i}:
                total += item
            elif item < 0:
                total -= 1
        return [value * 2 for value in items if value], total
    finally:
        signal.alarm(0)
"""

CLASS = """
class Message{i}(Base):
    FIELD = _descriptor.FieldDescriptor(name="field_{i}", index={i}, number={i})

    def serialize(self, stream):
        with stream.section({i}) as section:
            section.write(self.FIELD)
        return lambda: stream.flush()
"""

GENERATED = """_MESSAGE_{i} = DESCRIPTOR.message_types_by_name["Message{i}"]
_globals["_MESSAGE_{i}"]._serialized_start = {i}
_globals["_MESSAGE_{i}"]._serialized_end = {j}
"""

HEADER = "import signal\nimport os\nfrom google.protobuf import descriptor as _descriptor\n"


def many_functions(count: int) -> str:
    return HEADER + "".join(FUNCTION.format(i=i) for i in range(count))


def mixed_module(target_bytes: int, *, mention_signal: bool = True) -> str:
    parts = [HEADER if mention_signal else "import os\n"]
    size, i = len(parts[0]), 0
    function = FUNCTION if mention_signal else FUNCTION.replace("signal.", "sig.")
    while size < target_bytes:
        chunk = function.format(i=i) + CLASS.format(i=i) + GENERATED.format(i=i, j=i + 1)
        parts.append(chunk)
        size += len(chunk)
        i += 1
    return "".join(parts)


CHILD = """
import json, resource, sys, time
from celery_timeouts.scan import scan_paths
started, cpu_started = time.perf_counter(), time.process_time()
findings, errors = scan_paths([sys.argv[1]])
elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": elapsed, "cpu_seconds": cpu, "peak_mb": peak_kib / 1024,
                  "findings": len(findings), "errors": errors}))
"""


def _cap_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP_BYTES, MEMORY_CAP_BYTES))


def scan_in_subprocess(path: Path) -> dict[str, object]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    try:
        completed = subprocess.run(
            [sys.executable, "-c", CHILD, str(path)],
            capture_output=True,
            text=True,
            timeout=TIMEOUT_SECONDS,
            env=env,
            cwd=REPO,
            preexec_fn=_cap_memory,
        )
    except subprocess.TimeoutExpired:
        return {"failed": f"over {TIMEOUT_SECONDS:.0f} s"}
    if completed.returncode != 0:
        return {"failed": completed.stderr.strip().splitlines()[-1:]}
    result: dict[str, object] = json.loads(completed.stdout)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1k/4k functions and 2 MB only")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    megabytes = 2 if args.quick else 10
    cases = {f"{n // 1000}k functions": many_functions(n) for n in (1000, 4000, 8000)}
    if args.quick:
        del cases["8k functions"]
    cases[f"{megabytes} MB mixed module"] = mixed_module(megabytes * 1024**2)
    cases[f"{megabytes} MB without signal"] = mixed_module(
        megabytes * 1024**2, mention_signal=False
    )
    results: dict[str, dict[str, object]] = {}
    with tempfile.TemporaryDirectory() as folder:
        for name, source in cases.items():
            path = Path(folder) / "generated.py"
            path.write_text(source, encoding="utf-8")
            result = scan_in_subprocess(path)
            result["source_mb"] = round(len(source) / 1024**2, 2)
            results[name] = result
            if not args.json:
                print(f"{name:>24}: {_describe(result)}", flush=True)
    if args.json:
        print(json.dumps(results, indent=2))
    return 0


def _describe(result: dict[str, object]) -> str:
    if "failed" in result:
        return f"FAILED ({result['failed']}), {result['source_mb']} MB of source"
    return (
        f"{result['seconds']:.2f} s ({result['cpu_seconds']:.2f} s CPU), "
        f"peak RSS {result['peak_mb']:.0f} MB, "
        f"{result['findings']} findings, {result['source_mb']} MB of source"
    )


if __name__ == "__main__":
    raise SystemExit(main())
