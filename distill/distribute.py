"""The `tf.distribute` strategy a run trains and labels under, from the config's `distribute`.

    distribute: {strategy: mirrored}          # all local GPUs (or `cpu_devices` CPUs)
    distribute: {strategy: multi_worker}      # one process per machine, cluster from TF_CONFIG
    distribute: {strategy: tpu, tpu: NAME}    # a Cloud TPU (address or name)

Batch sizes in configs are global: `tf.distribute` splits each batch across the
replicas and `training.fit` weighs each replica's loss by its share of the
batch, so the gradient is the same as on one device. Only the chief (worker 0)
writes artifacts; other workers write what they must (checkpoints, SavedModels
take part in collectives) to scratch directories that are removed afterwards.
Labeling does not need collectives: under `multi_worker` every worker labels
its own shards (`label_worker`).
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile

import distill  # noqa: F401  (selects tf-keras before TensorFlow loads)
import tensorflow as tf
import tf_keras as keras

from distill.errors import UserError

_cache: dict = {}


def _split_cpu(cfg) -> None:
    """Makes `distribute.cpu_devices` logical CPU devices, if set; call it before any TF op."""
    count = cfg.distribute.cpu_devices
    if not count or _cache.get("cpu_devices") == count:
        return
    cpus = tf.config.list_physical_devices("CPU")  # Listing logical ones would start TF.
    try:
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration()] * count)
    except RuntimeError as e:
        raise UserError(f"distribute.cpu_devices = {count}: TensorFlow had already started in "
                        f"this process; set it in the config or with --set on the command "
                        f"line.") from e
    _cache["cpu_devices"] = count


def accelerated() -> bool:
    """Whether TensorFlow sees a GPU or a TPU here."""
    return bool(tf.config.list_physical_devices("GPU") or tf.config.list_physical_devices("TPU"))


def bf16_rewrite(on: bool) -> None:
    """Turns oneDNN's automatic bfloat16 graph rewrite on or off. It applies to functions
    traced or loaded while it is on."""
    tf.config.optimizer.set_experimental_options({"auto_mixed_precision_onednn_bfloat16": on})


def rewrite_on() -> bool:
    """Whether oneDNN's bfloat16 rewrite applies to functions traced or loaded now."""
    return bool(tf.config.optimizer.get_experimental_options().get(
        "auto_mixed_precision_onednn_bfloat16"))


@contextlib.contextmanager
def bf16_rewrite_for(model: keras.Model):
    """While training `model`, oneDNN's bfloat16 rewrite stays on only if the model holds a
    graph that the Keras policy cannot reach (a `hub.KerasLayer`); restored after.

    On a graph that `mixed_bfloat16` already casts (the native encoder) the rewrite adds no
    speed and costs memory: L-12 H-512 at batch 32 x 64 peaked at 3,420 MiB with it and 2,750
    without, 1.53 against 1.47 s a step, and it keeps what `recompute` would free
    (benchmarks/RESULTS.md, 2026-12-02 third session).
    """
    import tensorflow_hub as hub

    with bf16_rewrite_as(rewrite_on() and any(isinstance(m, hub.KerasLayer)
                                              for m in model.submodules)):
        yield


@contextlib.contextmanager
def bf16_rewrite_as(on: bool):
    """oneDNN's bfloat16 rewrite on or off for what is traced, loaded or first run inside;
    restored after."""
    was = rewrite_on()
    bf16_rewrite(on)
    try:
        yield
    finally:
        bf16_rewrite(was)


@contextlib.contextmanager
def in_float32():
    """Everything built, traced or loaded inside computes in float32 (Keras policy and oneDNN
    rewrite), whatever the run's precision: for comparing our models with SavedModels."""
    policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("float32")
    try:
        with bf16_rewrite_as(False):
            yield
    finally:
        keras.mixed_precision.set_global_policy(policy)


def set_precision(precision: str) -> None:
    """bfloat16 on CPUs: Keras' `mixed_bfloat16` policy for the encoders this project builds
    (matmuls and elementwise ops in bfloat16; variables, softmax, logits and losses in
    float32), and oneDNN's automatic mixed-precision graph rewrite for the graphs that come
    from SavedModels (a teacher's serving function, an encoder run through hub.KerasLayer),
    whose ops carry their dtypes so that a policy cannot reach inside them.
    """
    if precision == "bfloat16" and tf.config.list_physical_devices("GPU"):
        raise UserError("precision = 'bfloat16' uses oneDNN's bfloat16 kernels, which run on "
                        "CPUs; on GPUs, use precision = 'float32'.")
    keras.mixed_precision.set_global_policy(
        "mixed_bfloat16" if precision == "bfloat16" else "float32")
    bf16_rewrite(precision == "bfloat16")


def configure(cfg) -> None:
    """Process-wide settings: CPU devices, `deterministic`, `precision`. Call it before any
    TensorFlow op; calling it again is harmless."""
    _split_cpu(cfg)
    if cfg.deterministic:  # A process cannot turn it off again.
        keras.utils.set_random_seed(cfg.seed)  # Python, NumPy and TensorFlow seeds.
        tf.config.experimental.enable_op_determinism()
    set_precision(cfg.precision)


