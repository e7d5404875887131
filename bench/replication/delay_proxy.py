# bench/replication: a TCP proxy on 127.0.0.1 that delays every byte by D ms
# in each direction: a link with a round trip of 2 D and no bandwidth limit of
# its own (what Python copies, several hundred MB/s).
# Usage: delay_proxy.py LISTEN_PORT TARGET_PORT ONE_WAY_MS (LISTEN_PORT 0: any; the port is printed)
import asyncio, sys, time
LISTEN, TARGET, D = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]) / 1000

async def pipe(reader, writer):
    q = asyncio.Queue()
    async def pump():
        while True:
            data = await reader.read(1 << 16)
            await q.put((time.monotonic() + D, data))
            if not data: return
    async def drain():
        while True:
            due, data = await q.get()
            wait = due - time.monotonic()
            if wait > 0: await asyncio.sleep(wait)
            if not data:
                writer.close(); return
            writer.write(data); await writer.drain()
    try:
        await asyncio.gather(pump(), drain())
    except Exception:
        writer.close()

async def handle(cr, cw):
    try:
        ur, uw = await asyncio.open_connection('127.0.0.1', TARGET)
    except Exception:
        cw.close(); return
    await asyncio.gather(pipe(cr, uw), pipe(ur, cw), return_exceptions=True)

async def main():
    server = await asyncio.start_server(handle, '127.0.0.1', LISTEN)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server: await server.serve_forever()
asyncio.run(main())
