"""steercore.tables: atomic TSV tables that read back what was written."""

import csv

import pytest

from steercore.core.errors import FileFormatError
from steercore.tables import MANIFEST
from steercore.tables import read_tsv as read_table
from steercore.tables import write_tsv


def read_tsv(path):
    with open(path, newline="") as f:
        return list(csv.reader(f, delimiter="\t"))


def test_write_tsv_header_rows_and_atomic(tmp_path):
    path = tmp_path / "sub" / "t.tsv"
    write_tsv(path, ("item", "score", "note"), [("a", 0.1, None), ("b", 2, "x y")])
    assert read_tsv(path) == [["item", "score", "note"], ["a", "0.1", ""], ["b", "2", "x y"]]
    with pytest.raises(ValueError):
        write_tsv(path, ("item", "score", "note"), [("c", 1.0)])
    # a failed write leaves the previous table and no temporary files
    assert read_tsv(path)[1] == ["a", "0.1", ""]
    assert [p.name for p in path.parent.iterdir()] == ["t.tsv"]


def test_tabs_quotes_and_newlines_in_a_prompt_read_back(tmp_path):
    path = tmp_path / "t.tsv"
    write_tsv(path, ("x", "y", "z"), [("a\tb", 'say "hi"', "two\nlines")])
    assert read_table(path, ("x", "y", "z")) == [{"x": "a\tb", "y": 'say "hi"', "z": "two\nlines"}]


def test_a_table_with_other_columns_is_refused_in_one_line(tmp_path):
    path = tmp_path / "manifest.tsv"
    write_tsv(path, ("a", "b"), [(1, 2)])
    with pytest.raises(FileFormatError, match=r"manifest.tsv: columns a, b; expected condition, method") as e:
        read_table(path, MANIFEST)
    assert "\n" not in str(e.value)