def environment(cfg) -> dict:
    """What a run's numbers depend on besides its config: the CPU (oneDNN picks other kernels
    on other CPUs, so the last digits move between machines), TensorFlow and its oneDNN
    settings. Recorded in metrics.json and the report."""
    model, flags = "unknown", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and model == "unknown":
                    model = value.strip()
                elif key.strip() == "flags":
                    flags = set(value.split())
                    break
    except OSError:
        pass
    wanted = ("avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
    return {"cpu": model, "cpu_count": os.cpu_count(),
            "cpu_features": [f for f in wanted if f in flags],
            "tensorflow": tf.__version__,
            "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "1") != "0",
            "onednn_bf16_rewrite": rewrite_on(),
            "precision": cfg.precision,
            "keras_policy": keras.mixed_precision.global_policy().name,
            "deterministic": cfg.deterministic,
            "strategy": cfg.distribute.strategy}


def strategy(cfg) -> tf.distribute.Strategy:
    """The strategy `cfg.distribute` names, created once per process (after `configure`)."""
    configure(cfg)
    dist = cfg.distribute
    key = (dist.strategy, dist.tpu, dist.cpu_devices)
    if key in _cache:
        return _cache[key]
    if dist.strategy == "default":
        made = tf.distribute.get_strategy()
    elif dist.strategy == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = gpus or tf.config.list_logical_devices("CPU")
        made = tf.distribute.MirroredStrategy([d.name for d in devices])
    elif dist.strategy == "multi_worker":
        if "TF_CONFIG" not in os.environ:
            raise UserError("distribute.strategy = 'multi_worker' needs the TF_CONFIG environment "
                            "variable (cluster and task), set on every worker.")
        made = tf.distribute.MultiWorkerMirroredStrategy()
    else:
        try:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=dist.tpu or None)
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
        except (ValueError, RuntimeError, tf.errors.OpError) as e:
            raise UserError(f"distribute.strategy = 'tpu' (distribute.tpu = {dist.tpu!r}): no TPU "
                            f"could be reached ({str(e).splitlines()[0]}).") from e
        made = tf.distribute.TPUStrategy(resolver)
    _cache[key] = made
    return made


def is_chief(strat: tf.distribute.Strategy | None = None) -> bool:
    """True except on the non-chief workers of a multi-worker cluster."""
    strat = strat or tf.distribute.get_strategy()
    resolver = getattr(strat, "cluster_resolver", None)
    if not isinstance(strat, tf.distribute.MultiWorkerMirroredStrategy) or resolver is None:
        return True
    if resolver.task_type in (None, "chief"):
        return True
    return (resolver.task_type == "worker" and resolver.task_id == 0
            and "chief" not in resolver.cluster_spec().as_dict())


def barrier(strat: tf.distribute.Strategy) -> None:
    """Waits until every worker gets here (an all-reduce); a no-op on one worker."""
    if isinstance(strat, tf.distribute.MultiWorkerMirroredStrategy):
        strat.reduce("SUM", strat.run(tf.function(lambda: tf.constant(1.0))), axis=None)


def split_batches(fn):
    """`fn` on a batch split across the current strategy's replicas, outputs gathered back.

    For inference (labeling) under `mirrored` or `tpu`; with one replica, `fn` itself.
    """
    strat = tf.distribute.get_strategy()
    replicas = strat.num_replicas_in_sync
    if replicas == 1 or isinstance(strat, tf.distribute.MultiWorkerMirroredStrategy):
        return fn

    def run(batch: dict):
        size = int(next(iter(batch.values())).shape[0])

        def part(ctx):
            i = ctx.replica_id_in_sync_group
            return {k: v[i * size // replicas:(i + 1) * size // replicas] for k, v in batch.items()}

        values = strat.experimental_distribute_values_from_function(part)
        return strat.gather(strat.run(fn, args=(values,)), axis=0)

    return run


@contextlib.contextmanager
def writes_to(path: str):
    """Where this worker writes `path`: the chief writes it, the others a scratch copy.

    Every worker must take part in saving distributed variables; only the
    chief's copy is kept.
    """
    if is_chief():
        yield path
        return
    scratch = tempfile.mkdtemp(prefix="distill-worker-")
    try:
        yield os.path.join(scratch, os.path.basename(path.rstrip("/")))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def label_worker(cfg, worker: int | None = None,
                 num_workers: int | None = None) -> tuple[int, int]:
    """(w, W) for labeling: the flags if given, else under `multi_worker` the worker's
    place in TF_CONFIG (chief first), else (0, 1)."""
    if worker is not None or num_workers is not None:
        w, n = worker or 0, num_workers or 1
    elif cfg.distribute.strategy == "multi_worker" and "TF_CONFIG" in os.environ:
        try:
            spec = json.loads(os.environ["TF_CONFIG"])
            workers = [*spec["cluster"].get("chief", []), *spec["cluster"].get("worker", [])]
            task = spec["task"]
            w = task["index"] + (len(spec["cluster"].get("chief", []))
                                 if task["type"] == "worker" else 0)
            n = len(workers)
        except (ValueError, KeyError, TypeError) as e:
            raise UserError(f"TF_CONFIG: expected JSON with cluster.worker (a list) and task "
                            f"{{type, index}}; received {os.environ['TF_CONFIG']!r}.") from e
    else:
        return 0, 1
    if not 0 <= w < n:
        raise UserError(f"--worker {w}: expected 0 <= worker < --num-workers ({n}).")
    return w, n
