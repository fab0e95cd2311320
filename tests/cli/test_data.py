"""zoo data: its parts, the convert part's options and one-line errors (the writers are the convert part's)."""

from __future__ import annotations

from tests.conftest import assert_one_line_error, zoo_in_process


def test_data_needs_a_part_and_names_them():
    assert_one_line_error(zoo_in_process("data"), "zoo data needs a part: check, convert")
    proc = zoo_in_process("data", "--help")
    assert proc.returncode == 0 and "zoo data check" in proc.stdout and "zoo data convert" in proc.stdout


def test_convert_needs_to_and_output_and_data(tmp_path):
    assert_one_line_error(zoo_in_process("data", "convert", "data=digits", f"output={tmp_path}"), "needs to=NAME")
    assert_one_line_error(zoo_in_process("data", "convert", "to=coco", f"output={tmp_path}"), "needs data=NAME")


def test_convert_refuses_a_layout_without_a_writer(tmp_path):
    proc = zoo_in_process("data", "convert", "data=digits", "to=digits", f"output={tmp_path / 'out'}")
    assert_one_line_error(proc, "digits")
    assert not (tmp_path / "out").exists()


def test_convert_writes_a_layout_through_the_cli(tmp_path):
    from tests.train.test_datacheck import coco_set

    proc = zoo_in_process("data", "convert", *coco_set(tmp_path), "to=yolo", f"output={tmp_path / 'yolo'}")
    assert proc.returncode == 0, proc.stderr
    assert any((tmp_path / "yolo").rglob("*.txt"))


def test_check_refuses_an_output_it_cannot_make_before_reading_the_data(tmp_path):
    """output= is checked first: the data set is not read (no table printed) when the folder cannot be made."""
    blocker = tmp_path / "a_file"
    blocker.write_text("mine")
    proc = zoo_in_process("data", "check", "data=digits", f"output={blocker / 'sub'}")
    assert_one_line_error(proc, "a_file")
    assert proc.stdout == "" and blocker.read_text() == "mine"
