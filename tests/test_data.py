"""Readers: each GLUE layout, transfer text, TFDS, and every refusal."""
import math

import pytest
import tensorflow_datasets as tfds

from conftest import needs_shared, write
from distill import data, tasks
from distill.errors import UserError


def rows(source):
    return [{k: (v.decode() if isinstance(v, bytes) else v.item()) for k, v in ex.items()}
            for ex in source.get_tfdata().as_numpy_iterator()]


# One labeled dev file per task in its original GLUE layout, and what must come out.
LAYOUTS = {
    "cola": ("dev.tsv", ["gj04\t1\t\tThe sailors rode the breeze clear of the rocks.",
                         "gj04\t0\t*\tThe more we study verbs, the crazier they get get."],
             [("The sailors rode the breeze clear of the rocks.", "", 1),
              ("The more we study verbs, the crazier they get get.", "", 0)]),
    "sst2": ("dev.tsv", ["sentence\tlabel", "it 's a charming journey . \t1"],
             [("it 's a charming journey . ", "", 1)]),
    "mrpc": ("dev.tsv", ["Quality\t#1 ID\t#2 ID\t#1 String\t#2 String",
                         "1\t1355540\t1355592\tHe said X.\tX, he said."],
             [("He said X.", "X, he said.", 1)]),
    "stsb": ("dev.tsv", ["index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1"
                         "\tsentence2\tscore",
                         "0\tmain-captions\tMSRvid\t2012test\t0000\tnone\tnone\tA man plays."
                         "\tA man is playing.\t4.750"],
             [("A man plays.", "A man is playing.", 4.75)]),
    "qqp": ("dev.tsv", ["id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate",
                        "201359\t303345\t303346\tWhy are you?\tWhy am I?\t0"],
            [("Why are you?", "Why am I?", 0)]),
    "mnli": ("dev_matched.tsv",
             ["index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse"
              "\tsentence1_parse\tsentence2_parse\tsentence1\tsentence2\tlabel1\tlabel2\tlabel3"
              "\tlabel4\tlabel5\tgold_label",
              "0\t63735\t63735n\tslate\t( a )\t( b )\t(ROOT a)\t(ROOT b)\tThe new rights are nice."
              "\tEveryone loves them.\tneutral\tentailment\tneutral\tneutral\tneutral\tneutral"],
             [("The new rights are nice.", "Everyone loves them.", 1)]),
    "qnli": ("dev.tsv", ["index\tquestion\tsentence\tlabel",
                         "0\tWhat came into force?\tThe law came into force.\tentailment"],
             [("What came into force?", "The law came into force.", 0)]),
    "rte": ("dev.tsv", ["index\tsentence1\tsentence2\tlabel",
                        "0\tDana Reeve died.\tChristopher Reeve had an accident.\tnot_entailment"],
            [("Dana Reeve died.", "Christopher Reeve had an accident.", 1)]),
    "wnli": ("dev.tsv", ["index\tsentence1\tsentence2\tlabel",
                         "0\tI stuck a pin through a carrot.\tThe carrot had a hole.\t1"],
             [("I stuck a pin through a carrot.", "The carrot had a hole.", 1)]),
}


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_each_glue_layout(tmp_path, name):
    task = tasks.get(name)
    filename, lines, expected = LAYOUTS[name]
    write(tmp_path / filename, lines)
    split = task.dev_splits[0].name
    source = data.get(f"glue_dir:{tmp_path}", task, split)
    got = rows(source)
    assert source.total_examples == len(expected)
    assert [(r["text_a"], r["text_b"], r["label"]) for r in got] == expected
    assert got[0]["id"].startswith(f"{name}/{split}/")


def test_test_split_keeps_glue_index_and_has_no_label(tmp_path):
    write(tmp_path / "test_matched.tsv", [
        "index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse"
        "\tsentence1_parse\tsentence2_parse\tsentence1\tsentence2",
        "7\t1\t1n\tslate\ta\tb\ta\tb\tPremise here.\tHypothesis here."])
    got = rows(data.get(f"glue_dir:{tmp_path}", tasks.get("mnli"), "test_matched"))
    assert got == [{"id": "mnli/test_matched/7", "text_a": "Premise here.",
                    "text_b": "Hypothesis here.", "label": -1}]


def test_the_glue_diagnostic_is_read_beside_the_mnli_directory(tmp_path):
    (tmp_path / "MNLI").mkdir()
    write(tmp_path / "diagnostic" / "diagnostic.tsv", [
        "index\tsentence1\tsentence2", "0\tThe cat sat.\tA cat sat.", "1\tNo.\tYes."])
    got = rows(data.get(f"glue_dir:{tmp_path / 'MNLI'}", tasks.get("mnli"), "test_ax"))
    assert [(r["id"], r["text_a"], r["label"]) for r in got] == [
        ("mnli/test_ax/0", "The cat sat.", -1), ("mnli/test_ax/1", "No.", -1)]
    assert tasks.get("mnli").split("test_ax").submission == "AX.tsv"


def test_crlf_files_are_read_like_lf(tmp_path):
    (tmp_path / "dev.tsv").write_bytes(b"sentence\tlabel\r\ngreat fun\t1\r\n")
    assert rows(data.get(f"glue_dir:{tmp_path}", tasks.get("sst2"), "validation"))[0][
        "text_a"] == "great fun"


