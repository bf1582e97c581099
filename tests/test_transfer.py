"""The transfer set: recipes, sampling, de-duplication and the contamination guard."""
import re

import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from conftest import needs_shared, write
from distill import config, tasks, transfer
from distill.errors import UserError

SST2_DEV = ["it 's a charming and -lrb- often -rrb- affecting journey . ",
            "unflinchingly bleak and desperate "]
SST2_TEST = ["a gorgeous , witty , seductive movie ."]


def sst2_dir(tmp_path):
    directory = tmp_path / "SST-2"
    write(directory / "train.tsv", ["sentence\tlabel", "a fine film\t1", "a dull film\t0"])
    write(directory / "dev.tsv", ["sentence\tlabel", *(f"{s}\t1" for s in SST2_DEV)])
    write(directory / "test.tsv", ["index\tsentence", *(f"{i}\t{s}" for i, s in enumerate(SST2_TEST))])
    return directory


def build(tmp_path, directory, entries, task="sst2", *extra):
    cfg = config.load(None, [f"task={task}", f"data.labeled=glue_dir:{directory}",
                             f"data.transfer={entries!r}", *extra])
    source, report = transfer.build(cfg.data, tasks.get(task), progress=False)
    rows = [{k: v.decode() if isinstance(v, bytes) else v for k, v in ex.items()}
            for ex in source.get_tfdata().as_numpy_iterator()]
    assert len(rows) == source.total_examples
    return rows, report


def test_normalize_matches_tokenized_glue_text_to_raw_text():
    assert transfer.normalize(SST2_DEV[0]) == transfer.normalize(
        "It's a charming and (often) affecting journey.") == "itsacharmingandoftenaffectingjourney"


def test_guard_drops_dev_and_test_text_and_duplicates_on_a_single_sentence_task(tmp_path):
    directory = sst2_dir(tmp_path)
    text = write(tmp_path / "reviews.txt", [
        "It's a charming and (often) affecting journey.",  # dev, as a review site writes it
        "A gorgeous, witty, seductive movie!",  # test
        "a new sentence", "another one", "a new sentence",  # an exact duplicate
        "Unflinchingly bleak and desperate."])  # dev
    rows, report = build(tmp_path, directory, ["labeled:train", f"text:{text}"])
    assert [r["text_a"] for r in rows] == ["a fine film", "a dull film", "a new sentence",
                                           "another one"]
    assert report["sources"][1] == {"source": f"text:{text}", "read": 6, "sampled": 6,
                                    "after_duplicates": 5, "contaminated": 3, "in_heldout": 0,
                                    "kept": 2, "guarded": True}
    assert report["sources"][0]["guarded"] is False  # D_L's train split: never guarded.
    assert report["contamination_guard"] is True


def test_guard_on_a_pair_task_checks_either_side_and_the_pair(tmp_path):
    directory = tmp_path / "RTE"
    header = "index\tsentence1\tsentence2\tlabel"
    write(directory / "train.tsv", [header, "0\tA man sleeps.\tA person rests.\tentailment"])
    write(directory / "dev.tsv", [header, "0\tThe cat sat.\tA dog barked.\tnot_entailment"])
    write(directory / "test.tsv", ["index\tsentence1\tsentence2", "0\tIt rained.\tThe road is wet."])
    pairs = write(tmp_path / "pairs.txt", [
        "the cat sat\tSomething new.",  # dev premise as text_a
        "Something else.\tA DOG BARKED",  # dev hypothesis as text_b
        "It rained!\tThe road is wet.",  # the test pair
        "Birds sing.\tBirds make sounds."])  # clean
    rows, report = build(tmp_path, directory, [f"text:{pairs}"], "rte")
    assert [(r["text_a"], r["text_b"]) for r in rows] == [("Birds sing.", "Birds make sounds.")]
    assert report["sources"][0]["contaminated"] == 3


