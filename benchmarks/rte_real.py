"""Real-data check on RTE (issue 25, item 7): does PDF fall below the majority class, and why?

    python benchmarks/rte_real.py --output runs/rte_real [--layers 2 4] [--seeds 0]

RTE from ../shared/data (2,490 training pairs, 277 dev), `configs/glue/rte.yaml` as it is
(3 teacher restarts, graded on the teacher's own 10% of train) with the configs' default
schedules (teacher 3 epochs at 2e-5, distillation 3 epochs at 1e-4, fine-tuning 3 epochs at
5e-5, batch 32, sequence length 128). Teacher: the real MiniLM-L6-H384 (as in sst2_real.py).
Transfer set: RTE's own training pairs only (the paper's NLI* needs TFDS downloads).
Students: the teacher's first k layers, PF, PD and PDF. Prints the grid's table, the majority
class, and each cell's dev score after every epoch of every stage: whether PDF's fine-tuning
epochs lower a score PD had reached (a second round over the same small text, overfitting)
or PDF starts below where PD ended (a defect in what fine-tuning starts from).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from distill import config as config_lib  # noqa: E402
from pipelines import paper  # noqa: E402

import sst2_real  # noqa: E402  (benchmarks/, this script's directory)

RTE = os.path.join(sst2_real.SHARED, "glue", "RTE")
TASK_CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                           "configs", "glue", "rte.yaml")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output", required=True)
    parser.add_argument("--layers", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a config override for every cell")
    args = parser.parse_args()
    out = os.path.abspath(args.output)
    os.makedirs(out, exist_ok=True)
    t0 = time.time()
    students = sst2_real.minilm_encoders(out, tuple(args.layers))
    enc = os.path.join(out, "encoders", "teacher")
    overrides = [f"data.labeled=glue_dir:{RTE}", "data.transfer=['labeled:train']",
                 f"teacher.encoder={enc}/encoder", f"teacher.preprocessor={enc}/preprocessor",
                 f"student.preprocessor={enc}/preprocessor"] + args.set
    cfg = config_lib.load(None, [
        "grid.tasks=['rte']", f"grid.overrides={overrides!r}", f"grid.students={students!r}",
        "grid.methods=['PF', 'PD', 'PDF']", f"grid.seeds={args.seeds!r}"])
    grid = os.path.join(out, "grid")
    summary = paper.run(cfg, grid)
    with open(os.path.join(grid, "methods_rte.md")) as f:
        print(f"\n{f.read()}\ncells: {summary}; wall {time.time() - t0:.0f} s")
    print("majority class (dev):", paper.majority_scores(config_lib.load(TASK_CONFIG,
                                                                         overrides[:1])))
    for student in students:
        for method in ("PF", "PD", "PDF"):
            for seed in args.seeds:
                cell = os.path.join(paper.cell_dir(grid, paper.Key("rte", student["name"],
                                                                    method, seed)), "cell.json")
                with open(cell) as f:
                    record = json.load(f)
                curve = {stage: [round(r["score"], 4) for r in rows]
                         for stage, rows in record.get("epochs", {}).items()}
                print(f"{student['name']} {method} seed {seed}: dev {record.get('scores')}; "
                      f"after each epoch {curve}")


if __name__ == "__main__":
    main()