@pytest.mark.parametrize("lines,message", [
    (["sentence\tlabel", "fine\t1", "no label here"], r"dev.tsv:3: row has 1 tab-separated"),
    (["sentence\tlabel", "fine\t7"], r"dev.tsv:2: label '7' is outside the label set"),
    (["sentence\tlabel", " \t1"], r"dev.tsv:2: text_a is empty"),
    (["text\tlabel", "fine\t1"], r"dev.tsv:1: header lacks column\(s\) \['sentence'\]"),
    (["sentence\tlabel"], r"holds no examples"),
])
def test_bad_rows_are_refused_with_file_and_line(tmp_path, lines, message):
    write(tmp_path / "dev.tsv", lines)
    with pytest.raises(UserError, match=message):
        data.get(f"glue_dir:{tmp_path}", tasks.get("sst2"), "validation")


def test_regression_label_must_be_numeric(tmp_path):
    filename, lines, _ = LAYOUTS["stsb"]
    write(tmp_path / filename, [lines[0], lines[1].replace("4.750", "high")])
    with pytest.raises(UserError, match=r"dev.tsv:2: label 'high' is not a number"):
        data.get(f"glue_dir:{tmp_path}", tasks.get("stsb"), "validation")


def test_invalid_utf8_names_the_line(tmp_path):
    (tmp_path / "dev.tsv").write_bytes(b"sentence\tlabel\nok\t1\nbad \xff byte\t0\n")
    with pytest.raises(UserError, match=r"dev.tsv:3: invalid UTF-8"):
        data.get(f"glue_dir:{tmp_path}", tasks.get("sst2"), "validation")


def test_missing_file_and_unknown_prefix(tmp_path):
    with pytest.raises(UserError, match=r"train.tsv does not exist"):
        data.get(f"glue_dir:{tmp_path}", tasks.get("rte"), "train")
    with pytest.raises(UserError, match=r"unknown prefix 'hub'"):
        data.get("hub:x", tasks.get("rte"))


def test_transfer_text_single_and_pairs(tmp_path):
    single = write(tmp_path / "news.txt", ["Stocks rise.", "Rain falls."])
    got = rows(data.get(f"text:{single}", tasks.get("sst2")))
    assert got == [{"id": "news.txt/1", "text_a": "Stocks rise.", "text_b": "", "label": -1},
                   {"id": "news.txt/2", "text_a": "Rain falls.", "text_b": "", "label": -1}]
    pairs = write(tmp_path / "pairs.txt", ["A man sings.\tA person sings."])
    got = rows(data.get(f"text:{pairs}", tasks.get("stsb")))
    assert (got[0]["text_a"], got[0]["text_b"]) == ("A man sings.", "A person sings.")
    assert math.isnan(got[0]["label"])


@pytest.mark.parametrize("lines,task,message", [
    (["one", "", "three"], "sst2", r"news.txt:2: empty line"),
    (["a\tb"], "sst2", r"news.txt:1: expected one text without tabs"),
    (["only a"], "rte", r"news.txt:1: rte is a sentence-pair task"),
])
def test_bad_transfer_text(tmp_path, lines, task, message):
    path = write(tmp_path / "news.txt", lines)
    with pytest.raises(UserError, match=message):
        data.get(f"text:{path}", tasks.get(task))


def test_limit_and_concatenation_keep_order(tmp_path):
    a = write(tmp_path / "a.txt", ["a1", "a2", "a3"])
    b = write(tmp_path / "b.txt", ["b1"])
    both = data.concatenate([data.get(f"text:{a}", tasks.get("sst2"), limit=2),
                             data.get(f"text:{b}", tasks.get("sst2"))])
    assert both.total_examples == 3
    assert [r["id"] for r in rows(both)] == ["a.txt/1", "a.txt/2", "b.txt/1"]


def test_heldout_split_is_seeded_and_disjoint(tmp_path):
    path = write(tmp_path / "t.txt", [f"text {i}" for i in range(50)])
    source = data.get(f"text:{path}", tasks.get("sst2"))
    train, val = data.heldout_split(source, 0.2, seed=3)
    train_ids = {r["id"] for r in rows(train)}
    val_ids = {r["id"] for r in rows(val)}
    assert (len(train_ids), len(val_ids)) == (40, 10) == (train.total_examples, val.total_examples)
    assert not train_ids & val_ids
    assert val_ids == {r["id"] for r in rows(data.heldout_split(source, 0.2, seed=3)[1])}
    assert val_ids != {r["id"] for r in rows(data.heldout_split(source, 0.2, seed=4)[1])}


def test_tfds_reader_under_mock_data():
    with tfds.testing.mock_data(num_examples=6):
        source = data.get("tfds", tasks.get("qnli"), "validation")
        got = rows(source)
    assert source.total_examples == 6 == len(got)
    assert all(r["id"].startswith("qnli/validation/") and r["text_b"] for r in got)
    assert {r["label"] for r in got} <= {0, 1}


def test_real_sst2_and_rte_from_shared():
    sst2 = data.get(f"glue_dir:{needs_shared('glue', 'SST-2')}", tasks.get("sst2"), "validation")
    rte = data.get(f"glue_dir:{needs_shared('glue', 'RTE')}", tasks.get("rte"), "train")
    assert (sst2.total_examples, rte.total_examples) == (872, 2490)
    labels = [r["label"] for r in rows(rte)]
    assert set(labels) == {0, 1}
    assert all(r["text_b"] for r in rows(rte)[:20])
