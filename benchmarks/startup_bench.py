"""CPU seconds from the start of ``mmcore run`` to its first training batch, with mmcore's optimiser
and with ``torch.optim.AdamW`` (issue 17, startup: first batch within 2 s CPU).

Each round starts ``python -c <hook> run SPEC --out <temporary folder> --no-progress`` once per side,
in alternating order. The hook calls ``mmcore.cli.main`` and reads the process's CPU time
(``time.process_time``: every thread, interpreter start-up included) when ``torch`` and ``mmcore.cli``
finish importing, when the spec is validated, when the trainer (model and optimiser) is built and
when the first training batch has stepped, then exits. ``torch._dynamo`` is reported if it was
imported, with the CPU seconds its import took. Medians over the rounds; the spec's own
``train.num_threads`` policy applies in the child.

    python benchmarks/startup_bench.py [examples/baseline.yaml] [--rounds 5]

Writes nothing into the repository; no matplotlib.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

from _common import footer, header

# runs in the child: records CPU seconds at each mark, prints them as JSON, exits after the first batch
HOOK = r"""
import importlib.abc, importlib.machinery, json, os, sys, time
side, marks, nested = sys.argv[1], {}, {}

class Watch(importlib.abc.MetaPathFinder):
    # records the CPU time around the import of the watched modules; on the torch side swaps the optimiser
    watched = {"torch", "torch._dynamo", "mmcore.train.step"}
    def find_spec(self, name, path, target=None):
        if name not in self.watched:
            return None
        self.watched.discard(name)
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        run = spec.loader.exec_module
        def exec_module(module):
            c0 = time.process_time()
            run(module)
            marks[name] = time.process_time()
            nested[name] = marks[name] - c0
            if name == "mmcore.train.step" and side == "torch":
                import torch
                module.make_optimizer = lambda params, lr, wd, compiled: torch.optim.AdamW(params, lr=lr, weight_decay=wd)
        spec.loader.exec_module = exec_module
        return spec

sys.meta_path.insert(0, Watch())
import mmcore.cli
marks["mmcore.cli"] = time.process_time()
import mmcore.spec
load_spec = mmcore.spec.load_spec
def timed_load_spec(*a, **k):
    out = load_spec(*a, **k)
    marks["spec validated"] = time.process_time()
    return out
mmcore.spec.load_spec = timed_load_spec

import mmcore.train.trainer as trainer_mod, mmcore.train.step as step_mod
init, run = trainer_mod.Trainer.__init__, step_mod.BatchStepper.run
def timed_init(self, *a, **k):
    init(self, *a, **k)
    marks["trainer built"] = time.process_time()
def first_batch(self, *a, **k):
    run(self, *a, **k)
    import torch
    marks["first batch"] = time.process_time()
    print(json.dumps({"marks": marks, "dynamo_import_s": nested.get("torch._dynamo"),
                      "threads": torch.get_num_threads(), "optimizer": type(self.optimizer).__name__}), flush=True)
    os._exit(0)
trainer_mod.Trainer.__init__, step_mod.BatchStepper.run = timed_init, first_batch
sys.exit(mmcore.cli.main(sys.argv[2:]))
"""

ORDER = ["mmcore.cli", "torch", "spec validated", "trainer built", "first batch"]


def one(side: str, spec: str, tmp: str, k: int) -> dict:
    argv = [sys.executable, "-c", HOOK, side, "-q", "run", spec, "--out", os.path.join(tmp, f"{side}{k}"), "--no-progress"]
    out = subprocess.run(argv, capture_output=True, text=True, check=False)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        raise SystemExit(f"the child failed:\n{out.stderr[-3000:]}")
    return json.loads(lines[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("spec", nargs="?", default="examples/baseline.yaml")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    print(header("process CPU time (time.process_time, all threads) of the child, from its start"))
    sides = ["mmcore", "torch"]  # mmcore: EagerAdamW (mmcore.train.step); torch: torch.optim.AdamW
    res = {s: [] for s in sides}
    with tempfile.TemporaryDirectory() as tmp:
        one("mmcore", args.spec, tmp, -1)  # warm the file cache
        for r in range(args.rounds):
            for s in (sides if r % 2 == 0 else sides[::-1]):
                res[s].append(one(s, args.spec, tmp, r))
    first = res["mmcore"][0]
    print(f"# {args.spec}, {args.rounds} rounds, child torch threads {first['threads']}; medians, CPU seconds")
    print("| mark | " + " | ".join(f"{s} ({res[s][0]['optimizer']})" for s in sides) + " |")
    print("|---|" + "---:|" * len(sides))
    for m in ORDER:
        print(f"| {m} | " + " | ".join(f"{statistics.median(x['marks'][m] for x in res[s]):.2f}" for s in sides) + " |")
    dyn = {s: [x["dynamo_import_s"] for x in res[s] if x["dynamo_import_s"] is not None] for s in sides}
    print("| torch._dynamo imported | " + " | ".join(
        f"yes, {statistics.median(dyn[s]):.2f} s" if dyn[s] else "no" for s in sides) + " |")
    a, b = (statistics.median(x["marks"]["first batch"] for x in res[s]) for s in sides)
    print(f"first batch: {a:.2f} s CPU ({sides[0]}) vs {b:.2f} s ({sides[1]}): {b / a:.2f}x")
    print(footer())


if __name__ == "__main__":
    main()
