import uuid

from service import ids
from service.ids import uuid4_hex


def test_an_id_is_the_uuid4_of_the_same_random_bytes(monkeypatch):
    for fill in (b"\x00", b"\xff", b"\x5a"):
        random = fill * 16
        monkeypatch.setattr(ids.os, "urandom", lambda size, random=random: random[:size])
        assert uuid4_hex() == uuid.UUID(bytes=random, version=4).hex


def test_ids_are_version_4_and_differ():
    made = {uuid4_hex() for _ in range(1000)}
    assert len(made) == 1000
    assert {uuid.UUID(hex=made_id).version for made_id in made} == {4}
    assert {uuid.UUID(hex=made_id).variant for made_id in made} == {uuid.RFC_4122}
