"""dlcore.writers: CRC-32C, TensorBoard event files, JSON lines (progress: test_progress.py)."""
from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from dlcore import writers


# --- CRC-32C --------------------------------------------------------------------------------------

def test_crc32c_check_value():
    assert writers.crc32c(b"123456789") == 0xE3069283  # the standard CRC-32C check value
    assert writers.crc32c(b"") == 0
    # RFC 3720 (iSCSI) test vectors: 32 zero bytes and 32 0xFF bytes
    assert writers.crc32c(bytes(32)) == 0x8A9136AA
    assert writers.crc32c(b"\xff" * 32) == 0x62A8AB43


# --- TensorBoard ----------------------------------------------------------------------------------

def event_classes():
    """tensorflow's Event/Summary messages (only the fields dlcore writes), built independently."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
    F = descriptor_pb2.FieldDescriptorProto
    fd = descriptor_pb2.FileDescriptorProto(name="dlcore_test_event.proto", package="dlcoretest")
    value = fd.message_type.add(name="Value")
    value.field.add(name="tag", number=1, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    value.field.add(name="simple_value", number=2, type=F.TYPE_FLOAT, label=F.LABEL_OPTIONAL)
    summary = fd.message_type.add(name="Summary")
    summary.field.add(name="value", number=1, type=F.TYPE_MESSAGE, label=F.LABEL_REPEATED,
                      type_name=".dlcoretest.Value")
    event = fd.message_type.add(name="Event")
    event.field.add(name="wall_time", number=1, type=F.TYPE_DOUBLE, label=F.LABEL_OPTIONAL)
    event.field.add(name="step", number=2, type=F.TYPE_INT64, label=F.LABEL_OPTIONAL)
    event.field.add(name="file_version", number=3, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    event.field.add(name="summary", number=5, type=F.TYPE_MESSAGE, label=F.LABEL_OPTIONAL,
                    type_name=".dlcoretest.Summary")
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fd)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("dlcoretest.Event"))


def records(raw: bytes) -> list[bytes]:
    out, pos = [], 0
    while pos < len(raw):
        (n,) = struct.unpack("<Q", raw[pos:pos + 8])
        out.append(raw[pos + 12:pos + 12 + n])
        pos += 16 + n
    assert pos == len(raw)
    return out


@pytest.fixture
def event_file(tmp_path):
    w = writers.TensorBoardWriter(tmp_path / "tb")
    w.scalars(1, {"train/loss": 2.5, "test/accuracy": 0.125})
    w.scalars(300, {"train/loss": 0.3333, "note": "text is skipped", "count": 7})
    w.scalars(2 ** 40, {"train/loss": -1e-3})
    w.close()
    return w.path


def test_tensorboard_round_trip(event_file):
    assert event_file.name.startswith("events.out.tfevents.")
    got = writers.read_tensorboard(event_file)
    assert [(s, t) for s, t, _ in got] == [(1, "train/loss"), (1, "test/accuracy"),
                                          (300, "train/loss"), (300, "count"),
                                          (2 ** 40, "train/loss")]
    values = [v for _, _, v in got]
    assert values == pytest.approx([2.5, 0.125, 0.3333, 7.0, -1e-3], rel=1e-6)


def test_tensorboard_file_decodes_with_protobuf(event_file):
    Event = event_classes()
    events = [Event.FromString(r) for r in records(event_file.read_bytes())]
    assert events[0].file_version == "brain.Event:2"
    assert events[0].wall_time > 1.6e9
    assert [e.step for e in events[1:]] == [1, 300, 2 ** 40]
    assert [(v.tag, v.simple_value) for v in events[1].summary.value] == \
        [("train/loss", 2.5), ("test/accuracy", 0.125)]
    assert events[2].summary.value[0].simple_value == pytest.approx(0.3333, rel=1e-6)


def test_tensorboard_record_framing(event_file):
    raw = event_file.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    crc = writers.crc32c(raw[:8])
    masked = (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF  # TFRecord's masked CRC
    assert struct.unpack("<I", raw[8:12])[0] == masked
    crc = writers.crc32c(raw[12:12 + n])
    assert struct.unpack("<I", raw[12 + n:16 + n])[0] == \
        (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def test_tensorboard_numpy_and_jax_scalars_are_written(tmp_path):
    import jax.numpy as jnp
    w = writers.TensorBoardWriter(tmp_path)
    w.scalars(5, {"a": np.float32(0.5), "b": np.float64(1.5), "c": np.int32(3), "d": True,
                  "e": np.array(0.25, np.float32), "f": jnp.float32(4.0),
                  "vector": np.zeros(3), "one": np.ones(1), "s": "x", "none": None})
    w.close()
    got = {t: v for _, t, v in writers.read_tensorboard(w.path)}
    assert got == {"a": 0.5, "b": 1.5, "c": 3.0, "d": 1.0, "e": 0.25, "f": 4.0}


def test_tensorboard_flipped_byte_raises(event_file):
    raw = event_file.read_bytes()
    n0 = struct.unpack("<Q", raw[:8])[0]
    second = 16 + n0  # start of the first scalar record
    for where, message in ((second + 12 + 5, "bad data CRC"), (second + 1, "bad length CRC"),
                           (len(raw) - 1, "bad data CRC")):
        bad = bytearray(raw)
        bad[where] ^= 0x01
        event_file.write_bytes(bytes(bad))
        with pytest.raises(ValueError, match=message):
            writers.read_tensorboard(event_file)


def test_tensorboard_two_writers_append(tmp_path):
    w = writers.TensorBoardWriter(tmp_path)
    w.scalars(1, {"x": 1.0})
    w.close()
    w2 = writers.TensorBoardWriter(tmp_path)
    w2.scalars(2, {"x": 2.0})
    w2.close()
    got = [(s, v) for p in sorted(tmp_path.iterdir()) for s, _, v in writers.read_tensorboard(p)]
    assert got == [(1, 1.0), (2, 2.0)]


# --- JSON lines -----------------------------------------------------------------------------------

def test_jsonl_append_read_truncate(tmp_path):
    path = tmp_path / "metrics.jsonl"
    assert writers.read_jsonl(path) == []
    for step in (1, 2, 3, 4):
        writers.append_jsonl(path, {"step": step, "train/loss": 1.0 / step})
    assert [r["step"] for r in writers.read_jsonl(path)] == [1, 2, 3, 4]
    assert writers.read_jsonl(path)[2]["train/loss"] == pytest.approx(1 / 3)
    assert path.read_text().count("\n") == 4

    writers.truncate_jsonl(path, 2)
    assert [r["step"] for r in writers.read_jsonl(path)] == [1, 2]
    writers.append_jsonl(path, {"step": 3, "train/loss": 9.0})
    assert [(r["step"], r["train/loss"]) for r in writers.read_jsonl(path)][-1] == (3, 9.0)
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.jsonl"]
    writers.truncate_jsonl(tmp_path / "absent.jsonl", 5)  # nothing to do, no error
    assert not (tmp_path / "absent.jsonl").exists()


def test_jsonl_skips_torn_last_line(tmp_path):
    path = tmp_path / "m.jsonl"
    writers.append_jsonl(path, {"step": 1, "v": 1.0})
    writers.append_jsonl(path, {"step": 2, "v": 2.0})
    with open(path, "a") as f:
        f.write('{"step": 3, "v": 3.')  # killed mid-write
    assert writers.read_jsonl(path) == [{"step": 1, "v": 1.0}, {"step": 2, "v": 2.0}]
    writers.truncate_jsonl(path, 10)  # a resume repairs the file
    assert path.read_text() == "".join(json.dumps(r) + "\n" for r in
                                       [{"step": 1, "v": 1.0}, {"step": 2, "v": 2.0}])