def qqp_dir(tmp_path, test_repeats_train=True):
    """Shaped like QQP: questions of train recur in test (GLUE's QQP test shares ~390,000)."""
    directory = tmp_path / "QQP"
    test = (["0\tHow do I learn Python?\tIs Python easy?", "1\tWhat is tea?\tWhat is coffee?"]
            if test_repeats_train else ["0\tIs it late?\tIs it early?"])
    header = "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate"
    write(directory / "train.tsv", [header, "0\t1\t2\tHow do I learn Python?\tWhat is Python?\t0",
                                    "1\t3\t4\tHow old is the moon?\tHow old is the Moon?\t1",
                                    "2\t5\t6\tWhat is tea?\tWhy is the sky blue?\t0"])
    write(directory / "dev.tsv", [header, "0\t7\t8\tWhat is rain?\tWhy is it wet?\t0"])
    write(directory / "test.tsv", ["id\tquestion1\tquestion2", *test])
    return directory


def test_the_guard_never_filters_the_tasks_own_training_split(tmp_path):
    directory = qqp_dir(tmp_path)
    external = write(tmp_path / "pairs.txt", ["How do I learn Python?\tShould I?",  # test side
                                              "What is a cat?\tWhat is a dog?"])
    rows, report = build(tmp_path, directory, ["labeled:train", f"text:{external}"], "qqp")
    # Both train pairs whose questions recur in test stay: train is D_L's own training data.
    assert [r["text_a"] for r in rows] == ["How do I learn Python?", "How old is the moon?",
                                           "What is tea?", "What is a cat?"]
    assert [(r["contaminated"], r["kept"]) for r in report["sources"]] == [(0, 3), (1, 1)]


def test_an_external_source_loses_what_the_carved_heldout_split_holds(tmp_path):
    directory = qqp_dir(tmp_path, test_repeats_train=False)
    probe = config.load(None, ["task=qqp", f"data.labeled=glue_dir:{directory}",
                               "data.heldout_fraction=0.34"])
    from distill import data

    heldout = [ex for ex in data.labeled(probe.data, tasks.get("qqp"), data.HELDOUT)
               .get_tfdata().as_numpy_iterator()]
    assert len(heldout) == 1
    planted = f"{heldout[0]['text_a'].decode()}\t{heldout[0]['text_b'].decode()}"
    external = write(tmp_path / "planted.txt", [planted, "What is a cat?\tWhat is a dog?"])
    rows, report = build(tmp_path, directory, ["labeled:train", f"text:{external}"], "qqp",
                         "data.heldout_fraction=0.34")
    assert report["sources"][0]["kept"] == 2  # labeled:train leaves the heldout example out.
    assert report["sources"][1]["in_heldout"] == 1 and report["sources"][1]["kept"] == 1
    assert planted.split("\t")[0] not in [r["text_a"] for r in rows[2:]]


def test_duplicates_are_found_by_the_normalised_text_across_sources(tmp_path):
    directory = sst2_dir(tmp_path)
    text = write(tmp_path / "more.txt", ["A FINE FILM!", "a brand new line", "a brand-new line"])
    rows, report = build(tmp_path, directory, ["labeled:train", f"text:{text}"])
    assert [r["text_a"] for r in rows] == ["a fine film", "a dull film", "a brand new line"]
    assert rows[0]["label"] == 1  # The first occurrence, D_L's labeled one, stays.
    assert report["sources"][1]["after_duplicates"] == 1


def test_a_source_that_is_all_dev_text_is_refused(tmp_path):
    directory = sst2_dir(tmp_path)
    copy = write(tmp_path / "copy.txt", [s.upper() for s in SST2_DEV])
    with pytest.raises(UserError, match=r"data.transfer 'text:.*copy.txt': all 2 of its examples "
                                        r"occur in the task's dev or test sets"):
        build(tmp_path, directory, ["labeled:train", f"text:{copy}"])


