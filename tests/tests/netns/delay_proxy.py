"""A TCP relay that delays every byte by a fixed time in each direction: the slow link of the
network tests, where the kernel has no netem qdisc. Run inside a host's namespace:

    python3 delay_proxy.py LISTEN_HOST LISTEN_PORT TARGET_HOST TARGET_PORT DELAY_MS

It prints `listening` once it accepts connections. Bytes keep their order (a delay line, not a
throttle); a side that closes or fails closes the other.
"""

import asyncio
import sys


async def relay(reader, writer, delay):
    loop = asyncio.get_running_loop()
    queue = asyncio.Queue()

    async def take():
        try:
            while True:
                data = await reader.read(65536)
                await queue.put((loop.time() + delay, data))
                if not data:
                    return
        except (ConnectionError, OSError):
            await queue.put((loop.time(), b""))

    async def give():
        try:
            while True:
                at, data = await queue.get()
                wait = at - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                if not data:
                    break
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    await asyncio.gather(take(), give())


async def main():
    listen_host, listen_port, target_host, target_port, delay_ms = sys.argv[1:6]
    delay = float(delay_ms) / 1000.0

    async def accepted(client_reader, client_writer):
        try:
            server_reader, server_writer = await asyncio.open_connection(target_host, int(target_port))
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(
            relay(client_reader, server_writer, delay),
            relay(server_reader, client_writer, delay),
            return_exceptions=True,
        )

    server = await asyncio.start_server(accepted, listen_host, int(listen_port))
    print("listening", flush=True)
    async with server:
        await server.serve_forever()


asyncio.run(main())
