"""Stage 6: `report.md`, a one-page summary of a run: scores, sizes, data and timings."""
from __future__ import annotations

import json
import os

from distill import config as config_lib, records, tasks
from students.common import stage_dir
from teachers import label


def _done(path: str) -> dict:
    with open(os.path.join(path, "done.json")) as f:
        return json.load(f)["summary"]


def run(cfg: config_lib.Config, run_dir: str) -> str:
    task = tasks.get(cfg.task)
    with open(os.path.join(run_dir, "metrics.json")) as f:
        results = json.load(f)
    teacher = _done(os.path.join(run_dir, "teacher"))
    stages = {s: _done(stage_dir(run_dir, s)) for s in cfg.student.stages}
    last = stages[cfg.student.stages[-1]]
    manifest = records.load_manifest(label.store_path(cfg, run_dir))
    splits = [s.name for s in task.dev_splits]
    metric_cols = [f"{s} {m}" for s in splits for m in task.metrics]

    def row(name, role, encoder, params):
        values = [f"{results[role][s][m]:.4f}" for s in splits for m in task.metrics]
        return f"| {name} | {encoder} | {params:,} | " + " | ".join(values) + " |"

    lines = [
        f"# distill report: {task.name}",
        "",
        f"Dev-set scores ({', '.join(task.metrics)}; {results['teacher'][splits[0]]['examples']} "
        f"examples in {splits[0]}).",
        "",
        "| model | encoder | parameters | " + " | ".join(metric_cols) + " |",
        "|---|---|---|" + "---|" * len(metric_cols),
        row("teacher", "teacher", cfg.teacher.encoder, teacher.get("params", 0)),
        row(f"student ({' + '.join(cfg.student.stages)}, init {cfg.student.init})", "student",
            cfg.student.encoder, last.get("params", 0)),
        "",
        "## Soft-label store",
        "",
        f"- {manifest['examples']} transfer examples in {len(manifest['shards'])} shard(s), "
        f"from {', '.join(manifest['source']['transfer'])}",
        f"- teacher tokenizer: {manifest['preprocessor']['handle']} "
        f"(seq_length {manifest['preprocessor']['seq_length']})",
        f"- distillation: loss {cfg.student.loss}, temperature {cfg.student.temperature}, "
        f"alpha {cfg.student.alpha}",
        "",
        "## Timings",
        "",
        "| stage | steps | seconds |",
        "|---|---|---|",
        f"| teacher fine-tuning | {teacher.get('steps', '-')} | {teacher.get('seconds', '-')} |",
    ]
    for name, summary in stages.items():
        lines.append(f"| student {name} | {summary.get('steps')} | {summary.get('seconds')} |")
    lines.append(f"| evaluation (teacher + student) | - | "
                 f"{results['teacher']['eval_seconds'] + results['student']['eval_seconds']:.2f} |")
    serving = os.path.join(run_dir, "serving.json")
    if os.path.isfile(serving):
        with open(serving) as f:
            s = json.load(f)
        check = s["check_against_evaluation"]
        lines += ["", "## Serving export", "",
                  f"- `{s['export']}`: {s['size_bytes'] / 1e6:.1f} MB",
                  f"- latency on this machine: {s['latency_ms_batch_1']} ms (batch 1), "
                  f"{s['latency_ms_batch_32']} ms (batch 32), median of 20 calls",
                  f"- against the evaluation's dev predictions: {check or 'not checked'}"]
    if results.get("submission"):
        lines += ["", "## GLUE test predictions", ""]
        lines += [f"- {s}: `{v['file']}` ({v['examples']} rows)"
                  for s, v in results["submission"].items()]
    path = os.path.join(run_dir, "report.md")
    records.write_text_atomic(path, "\n".join(lines) + "\n")
    return path
