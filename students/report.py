"""Stage 6: `report.md`, a one-page summary of a run: scores, sizes, data and timings.

    distill evaluate CONFIG --output RUN    # writes RUN/report.md after the metrics
"""
from __future__ import annotations

import json
import os

from distill import config as config_lib, rundir, store, tasks


def run(cfg: config_lib.Config, run_dir: str) -> str:
    paths = rundir.RunDir(run_dir, cfg)
    task = tasks.get(cfg.task)
    with open(paths.metrics) as f:
        results = json.load(f)
    teacher = paths.summary("teacher")
    stages = {s: paths.summary(s) for s in cfg.student.stages}
    manifest = store.load_manifest(paths.store)
    lines = [
        f"# distill report: {task.name}", "",
        *_score_lines(cfg, task, results, teacher, stages[paths.final_stage]), "",
        "## Soft-label store", "",
        f"- {manifest['examples']} transfer examples in {len(manifest['shards'])} shard(s)",
        f"- teacher: {store.teacher_name(manifest)}; tokenizer: "
        f"{manifest['preprocessor']['handle'] or 'none (labels imported on raw text)'} "
        f"(seq_length {manifest['preprocessor']['seq_length']})",
        f"- distillation: loss {cfg.student.distill.loss}, temperature "
        f"{cfg.student.distill.temperature}, alpha {cfg.student.distill.alpha}",
        *_transfer_lines(manifest["source"]), "",
        *_curve_lines(stages), *_timing_lines(results, teacher, stages),
        *_environment_lines(results),
        *_serving_lines(paths), *_token_id_lines(paths.tflite, "TFLite", "model.tflite"),
        *_token_id_lines(paths.onnx, "ONNX", "model.onnx")]
    if results.get("submission"):
        lines += ["", "## GLUE test predictions", ""]
        lines += [f"- {s}: `{v['file']}` ({v['examples']} rows)"
                  for s, v in results["submission"].items()]
    rundir.write_text_atomic(paths.report, "\n".join(lines) + "\n")
    return paths.report


def _score_lines(cfg: config_lib.Config, task: tasks.Task, results: dict, teacher: dict,
                 last: dict) -> list[str]:
    """The dev-set table of teacher and student, and the teacher restarts."""
    splits = [s.name for s in task.dev_splits]
    metric_cols = [f"{s} {m}" for s in splits for m in task.metrics]

    def row(name, role, encoder, params):
        if "imported" in results[role]:  # Labels from another teacher: no model to score.
            return f"| {name} | {results[role]['imported']} (imported labels) | - | " + \
                " | ".join("-" for _ in metric_cols) + " |"
        values = [f"{results[role][s][m]:.4f}" for s in splits for m in task.metrics]
        return f"| {name} | {encoder} | {params:,} | " + " | ".join(values) + " |"

    return [
        f"Dev-set scores ({', '.join(task.metrics)}; {results['student'][splits[0]]['examples']} "
        f"examples in {splits[0]}).", "",
        "| model | encoder | parameters | " + " | ".join(metric_cols) + " |",
        "|---|---|---|" + "---|" * len(metric_cols),
        row("teacher", "teacher", cfg.teacher.encoder, teacher.get("params", 0)),
        row(f"student ({' + '.join(cfg.student.stages)}, init {cfg.student.init})", "student",
            cfg.student.encoder, last.get("params", 0)),
        *_constant_lines(results, splits), *_restart_lines(teacher)]


def _constant_lines(results: dict, splits: list[str], at_least: float = 0.95) -> list[str]:
    """A model that answers (nearly) one class: its score says nothing beyond that."""
    lines = []
    for role in ("teacher", "student"):
        for split in splits:
            share = results[role].get(split, {}).get("top_class_share")
            if share is not None and share >= at_least:
                lines.append(f"- The {role} answers one class for {share:.1%} of {split}: its "
                             f"score there is (nearly) that constant's, not learned.")
    return [""] + lines if lines else []


def _curve_lines(stages: dict) -> list[str]:
    """Each student stage's score where it started (epoch 0) and after each of its epochs: does
    fine-tuning start where distillation ended, and does a second round overfit?"""
    rows = [(name, r) for name, summary in stages.items() for r in summary.get("epochs", [])]
    if not rows:
        return []
    return (["## Score after each epoch", "", "| stage | epoch | step | split | score |",
             "|---|---|---|---|---|"]
            + [f"| {name} | {r['epoch'] or '0 (start)'} | {r['step']} | {r['split']} | "
               f"{r['score']:.4f} |"
               for name, r in rows] + [""])


