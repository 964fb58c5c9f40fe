"""A ws:// -> wss:// bridge for the Autobahn run: accepts plain TCP on an ephemeral loopback
port and forwards each connection's bytes over TLS (Python's ssl module, trusting sigyard's
development certificate for the name sigyard.test) to sigyard's TLS listener.

Usage: python3 autobahn_tls_bridge.py HOST:PORT CERT.pem   (prints "listening HOST:PORT")
"""

import asyncio
import ssl
import sys


async def pump(reader, writer):
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except (ConnectionError, ssl.SSLError):
        pass
    finally:
        try:
            if writer.can_write_eof():
                writer.write_eof()
            else:
                writer.close()
        except (OSError, RuntimeError):
            pass


async def main():
    host, port = sys.argv[1].rsplit(":", 1)
    ctx = ssl.create_default_context(cafile=sys.argv[2])

    async def handle(c_reader, c_writer):
        try:
            s_reader, s_writer = await asyncio.open_connection(
                host, int(port), ssl=ctx, server_hostname="sigyard.test"
            )
        except OSError:
            c_writer.close()
            return
        await asyncio.gather(pump(c_reader, s_writer), pump(s_reader, c_writer))
        for w in (c_writer, s_writer):
            w.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    addr = server.sockets[0].getsockname()
    print(f"listening {addr[0]}:{addr[1]}", flush=True)
    async with server:
        await server.serve_forever()


asyncio.run(main())
