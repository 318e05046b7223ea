"""TFRecord reading: CRC-32C as RFC 3720 and TensorFlow's writer define it, and corrupt records refused by
file, record and byte offset."""
import numpy as np
import pytest

from finetune_helpers import toy_arrays, write_tfrecord


def test_crc32c_matches_rfc_3720_and_a_byte_at_a_time_reference():
    from vit_zoo.train.crc32c import crc32c, masked_crc32c

    # RFC 3720 (iSCSI) appendix B.4, and the usual check value of CRC-32C
    assert crc32c(bytes(32)) == 0x8A9136AA
    assert crc32c(b"\xff" * 32) == 0x62A8AB43
    assert crc32c(bytes(range(32))) == 0x46DD794E
    assert crc32c(bytes(range(31, -1, -1))) == 0x113FDB5C
    assert crc32c(b"123456789") == 0xE3069283
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)

    def by_bytes(data):
        crc = 0xFFFFFFFF
        for byte in data:
            crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
        return crc ^ 0xFFFFFFFF
    rng = np.random.default_rng(0)
    for size in (0, 1, 3, 4, 5, 16, 17, 255, 256, 257, 4099, 30001):
        data = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
        assert crc32c(data) == by_bytes(data), size
    crc = by_bytes(b"123456789")  # TensorFlow core/lib/hash/crc32c.h: rotate right 15, add 0xa282ead8
    assert masked_crc32c(b"123456789") == ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


def _record_starts(path):
    """Byte offsets of each record's header, read from the framing (uint64 length + 4 + data + 4)."""
    blob, starts, position = path.read_bytes(), [], 0
    while position < len(blob):
        starts.append(position)
        position += 16 + int.from_bytes(blob[position:position + 8], "little")
    return starts


def _flip(path, offset):
    blob = bytearray(path.read_bytes())
    blob[offset] ^= 0x01
    path.write_bytes(bytes(blob))


@pytest.mark.tensorflow_only("TFRecord files written by TensorFlow's own writer")
def test_corrupt_records_are_refused_with_file_record_and_offset(tmp_path):
    from vit_zoo.train.data import resolve_data

    images, labels = toy_arrays(6, size=16)
    path = write_tfrecord(tmp_path / "good.tfrecord", images, labels)
    split = resolve_data(path).train  # TensorFlow's CRCs check out
    assert split.size == 6
    starts = _record_starts(path)
    original = path.read_bytes()

    _flip(path, starts[3] + 12 + 40)  # a byte of record 3's data
    with pytest.raises(ValueError, match=rf"'{path}': record 3 \(at byte {starts[3]}\) is corrupt: the CRC of "
                                         rf"its data is 0x[0-9a-f]{{8}}, the data gives 0x[0-9a-f]{{8}}; the file is "
                                         rf"damaged \(re-create or re-download it\)"):
        resolve_data(path)
    path.write_bytes(original)
    _flip(path, starts[2])  # the length field of record 2: its CRC catches it before the length is used
    with pytest.raises(ValueError, match=rf"record 2 \(at byte {starts[2]}\) is corrupt: the CRC of its length"):
        resolve_data(path)
    path.write_bytes(original)
    _flip(path, starts[1] + 8)  # the stored length CRC itself
    with pytest.raises(ValueError, match=rf"record 1 \(at byte {starts[1]}\) is corrupt: the CRC of its length"):
        resolve_data(path)
    path.write_bytes(original)
    _flip(path, starts[1] - 1)  # the data CRC of record 0 (its last 4 bytes)
    with pytest.raises(ValueError, match=r"record 0 \(at byte 0\) is corrupt: the CRC of its data"):
        resolve_data(path)

    path.write_bytes(original)  # indexed intact, damaged afterwards: the training read refuses it
    index = split.items
    np.testing.assert_array_equal(split.image(split.raw(4)), images[4])
    _flip(path, starts[4] + 12 + 40)
    with pytest.raises(ValueError, match=rf"record 4 of the split \(at byte {starts[4]}\) is corrupt: the CRC of "
                                         rf"its data"):
        index.image_bytes(4)
