"""Each epoch a uniform, seeded mix of a whole data set, read as streams, never held in memory.

A store is written in the order of `data.transfer` (MNLI, then SNLI, then QQP), and a
shuffle buffer only mixes neighbours: 10,000 examples of a 1.3M-pair set leave every
epoch a curriculum, source by source (issue 25 measured 75/25/0% in the first tenth and
0.5/19/81% in the last). Here the data set is cut into about `SEGMENTS` contiguous
segments of equal length (each file or shard into its share of them), the segments are
put in a seeded order, and one record is taken from each in turn: at every point of the
epoch each segment is equally far through, so each source's share of any stretch is its
share of the whole, within a segment's length. A shuffle buffer after it then mixes the
neighbours. The order depends on the seed alone, so a resumed run skips exactly the
batches it had done. Reading a segment skips to its start through the file before it
(TFRecords have no index): about SEGMENTS / 2 / files passes over the data per epoch,
which costs little beside training on it (benchmarks/RESULTS.md).

    python -c "from distill import mixing; print(mixing.segments([10, 5], 3))"
"""
from __future__ import annotations

from typing import Callable

import distill  # noqa: F401  (selects tf-keras before TensorFlow loads)
import numpy as np
import tensorflow as tf

SEGMENTS = 256  # Segments per data set: its source shares hold within 1/256 of it.


def segments(counts: list[int], total_segments: int = SEGMENTS) -> list[tuple[int, int, int]]:
    """(part, start, count) segments of parts of `counts` records: each part cut into a
    number of segments proportional to its size (at least one), of about equal length."""
    total = max(1, sum(counts))
    out = []
    for part, n in enumerate(counts):
        pieces = min(n, max(1, round(total_segments * n / total))) if n else 0
        bounds = [n * j // pieces for j in range(pieces + 1)] if pieces else []
        out += [(part, a, b - a) for a, b in zip(bounds, bounds[1:])]
    return out


def mixed(parts: list[str], counts: list[int], open_part: Callable[[tf.Tensor], tf.data.Dataset],
          seed: int, total_segments: int = SEGMENTS) -> tf.data.Dataset:
    """(index, record) pairs of every record of `parts` once, in a uniform seeded mix.

    Args:
      parts: files (or other names `open_part` takes), read in order for the indices.
      counts: the records of each part.
      open_part: a part's name -> a dataset of its records, in order (a reader such as
        `tf.data.TFRecordDataset` alone: a function applied here would be instantiated
        once per segment, which costs more than reading; map the records afterwards).
      seed: fixes the order (one per epoch).

    `index` is a record's position in the parts read one after the other, so that a
    fixed subset (a subsample of the store) can be kept by index.
    """
    pieces = segments(counts, total_segments)
    order = np.random.default_rng(seed).permutation(len(pieces))
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    names = tf.constant([parts[pieces[i][0]] for i in order])
    starts = tf.constant([pieces[i][1] for i in order], tf.int64)
    sizes = tf.constant([pieces[i][2] for i in order], tf.int64)
    bases = tf.constant([offsets[pieces[i][0]] + pieces[i][1] for i in order], tf.int64)

    def segment(name, start, size, base):
        records = open_part(name).skip(start).take(size)
        return tf.data.Dataset.zip((tf.data.Dataset.range(base, base + size), records))

    table = tf.data.Dataset.from_tensor_slices((names, starts, sizes, bases))
    # Sequential (no parallel calls): one record from each segment in turn, in a fixed order.
    return table.interleave(segment, cycle_length=max(1, len(pieces)), block_length=1)