@pytest.mark.parametrize("entry", ["labeled:validation", "labeled:test", "text:{dir}/dev.tsv"])
def test_dev_and_test_are_refused_as_transfer_data(tmp_path, entry):
    directory = sst2_dir(tmp_path)
    entry = entry.format(dir=directory)
    with pytest.raises(UserError, match="transfer data must not hold dev or test text"):
        build(tmp_path, directory, [entry])
    rows, report = build(tmp_path, directory, ["labeled:validation"], "sst2",
                         "data.contamination_guard=false")  # The opt-out, recorded.
    assert len(rows) == 2 and report["contamination_guard"] is False


def test_guard_catches_real_sst2_dev_sentences_written_as_a_review_site_writes_them(tmp_path):
    """Rotten Tomatoes snippets are SST-2's raw text: the guard must see through the
    tokenization ("it 's", "-lrb-", spaced punctuation)."""
    glue = needs_shared("glue", "SST-2")
    agnews = needs_shared("unlabeled", "agnews.txt")
    dev = [line.split("\t")[0] for line in open(glue / "dev.tsv").read().splitlines()[1:]]

    def detokenize(s):
        s = s.replace("-lrb- ", "(").replace(" -rrb-", ")").replace(" n't", "n't")
        s = re.sub(r" ([.,!?;:'])", r"\1", s.strip())
        return s[0].upper() + s[1:]

    planted = [detokenize(s) for s in dev[::10]]  # 88 of the 872 dev sentences
    news = open(agnews, encoding="utf-8").read().splitlines()[:2000]
    mixed = write(tmp_path / "mixed.txt", [x for pair in zip(news, planted) for x in pair]
                  + news[len(planted):])
    directory = tmp_path / "SST-2"
    write(directory / "train.tsv", ["sentence\tlabel", "a fine film\t1"])
    write(directory / "dev.tsv", (glue / "dev.tsv").read_text().splitlines())
    rows, report = build(tmp_path, directory, [f"text:{mixed}"])
    assert report["sources"][0]["contaminated"] == len(planted)
    kept = {r["text_a"] for r in rows}
    assert not kept & set(planted) and len(kept) == report["sources"][0]["kept"]


def test_sample_and_cap_are_seeded_and_mix_sources(tmp_path):
    directory = sst2_dir(tmp_path)
    text = write(tmp_path / "t.txt", [f"sentence number {i}" for i in range(100)])
    entry = {"source": f"text:{text}", "sample": 10, "seed": 1}
    first, _ = build(tmp_path, directory, [entry])
    again, _ = build(tmp_path, directory, [entry])
    other, _ = build(tmp_path, directory, [{**entry, "seed": 2}])
    assert first == again and first != other and len(first) == 10
    numbers = [int(r["text_a"].split()[-1]) for r in first]
    assert numbers == sorted(numbers)  # A subset, in the source's order.
    rows, report = build(tmp_path, directory, [{"source": f"text:{text}", "max_examples": 7},
                                               "labeled:train"])
    assert [r["text_a"] for r in rows][6:] == ["sentence number 6", "a fine film", "a dull film"]
    assert [s["sampled"] for s in report["sources"]] == [7, 2]


def test_bad_entries_are_refused_by_name(tmp_path):
    directory = sst2_dir(tmp_path)
    for entry, message in [
            ("recipe:books", "unknown recipe 'books'"),
            ({"source": "labeled:train", "smaple": 3}, r"unknown option\(s\) \['smaple'\]"),
            ("tfds:snli:train", "expected tfds:NAME:SPLIT:FIELDS"),
            ("web:http://x", "must start with 'labeled:', 'text:', 'tfds:' or 'recipe:'")]:
        with pytest.raises(UserError, match=message):
            build(tmp_path, directory, [entry])
    with pytest.raises(UserError, match="rte is a sentence-pair task; expected 2 text field"):
        build(tmp_path, directory, ["tfds:imdb_reviews/plain_text:train:text"], "rte")


