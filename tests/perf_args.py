"""perf/throughput's --workers and --worker-cpus, and perf/worker_bench's numbers (where it is built):
a bad value is an error line before anything starts (no traceback, no abort, no generator left
running). Runs no DPDK process: every case here fails its check."""
import os
import subprocess
import sys

root = sys.argv[1]
script = f"{root}/perf/throughput.py"
failed = False
for args, want in [(["--workers", "abc"], "error: --workers"), (["--workers", "0"], "error: --workers"),
                   (["--workers", "-1"], "error: --workers"), (["--workers", "2", "--worker-cpus", ","], "error: --worker-cpus"),
                   (["--workers", "2", "--worker-cpus", "x"], "error: --worker-cpus"),
                   (["--workers", "2", "--worker-cpus", "4096"], "error: --worker-cpus")]:
    r = subprocess.run([sys.executable, script, "--build", "/nonexistent", "--only-workers"] + args,
                       capture_output=True, text=True, timeout=60)
    if r.returncode == 0 or want not in r.stderr or "Traceback" in r.stderr:
        print(f"{' '.join(args)}: status {r.returncode}, stderr:\n{r.stderr}")
        failed = True
bench = f"{sys.argv[2]}/perf/worker_bench" if len(sys.argv) > 2 else ""
if os.access(bench, os.X_OK):
    for args in (["--packets", "abc"], ["--packets", "12abc"], ["--rounds", "2x"], ["--seconds", "inf"],
                 ["--seconds", "nan"], ["--packets", "-5"]):
        r = subprocess.run([bench] + args, capture_output=True, text=True, timeout=60)
        if r.returncode != 2 or not r.stderr.startswith("worker_bench: "):
            print(f"worker_bench {' '.join(args)}: status {r.returncode}, stderr:\n{r.stderr}")
            failed = True
sys.exit(1 if failed else 0)
