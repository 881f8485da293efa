"""What first touching fresh anonymous memory costs on this machine, with 4 KiB pages and
with transparent huge pages, right after memory was freed and after the machine idled.

On a VM whose balloon device reports free pages to the host (virtio-balloon free page
reporting, /sys/module/page_reporting/parameters/page_reporting_order), the host takes back
guest memory that stayed free a few seconds; touching it again makes the host fault it in,
and that time is the guest's system time. hopcap's column arrays are fresh memory every run
(~150 bytes a packet): this is why the same run's system time varies from run to run here.

    .venv/bin/python bench/first_touch.py [MB]
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import resource, sys, time
import numpy as np
n = int(sys.argv[1]) << 20
def sys_t(): return resource.getrusage(resource.RUSAGE_SELF).ru_stime
for wait in (0.0, 0.0, 4.0, 0.0, 8.0, 0.0):
    time.sleep(wait)
    s0 = sys_t()
    a = np.empty(n // 8, np.int64)
    a.fill(1)
    print(f"{wait:.0f} {sys_t() - s0:.4f}", flush=True)
    del a
"""


def main() -> None:
    mb = int(sys.argv[1]) if len(sys.argv) > 1 else 400
    order = "/sys/module/page_reporting/parameters/page_reporting_order"
    rep = Path(order).read_text().strip() if os.path.exists(order) else "no page reporting"
    print(f"{mb} MB of fresh memory filled; free page reporting order: {rep}")
    print("| pages | after idle (s) | system time (s) |\n| --- | --- | --- |")
    for huge in ("0", "1"):
        env = {**os.environ, "NUMPY_MADVISE_HUGEPAGE": huge, "OPENBLAS_NUM_THREADS": "1"}
        out = subprocess.run(
            [sys.executable, "-c", CHILD, str(mb)], env=env, capture_output=True, text=True
        ).stdout
        for line in out.split("\n"):
            if line:
                wait, t = line.split()
                kind = "2 MiB (THP)" if huge == "1" else "4 KiB"
                print(f"| {kind} | {wait} | {t} |")


if __name__ == "__main__":
    main()