def _timing_lines(results: dict, teacher: dict, stages: dict) -> list[str]:
    lines = ["## Timings", "", "| stage | steps | seconds |", "|---|---|---|",
             f"| teacher fine-tuning | {teacher.get('steps', '-')} | {teacher.get('seconds', '-')} |"]
    for name, summary in stages.items():
        lines.append(f"| student {name} | {summary.get('steps')} | {summary.get('seconds')} |")
    seconds = results["teacher"].get("eval_seconds", 0) + results["student"]["eval_seconds"]
    lines.append(f"| evaluation (teacher + student) | - | {seconds:.2f} |")
    return lines


def _environment_lines(results: dict) -> list[str]:
    """Where the numbers came from: the last digits move between CPUs (oneDNN's kernels)."""
    env = results.get("environment")
    if not env:
        return []
    return ["", "## Environment", "",
            f"- CPU: {env['cpu']} ({env['cpu_count']} cores; "
            f"{', '.join(env['cpu_features']) or 'no AVX-512'})",
            f"- TensorFlow {env['tensorflow']}, oneDNN {'on' if env['onednn'] else 'off'}, "
            f"bf16 rewrite {'on' if env['onednn_bf16_rewrite'] else 'off'}; precision "
            f"{env['precision']}, deterministic {env['deterministic']}, strategy {env['strategy']}"]


def _serving_lines(paths: rundir.RunDir) -> list[str]:
    if not os.path.isfile(paths.serving):
        return []
    with open(paths.serving) as f:
        s = json.load(f)
    check = s["check_against_evaluation"]
    return ["", "## Serving export", "",
            f"- `{s['export']}`: {s['size_bytes'] / 1e6:.1f} MB",
            f"- latency on this machine: {s['latency_ms_batch_1']} ms (batch 1), "
            f"{s['latency_ms_batch_32']} ms (batch 32), median of 20 calls",
            f"- against the evaluation's dev predictions: {check or 'not checked'}"]


def _token_id_lines(path: str, title: str, filename: str) -> list[str]:
    """A token-id export (TFLite, ONNX) against the SavedModel, as it measured itself."""
    if not os.path.isfile(path):
        return []
    with open(path) as f:
        t = json.load(f)
    return ["", f"## {title} export", "",
            f"- `{t['export']}/{filename}` (quantize: {t['quantize']}): "
            f"{t['size_bytes'] / 1e6:.2f} MB against the SavedModel's "
            f"{t['savedmodel_size_bytes'] / 1e6:.2f} MB",
            f"- latency, batch 1: {t['latency_ms_batch_1']} ms against "
            f"{t['savedmodel_latency_ms_batch_1']} ms (median of 50 calls)",
            f"- {t['dev_split']} ({t['dev_examples']} examples): score "
            f"{t['dev_score']:.4f} against the SavedModel's {t['savedmodel_dev_score']:.4f}; "
            f"same prediction on {t['agreement']:.2%} of them; largest logit difference "
            f"{t['max_abs_logit_difference']:.2e}" if t["agreement"] is not None else
            f"- {t['dev_split']}: score {t['dev_score']:.4f} against the SavedModel's "
            f"{t['savedmodel_dev_score']:.4f}"]


def _transfer_lines(source: dict) -> list[str]:
    """Each transfer source through its filters, and whether the contamination guard ran."""
    if not source.get("contamination_guard", True):
        guard = ("- **contamination guard: OFF** (data.contamination_guard=false): the transfer "
                 "set may hold dev or test text, so dev scores may be inflated")
    else:
        guard = ("- contamination guard: on (no transfer text from outside D_L's train split occurs in "
                 "the dev or test sets, or in the heldout split carved from train)")
    lines = [guard, "", "| transfer source | read | sampled | after duplicates | in dev/test | "
             "in heldout | kept |", "|---|---|---|---|---|---|---|"]
    for row in source.get("sources", []):
        unguarded = "" if row.get("guarded", True) else " (D_L's train split: not guarded)"
        lines.append(f"| `{row['source']}`{unguarded} | {row['read']:,} | {row['sampled']:,} | "
                     f"{row['after_duplicates']:,} | {row['contaminated']:,} | "
                     f"{row.get('in_heldout', 0):,} | {row['kept']:,} |")
    return lines


def _restart_lines(teacher: dict) -> list[str]:
    """Every teacher restart's score on the gate's split, and which one was kept."""
    if not teacher.get("restarts"):
        return []
    kept = teacher["restarts"][teacher["kept_restart"]]
    return ["", f"Teacher restarts (`teacher.restarts`), scored on the {kept['split']} split "
            f"(majority-class/mean baseline {kept['baseline']:.4f}); kept seed {kept['seed']}: "
            + ", ".join(f"seed {r['seed']} {r['score']:.4f}" for r in teacher["restarts"]) + "."]
