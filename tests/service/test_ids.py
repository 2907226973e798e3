import os
import uuid

from service import ids
from service.ids import DRAWN_BYTES, ID_BYTES, RandomBytes, uuid4_hex


def test_ids_are_the_uuid4s_of_urandoms_bytes_in_the_order_drawn(monkeypatch):
    draws = []

    def urandom(size):
        drawn = bytes((len(draws) * 7 + i) % 256 for i in range(size))
        draws.append(drawn)
        return drawn

    monkeypatch.setattr(ids.os, "urandom", urandom)
    monkeypatch.setattr(ids, "RANDOM_BYTES", RandomBytes())
    made = [uuid4_hex() for _ in range(2 * DRAWN_BYTES // ID_BYTES + 1)]
    assert len(draws) == 3  # one system call per 256 ids
    assert {len(drawn) for drawn in draws} == {DRAWN_BYTES}
    random = b"".join(draws)
    expected = [
        uuid.UUID(bytes=random[start : start + ID_BYTES], version=4).hex
        for start in range(0, len(made) * ID_BYTES, ID_BYTES)
    ]
    assert made == expected


def test_ids_are_version_4_and_differ():
    made = {uuid4_hex() for _ in range(1000)}
    assert len(made) == 1000
    assert {uuid.UUID(hex=made_id).version for made_id in made} == {4}
    assert {uuid.UUID(hex=made_id).variant for made_id in made} == {uuid.RFC_4122}


def test_a_forked_child_never_repeats_its_parents_ids():
    uuid4_hex()  # the parent has ids drawn and not yet handed out
    reading, writing = os.pipe()
    child = os.fork()
    if child == 0:
        os.write(writing, uuid4_hex().encode())
        os._exit(0)
    os.close(writing)
    os.waitpid(child, 0)
    childs = os.read(reading, 64).decode()
    os.close(reading)
    assert childs != uuid4_hex()
