"""Every input of a run checked before any work starts, cheaply, and nothing written.

`distill run`, `sweep` and `reproduce` call `check` first, so a typo in a path,
a handle or a transfer entry ends the command in seconds with one line naming it
(exit status 2), not after the teacher has trained for an hour. Checked: the
output location, the tokenizers, the encoder handles (resolved, so a TF Hub
handle that cannot be fetched is named here), a store to reuse, D_L's splits
(each GLUE file read row by row, or the TFDS dataset prepared), every transfer
source (opened, dev/test refused), the MLM text files and, last, the transfer set's
filters (de-duplication and the contamination guard, one streaming pass that the label
stage reuses): an empty set, or a source that is all dev/test text, is refused here.
Handles are checked before data: they fail fastest where the network is missing.

    python -c "from distill import config, preflight; preflight.check(config.load('configs/demo.yaml'), '/tmp/x')"
"""
from __future__ import annotations

import os

from distill import config as config_lib, data, handles, store, tasks, text, transfer
from distill.errors import UserError


def check_can_create(path: str) -> None:
    """Refuses an output path that cannot be created, without creating anything."""
    parent = os.path.abspath(path)
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent) or not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"Output directory {path} is not writable ({parent} is not a writable "
                        f"directory); expected a directory this user can create files in.")


def check(cfg: config_lib.Config, run_dir: str) -> None:
    """Raises UserError naming the first bad input of `cfg`; writes nothing.

    Args:
      cfg: a loaded (so already validated) config.
      run_dir: the output directory; it need not exist yet.
    """
    task = tasks.get(cfg.task)
    check_can_create(run_dir)
    imported = store.imported_teacher(cfg.data.store)  # Then no teacher model is used.
    for side in ("student",) if imported else ("teacher", "student"):
        section = getattr(cfg, side)
        try:
            text.load(section.preprocessor, section.lower_case)
        except UserError as e:
            raise UserError(f"{side}.preprocessor: {e}") from e
    # One teacher, or each member of an ensemble; none when the store's labels were imported.
    members = [] if imported else (cfg.teacher.ensemble or [{}])
    for k, member in enumerate(members):
        where = f"teacher.ensemble[{k}]." if cfg.teacher.ensemble else "teacher."
        finetuned = member.get("finetuned", cfg.teacher.finetuned)
        if finetuned:
            handles.check_saved_model(finetuned, where + "finetuned")
        else:
            handles.check_saved_model(member.get("encoder", cfg.teacher.encoder), where + "encoder")
    handles.check_saved_model(cfg.student.encoder, "student.encoder")
    if cfg.data.store:
        store.check(cfg.data.store, expect={"task": task.name}, verify_checksums=False)
    needs_train = (not cfg.teacher.finetuned or "finetune" in cfg.student.stages
                   or cfg.data.heldout_fraction > 0)
    for split in (["train"] if needs_train else []) + [s.name for s in task.dev_splits]:
        data.labeled(cfg.data, task, split)
    for path in cfg.student.mlm.data:
        if not os.path.isfile(path):
            raise UserError(f"student.mlm.data: text file {path} does not exist.")
    if not cfg.data.store:
        # Last, since it reads every source (after opening each, which names the one that
        # fails): the transfer set's filters, decided now and reused by the label stage, so a
        # set that is empty or all dev/test text is refused before the teacher trains.
        transfer.decide(cfg.data, task)
