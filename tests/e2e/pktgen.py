"""End-to-end: Pktgen-DPDK through moatd and through plain testpmd io (perf/pktgen.py), every
phase checked on counts, none on rates. Skipped (exit 77) unless PKTGEN names a Pktgen-DPDK
binary built with Lua, e.g.
    PKTGEN=$(../shared/tools/pktgen/build.sh /tmp/pktgen-build) meson test -C build pktgen
  python3 tests/e2e/pktgen.py BUILD_DIR
"""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

if len(sys.argv) != 2:
    sys.exit(__doc__)
pktgen = os.environ.get("PKTGEN", "")
if not pktgen:
    print("SKIP: PKTGEN is not set; set it to a Pktgen-DPDK binary built with Lua to run this test "
          "(../shared/tools/pktgen/build.sh DEST builds one and prints its path)")
    sys.exit(77)
# Two rates, one second a phase: the checks are on counts, so a short run checks as much.
sys.exit(subprocess.run([sys.executable, os.path.join(ROOT, "perf", "pktgen.py"), "--pktgen", pktgen,
                         "--build", sys.argv[1], "--no-build", "--rates", "1,100", "--seconds", "1"]).returncode)
