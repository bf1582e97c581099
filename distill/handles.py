"""Model handles: a TF Hub URL, a Kaggle Models handle or URL, or a local SavedModel directory.

Every place that takes an encoder, a preprocessor or a classifier resolves it here, so a
handle is accepted, refused and named in errors the same way everywhere. tfhub.dev now
redirects to Kaggle Models, and a model's Kaggle page gives its handle as
OWNER/MODEL/FRAMEWORK/VARIATION/VERSION, e.g. `tensorflow/bert/tensorFlow2/en-uncased-l-12-h-768-a-12/3`:
that form is accepted as it is and loaded from https://www.kaggle.com/models/<handle>,
which `tensorflow_hub` resolves like any TF Hub URL.

    python -c "from distill import handles; print(handles.resolve('/tmp', 'encoder'))"
"""
from __future__ import annotations

import os
import re

from distill.errors import UserError

KAGGLE_MODELS = "https://www.kaggle.com/models/"
# OWNER/MODEL/FRAMEWORK/VARIATION/VERSION, as a Kaggle model page gives it.
_KAGGLE_HANDLE = re.compile(r"^[\w.-]+/[\w.-]+/(tensorflow1|tensorflow2|tfjs|tflite)/[\w.-]+/\d+$",
                            re.IGNORECASE)


def is_kaggle_handle(handle: str) -> bool:
    return not os.path.exists(handle) and bool(_KAGGLE_HANDLE.match(handle))


def url(handle: str) -> str:
    """What `tensorflow_hub` loads for `handle`: a Kaggle handle as its URL, else the handle."""
    return KAGGLE_MODELS + handle if is_kaggle_handle(handle) else handle


def is_remote(handle: str) -> bool:
    """A URL that `tensorflow_hub` resolves (tfhub.dev, Kaggle Models), or a Kaggle handle."""
    return "://" in handle or is_kaggle_handle(handle)


def resolve(handle: str, what: str, fetch: bool = False, files_too: bool = False) -> str:
    """What to load for the handle (`url`): a local directory (or file, with `files_too`) or
    a remote handle; with `fetch`, a remote handle is downloaded now and its local copy
    returned, so a handle that cannot be fetched is named before any work.

    Args:
      handle: what the config or command line gave.
      what: how errors name it, e.g. "student.encoder" or "Encoder handle".

    Raises:
      UserError: naming `what` and the handle, when it is neither.
    """
    if is_remote(handle):
        if not fetch:
            return url(handle)
        import tensorflow_hub as hub

        try:
            return hub.resolve(url(handle))
        except Exception as e:  # hub raises many types; all mean "cannot fetch".
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise UserError(f"{what}: handle {handle!r} could not be fetched: {reason}") from e
    if os.path.isdir(handle) or (files_too and os.path.isfile(handle)):
        return handle
    expected = "a file, a directory" if files_too else "a directory"
    raise UserError(f"{what} {handle!r}: no such {'file or ' if files_too else ''}directory; "
                    f"expected {expected}, a TF Hub URL or a Kaggle Models handle "
                    f"(OWNER/MODEL/FRAMEWORK/VARIATION/VERSION) or URL.")


def check_saved_model(handle: str, what: str) -> None:
    """A remote handle that fetches now, or a local SavedModel directory."""
    local = resolve(handle, what, fetch=True) if is_remote(handle) else handle
    if not os.path.isfile(os.path.join(local, "saved_model.pb")):
        raise UserError(f"{what}: {handle!r} is not a SavedModel directory (no saved_model.pb); "
                        f"expected a TF Hub handle or a local encoder directory.")