def _fake_tfds(texts: dict):
    """`tfds.testing.mock_data`'s hook: each dataset serves the given texts (a field -> list of
    strings mapping per dataset name)."""
    def as_dataset(self, split, *args, **kwargs):
        fields = texts[self.name]
        n = len(next(iter(fields.values())))
        columns = {k: tf.constant(v) for k, v in fields.items()}
        for name, feature in self.info.features.items():
            if name not in columns:
                columns[name] = tf.zeros([n], feature.dtype)
        return tf.data.Dataset.from_tensor_slices(columns)
    return as_dataset


def test_nli_star_takes_the_pairs_of_snli_mnli_and_qqp(tmp_path):
    directory = tmp_path / "RTE"
    header = "index\tsentence1\tsentence2\tlabel"
    write(directory / "train.tsv", [header, "0\tA man sleeps.\tA person rests.\tentailment"])
    write(directory / "dev.tsv", [header, "0\tThe cat sat.\tA dog barked.\tnot_entailment"])
    served = {
        "snli": {"premise": ["A boy runs.", "A boy runs.", "The cat sat."],
                 "hypothesis": ["A child moves.", "A child moves.", "It is a cat."]},
        "multi_nli": {"premise": ["Prices rose."], "hypothesis": ["Costs went up."]},
        "glue": {"question1": ["How do I cook?"], "question2": ["What is cooking?"]},
    }
    with tfds.testing.mock_data(as_dataset_fn=_fake_tfds(served)):
        rows, report = build(tmp_path, directory, ["recipe:nli_star"], "rte")
    assert [(r["text_a"], r["text_b"]) for r in rows] == [
        ("A boy runs.", "A child moves."), ("Prices rose.", "Costs went up."),
        ("How do I cook?", "What is cooking?")]
    assert [r["id"] for r in rows] == ["snli/train/0", "multi_nli/train/0", "glue/qqp/train/0"]
    assert {r["label"] for r in rows} == {-1}  # Labels dropped.
    snli = report["sources"][0]
    assert (snli["source"], snli["read"], snli["after_duplicates"], snli["contaminated"],
            snli["kept"]) == ("tfds:snli:train:premise,hypothesis", 3, 2, 1, 1)


def test_movie_reviews_star_splits_reviews_into_sentences(tmp_path):
    directory = sst2_dir(tmp_path)
    reviews = ["Great film. I loved it!<br /><br />The cast was superb... 10/10",
               "Unflinchingly bleak and desperate. Great film."]
    with tfds.testing.mock_data(as_dataset_fn=_fake_tfds({"imdb_reviews": {"text": reviews}})):
        rows, report = build(tmp_path, directory, ["recipe:movie_reviews_star"])
    # The train split's sentences; test and unsupervised serve the same reviews again,
    # so all their sentences are duplicates. The dev sentence is dropped.
    assert [r["text_a"] for r in rows] == ["Great film.", "I loved it!",
                                           "The cast was superb... 10/10"]
    assert rows[1]["id"] == "imdb_reviews/plain_text/train/0/s1"
    assert [(s["read"], s["kept"]) for s in report["sources"]] == [(5, 3), (5, 0), (5, 0)]
    assert report["sources"][0]["contaminated"] == 1


def test_the_report_says_when_the_guard_was_off():
    from students import report

    row = {"source": "labeled:validation", "read": 872, "sampled": 872, "after_duplicates": 872,
           "contaminated": 0, "kept": 872}
    off = "\n".join(report._transfer_lines({"contamination_guard": False, "sources": [row]}))
    assert "**contamination guard: OFF**" in off
    assert "| `labeled:validation` | 872 | 872 | 872 | 0 | 0 | 872 |" in off
    on = "\n".join(report._transfer_lines({"contamination_guard": True, "sources": [row]}))
    assert "contamination guard: on" in on and "OFF" not in on
