"""Sequence datasets: file/CSV readers, leave-one-out with prefix expansion, bad input, registry."""

from __future__ import annotations

import pytest
import torch

from contrastkit import datasets
from contrastkit.datasets.sequence import (PrefixBatches, from_sequences, leave_one_out,
                                           read_interactions_csv, read_sequence_file)
from conftest import require_dataset


def test_leave_one_out_prefixes_and_eval_inputs():
    data = from_sequences([[1, 2, 3, 4, 5], [6, 7, 8], [9, 10, 11, 12, 13, 14]], num_items=14)
    sp = leave_one_out(data, max_len=3)
    # training: targets at positions 1..n-3 -> user0: 2,3 ; user1: none ; user2: 10,11,12
    assert sp.num_train == 2 + 0 + 3
    hist, n, tgt = sp.train_batch(torch.arange(sp.num_train))
    assert tgt.tolist() == [2, 3, 10, 11, 12]
    assert n.tolist() == [1, 2, 1, 2, 3]
    assert hist.tolist() == [[1, 0, 0], [1, 2, 0], [9, 0, 0], [9, 10, 0], [9, 10, 11]]
    # validation = second-to-last; test = last, its history contains the validation item
    assert sp.valid.targets.tolist() == [4, 7, 13]
    assert sp.test.targets.tolist() == [5, 8, 14]
    assert sp.valid.histories.tolist() == [[1, 2, 3], [6, 0, 0], [10, 11, 12]]  # last 3 items
    assert sp.test.histories.tolist() == [[2, 3, 4], [6, 7, 0], [11, 12, 13]]
    assert sp.test.lengths.tolist() == [3, 2, 3]


def test_truncation_keeps_the_most_recent_items():
    seq = list(range(1, 61))
    sp = leave_one_out(from_sequences([seq]), max_len=50)
    assert sp.test.histories[0].tolist() == list(range(10, 60))
    hist, n, tgt = sp.train_batch(torch.tensor([sp.num_train - 1]))
    assert tgt.item() == 58 and n.item() == 50 and hist[0].tolist() == list(range(8, 58))


def test_short_users_are_skipped_and_counted():
    data = from_sequences([[1], [2, 3], [1, 2, 3, 4]])
    sp = leave_one_out(data)
    assert sp.skipped_users == 2 and len(sp.test) == 1
    with pytest.raises(ValueError, match="3 interactions"):
        leave_one_out(from_sequences([[1], [2, 3]]))


@pytest.mark.parametrize("seqs, kw, match", [
    ([], {}, "at least one user"),
    ([[1, 2], []], {}, "empty sequence"),
    ([[1, 0, 2]], {}, r"\[1, num_items"),
    ([[1, -3]], {}, r"\[1, num_items"),
    ([[1, 9]], {"num_items": 5}, "num_items=5"),
])
def test_bad_sequences_raise(seqs, kw, match):
    with pytest.raises(ValueError, match=match):
        from_sequences(seqs, **kw)


def test_bad_args():
    data = from_sequences([[1, 2, 3, 4]])
    with pytest.raises(ValueError, match="max_len"):
        leave_one_out(data, max_len=0)
    with pytest.raises(TypeError, match="data"):
        leave_one_out([[1, 2, 3]])
    with pytest.raises(TypeError, match="integer item ids"):
        from_sequences([[1, "a"]])
    with pytest.raises(ValueError, match="batch_size"):
        PrefixBatches(data.split(), 0)


def test_read_sequence_file(tmp_path):
    p = tmp_path / "Mine.txt"
    p.write_text("1 3 1 2 4\n2 2 3 4\n")
    d = read_sequence_file(p)
    assert d.name == "mine" and d.users == [1, 2] and d.num_items == 4
    assert d.sequences == [[3, 1, 2, 4], [2, 3, 4]]
    (tmp_path / "bad.txt").write_text("1 2 x\n")
    with pytest.raises(ValueError, match="line 1"):
        read_sequence_file(tmp_path / "bad.txt")
    (tmp_path / "empty_user.txt").write_text("1 2 3\n7\n")
    with pytest.raises(ValueError, match="user 7 has an empty sequence"):
        read_sequence_file(tmp_path / "empty_user.txt")
    with pytest.raises(FileNotFoundError, match="path"):
        read_sequence_file(tmp_path / "nope.txt")


def test_read_csv_orders_by_time_and_reindexes(tmp_path):
    p = tmp_path / "log.csv"
    p.write_text("user,item,ts\nu1,apple,30\nu1,pear,10\nu2,fig,5\nu1,fig,20\nu2,apple,7\n")
    d = read_interactions_csv(p, user_col="user", item_col="item", time_col="ts")
    assert d.users == ["u1", "u2"]
    names = [[d.item_ids[i - 1] for i in s] for s in d.sequences]
    assert names == [["pear", "fig", "apple"], ["fig", "apple"]]
    assert d.num_items == 3
    q = tmp_path / "noheader.csv"
    q.write_text("1,10,3\n1,11,1\n")
    assert read_interactions_csv(q).sequences == [[1, 2]]
    (tmp_path / "badts.csv").write_text("user,item,ts\n1,2,yesterday\n")
    with pytest.raises(ValueError, match="timestamp"):
        read_interactions_csv(tmp_path / "badts.csv")


def test_prefix_batches_cover_every_prefix_once():
    data = from_sequences([list(range(1, 12)), list(range(3, 9))])
    sp = data.split()
    loader = PrefixBatches(sp, 3, seed=1)
    targets = torch.cat([b["target"] for b in loader])
    assert sorted(targets.tolist()) == sorted(sp.items[sp.train_end].tolist())
    assert len(loader) == (sp.num_train + 2) // 3


def test_registry_ids_case_insensitive():
    for name, cid in (("Beauty", "beauty"), ("SPORTS", "sports"), ("toys", "toys"),
                      ("Yelp", "yelp"), ("ML-100K", "ml-100k"), ("ml_100k", "ml-100k"),
                      ("Taobao", "taobao")):
        assert datasets.canonical_name(name) == cid
    assert {s.id for s in datasets.registered("sequence")} >= {
        "beauty", "sports", "toys", "yelp", "ml-100k", "taobao"}


def test_beauty_statistics_match_the_paper():
    require_dataset("beauty")
    d = datasets.load("beauty")
    assert (d.num_users, d.num_items, d.num_interactions) == (22363, 12101, 198502)
    sp = d.split()
    assert sp.num_train == 198502 - 3 * 22363 and sp.skipped_users == 0
    assert len(sp.valid) == 22363


def test_read_csv_errors_name_the_file_line(tmp_path):
    p = tmp_path / "gaps.csv"
    p.write_text("user,item,ts\n\n1,2,5\n\n1,3,soon\n")  # blank lines: the row index was off
    with pytest.raises(ValueError, match=r"gaps.csv line 5: timestamp must be numeric, got 'soon'"):
        read_interactions_csv(p)
    p.write_text("user,item,ts\n1,2,5\n1,3,nan\n")  # NaN made the time order undefined
    with pytest.raises(ValueError, match=r"gaps.csv line 3: timestamp must be a finite number"):
        read_interactions_csv(p)
    p.write_text("1,2,5\n\n1,3\n")
    with pytest.raises(ValueError, match=r"gaps.csv line 3: expected at least 3 columns, got 2"):
        read_interactions_csv(p)
