"""node/store.py: what a node keeps in its data_dir survives a restart, a torn write ends a log."""

from __future__ import annotations

from pathlib import Path

from enclavenet.node.store import NodeStore, append_frame, read_frames


def test_signed_batches_are_kept_until_final_and_a_torn_file_is_dropped(tmp_path: Path) -> None:
    st = NodeStore(tmp_path, "n0")
    for h in (5, 6, 7):
        st.save_signed(h, bytes([h]) * 32, {"height": h, "mine": b"s" * 65})
    (tmp_path / "signed" / f"{8:016d}-{'08' * 32}.cbor").write_bytes(b"\xa2\x01")  # crash mid-save
    assert [o["height"] for o in st.load_signed(above=5)] == [6, 7]  # 5 is final; the torn one is gone
    assert sorted(p.name[:16] for p in (tmp_path / "signed").iterdir()) == [f"{6:016d}", f"{7:016d}"]
    st.forget_signed(6)
    assert [o["height"] for o in st.load_signed(above=0)] == [7]


def test_logs_stop_at_a_torn_last_frame_and_pending_is_taken_once(tmp_path: Path) -> None:
    st = NodeStore(tmp_path)
    st.append_pending([b"a", b"b"])
    st.append_pending([b"c"])
    with open(tmp_path / "pending.log", "ab") as fh:
        fh.write((100).to_bytes(4, "big") + b"torn")
    assert st.read_pending() == [b"a", b"b", b"c"]
    st.compact_pending([b"c"])  # what the node keeps after a restart (node/ingress.py)
    assert st.read_pending() == [b"c"]
    st.compact_pending([])
    assert st.read_pending() == []
    assert NodeStore(tmp_path / "none").read_pending() is None
    append_frame(tmp_path / "x.log", {"k": 1})
    assert list(read_frames(tmp_path / "x.log")) == [{"k": 1}]
    st.append_receipts({b"r": {"height": "0x1"}})
    st.append_receipts({"v": 2, "base": {"height": "0x2"}, "ids": [b"s"], "entries": [b"e"]})
    assert st.load_receipts() == [{b"r": {"height": "0x1"}}, {"v": 2, "base": {"height": "0x2"}, "ids": [b"s"], "entries": [b"e"]}]
    assert NodeStore(tmp_path / "none").load_receipts() is None
