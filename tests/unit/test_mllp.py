"""MLLP framing over a real loopback socket."""

import asyncio

import pytest

from ingest.mllp import (
    END_BLOCK,
    FRAME_END,
    START_BLOCK,
    MLLPServer,
    frame,
    send_messages,
)


async def _echo(message: bytes, peer: str) -> bytes:
    return b"ACK:" + message


@pytest.fixture
async def server():
    srv = MLLPServer(_echo, "127.0.0.1", 0, max_frame=1024, idle_timeout=2)
    await srv.start()
    yield srv
    await srv.stop()


def test_frame_constants() -> None:
    assert frame(b"MSH") == b"\x0bMSH\x1c\x0d"
    assert (START_BLOCK, END_BLOCK, FRAME_END) == (b"\x0b", b"\x1c", b"\x1c\x0d")


async def test_many_messages_on_one_connection(server: MLLPServer) -> None:
    acks = await send_messages("127.0.0.1", server.port, [b"one", b"two", b"three"])
    assert acks == [b"ACK:one", b"ACK:two", b"ACK:three"]


async def test_concurrent_connections(server: MLLPServer) -> None:
    results = await asyncio.gather(*(send_messages("127.0.0.1", server.port, [f"m{i}".encode()]) for i in range(20)))
    assert sorted(r[0] for r in results) == sorted(f"ACK:m{i}".encode() for i in range(20))


async def _raw_exchange(port: int, payload: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(payload)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 5)  # until the server closes
    writer.close()
    return data


async def test_oversized_frame_closes_connection(server: MLLPServer) -> None:
    assert await _raw_exchange(server.port, frame(b"x" * 5000)) == b""


async def test_bytes_before_start_block_close_connection(server: MLLPServer) -> None:
    assert await _raw_exchange(server.port, b"garbage" + frame(b"msg")) == b""


async def test_idle_connection_is_closed(server: MLLPServer) -> None:
    assert await _raw_exchange(server.port, b"") == b""


async def test_tls(tmp_path) -> None:
    import ssl
    import subprocess

    from ingest.service import tls_context

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    srv = MLLPServer(_echo, "127.0.0.1", 0, ssl_context=tls_context(str(cert), str(key)))
    await srv.start()
    try:
        client_ctx = ssl.create_default_context(cafile=str(cert))
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.port, ssl=client_ctx, server_hostname="localhost")
        writer.write(frame(b"over tls"))
        await writer.drain()
        from ingest.mllp import read_frame

        assert await asyncio.wait_for(read_frame(reader), 5) == b"ACK:over tls"
        writer.close()
        # a plain-text client gets nothing back: the server only speaks TLS
        assert await _raw_exchange(srv.port, frame(b"plain")) == b""
    finally:
        await srv.stop()


def test_tls_settings_must_come_in_pairs() -> None:
    from kernel.errors import SettingsError
    from kernel.settings import Settings

    with pytest.raises(SettingsError, match="RADFLOW_MLLP_TLS_KEY"):
        Settings.from_env({"RADFLOW_MLLP_TLS_CERT": "/x.pem"})
