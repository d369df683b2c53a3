"""preferred.json and the ONNX cache's notes written by several processes at once: no error, no
lost update, no empty read (issue 25: one shared temporary name and no lock lost 62 of 1,200)."""
import json
import os
import subprocess
import sys
import textwrap

from models.checkpoint import _read_preferred, set_preferred

WRITERS, EACH = 4, 30

CHILD = textwrap.dedent("""
    import sys
    from models.checkpoint import _preferred_file, read_json_object, set_preferred
    writer, each = sys.argv[1], int(sys.argv[2])
    empty = 0
    for i in range(each):
        set_preferred(f"net-{writer}-{i}", f"/weights/{writer}/{i}.pt")
        empty += not read_json_object(_preferred_file())
    print(empty)
""")


def test_writers_at_once_lose_no_update_and_readers_never_see_an_empty_file(tmp_path, monkeypatch):
    env = {**os.environ, "NAPARI_POLYP_HOME": str(tmp_path / "home")}
    children = [subprocess.Popen([sys.executable, "-c", CHILD, str(w), str(EACH)], env=env, text=True,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE) for w in range(WRITERS)]
    results = [child.communicate(timeout=300) for child in children]
    assert [child.returncode for child in children] == [0] * WRITERS, [err[-2000:] for _, err in results]
    assert [int(out) for out, _ in results] == [0] * WRITERS  # no reader saw an empty or half file
    monkeypatch.setenv("NAPARI_POLYP_HOME", env["NAPARI_POLYP_HOME"])
    prefs = _read_preferred()
    assert len(prefs) == WRITERS * EACH  # every update kept
    folder = tmp_path / "home" / "checkpoints"
    assert sorted(p.name for p in folder.iterdir()) == [".preferred.json.lock", "preferred.json"]  # no temporaries
    json.loads((folder / "preferred.json").read_text())


def test_a_broken_preferred_file_is_replaced_by_the_next_choice(tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_POLYP_HOME", str(tmp_path))
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "preferred.json").write_text("[1, 2")
    assert _read_preferred() == {}
    set_preferred("microaunet", tmp_path / "a.pt")
    assert _read_preferred() == {"microaunet": str((tmp_path / "a.pt").resolve())}
