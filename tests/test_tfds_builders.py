"""TFDS's own builders, run for real offline: only the download is replaced by local archives.

`download_and_prepare` then extracts, parses and writes the dataset with TFDS's
code, and the pipeline reads it back as `tfds.load` would; so a dependency that
TFDS needs but does not declare (importlib_resources, for one) fails here, where
`tfds.testing.mock_data` would never reach the builder.
"""
import io
import tarfile
import zipfile

import pytest

from conftest import write
from distill import data, tasks


@pytest.fixture
def local_downloads(monkeypatch):
    """url -> local file: TFDS's download manager fetches from this mapping instead of the web."""
    import promise
    import tensorflow_datasets as tfds
    from etils import epath

    files = {}

    def fetch(self, resource):
        url = getattr(resource, "url", resource)
        if url not in files:
            raise ConnectionError(f"no network in this test (asked for {url})")
        return promise.Promise.resolve(epath.Path(files[url]))

    monkeypatch.setattr(tfds.download.DownloadManager, "_download_or_get_cache", fetch)
    return files


def rows(source):
    return [(ex["id"].decode(), ex["text_a"].decode(), ex["text_b"].decode(), int(ex["label"]))
            for ex in source.get_tfdata().as_numpy_iterator()]


def test_glue_builder_prepares_the_glue_files(tmp_path, local_downloads):
    train = ["sentence\tlabel", "a fine film \t1", "a dull , long film \t0", "it 's good \t1"]
    dev = ["sentence\tlabel", "not bad at all \t1"]
    test = ["index\tsentence", "0\tan odd film "]
    archive = tmp_path / "SST-2.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for name, lines in (("train.tsv", train), ("dev.tsv", dev), ("test.tsv", test)):
            z.writestr(f"SST-2/{name}", "\n".join(lines) + "\n")
    local_downloads["https://dl.fbaipublicfiles.com/glue/data/SST-2.zip"] = str(archive)
    task = tasks.get("sst2")
    glue_dir = tmp_path / "SST-2"
    for name, lines in (("train.tsv", train), ("dev.tsv", dev)):
        write(glue_dir / name, lines)

    for split in ("train", "validation"):
        from_tfds = data.get(f"tfds:{tmp_path / 'tfds'}", task, split)
        from_files = data.get(f"glue_dir:{glue_dir}", task, split)
        assert from_tfds.total_examples == from_files.total_examples
        # Same texts and labels; TFDS numbers rows by its own `idx`.
        assert sorted(r[1:] for r in rows(from_tfds)) == sorted(r[1:] for r in rows(from_files))
    test_rows = rows(data.get(f"tfds:{tmp_path / 'tfds'}", task, "test"))
    assert test_rows == [("sst2/test/0", "an odd film ", "", -1)]


def test_imdb_builder_prepares_the_review_archive(tmp_path, local_downloads):
    reviews = {"aclImdb/train/pos/0_9.txt": "A fine film. I loved it!",
               "aclImdb/train/neg/1_2.txt": "Dull.<br />Too long.",
               "aclImdb/train/unsup/2_0.txt": "Never saw it. My brother did.",
               "aclImdb/test/pos/3_8.txt": "Great.", "aclImdb/test/neg/4_1.txt": "Bad."}
    archive = tmp_path / "aclImdb_v1.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for name, text in reviews.items():
            blob = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    local_downloads["http://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz"] = str(archive)

    source = data.tfds_source("imdb_reviews/plain_text", "unsupervised", ("text",),
                              tasks.get("sst2"), data_dir=str(tmp_path / "tfds"))
    assert rows(source) == [("imdb_reviews/plain_text/unsupervised/0",
                             "Never saw it. My brother did.", "", -1)]
    train = data.tfds_source("imdb_reviews/plain_text", "train", ("text",), tasks.get("sst2"),
                             data_dir=str(tmp_path / "tfds"))
    assert sorted(r[1] for r in rows(train)) == ["A fine film. I loved it!", "Dull.<br />Too long."]


def test_an_unreachable_dataset_is_one_clear_error(tmp_path, local_downloads):
    from distill.errors import UserError

    with pytest.raises(UserError, match=r"TFDS dataset glue/rte split train could not be loaded "
                                        r".*no network in this test"):
        data.get(f"tfds:{tmp_path / 'tfds'}", tasks.get("rte"), "train")
