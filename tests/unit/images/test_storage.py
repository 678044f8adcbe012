"""The download iterable handed to the WSGI server (images.storage.ObjectChunks)."""

from __future__ import annotations

from images.storage import DOWNLOAD_CHUNK_BYTES, ObjectChunks


class FakeBody:
    """The part of botocore's StreamingBody the download uses."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks
        self.closed = False

    def iter_chunks(self, chunk_size: int):
        assert chunk_size == DOWNLOAD_CHUNK_BYTES
        yield from self.chunks

    def close(self) -> None:
        self.closed = True


def test_the_chunks_are_the_object_bytes_in_order():
    assert list(ObjectChunks(FakeBody([b"ab", b"cd"]))) == [b"ab", b"cd"]


def test_closing_before_any_chunk_was_read_closes_the_object_body():
    body = FakeBody([b"ab"])

    ObjectChunks(body).close()

    assert body.closed


def test_closing_after_a_partial_read_closes_the_object_body():
    body = FakeBody([b"ab", b"cd"])
    chunks = ObjectChunks(body)
    next(iter(chunks))

    chunks.close()

    assert body.closed
