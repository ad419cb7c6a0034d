"""Hostile input and load against nst-tf-app, as an attacker would send it: prints each probe's status,
seconds and the server's memory growth (resident set, read from /proc), whole process.

    python scripts/probe_app.py [--port=8790] [--quick]

Starts `nst-tf-app` (the default painter, embedded VGG weights, no autotune) on loopback, waits for it,
then sends:
  amplification  one ~29 KB request: six 6300 x 6300 1-bit PNGs (photo, four paintings, a mask)
  ten at once    the same request ten times concurrently
  heavy valid    photo + one painting + mask, each 6300 x 6300 (must be decoded: a real painting at 512 px)
  ten heavy      that request ten times concurrently (the memory budget answers 503 past its share)
  refines        three refine requests with 6300 x 6300 pictures, never claimed; memory at once and 40 s later
  newline name   a photo whose file name carries a newline (filename*=UTF-8''a%0Ab.jpg)
  tiny photo     a 1 x 1 photo
and the server's memory a minute after the last probe. Linux only (reads /proc/<pid>/status).
"""

import argparse
import asyncio
import io
import os
import signal
import subprocess
import sys
import time

import aiohttp
import numpy as np
from PIL import Image


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def bomb_png(side: int = 6300) -> bytes:
    out = io.BytesIO()
    Image.new("1", (side, side)).save(out, format="PNG", optimize=True)
    return out.getvalue()


def small_jpeg(side: int = 1) -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.full((side, side, 3), 120, np.uint8)).save(out, format="JPEG")
    return out.getvalue()


def form(parts, **fields) -> aiohttp.FormData:
    data = aiohttp.FormData()
    for name, body, filename in parts:
        data.add_field(name, body, filename=filename, content_type="image/png")
    for k, v in fields.items():
        data.add_field(k, str(v))
    return data


async def post(session, url, parts, **fields):
    start = time.perf_counter()
    try:
        async with session.post(url, data=form(parts, **fields)) as response:
            body = await response.read()
            return response.status, time.perf_counter() - start, body[:160]
    except aiohttp.ClientError as err:
        return f"no answer ({type(err).__name__})", time.perf_counter() - start, b""


async def raw_newline_name(port: int):
    """A multipart upload whose filename* carries a newline (what aiohttp's FormData cannot send)."""
    boundary = "xXxXx"
    photo = small_jpeg(64)
    body = (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"photo\"; filename*=UTF-8''a%0Ab.jpg\r\n"
        f"Content-Type: image/jpeg\r\n\r\n"
    ).encode() + photo
    body += f'\r\n--{boundary}\r\nContent-Disposition: form-data; name="painting"\r\n\r\nthe_scream'.encode()
    body += f'\r\n--{boundary}\r\nContent-Disposition: form-data; name="size"\r\n\r\n64\r\n--{boundary}--\r\n'.encode()
    start = time.perf_counter()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = (
        f"POST /api/paint HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary={boundary}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    writer.write(head + body)
    await writer.drain()
    answer = await reader.read()
    writer.close()
    status = answer.split(b"\r\n", 1)[0].decode(errors="replace") if answer else "no answer (connection dropped)"
    return status, time.perf_counter() - start


async def probes(port: int, pid: int, quick: bool):
    url = f"http://127.0.0.1:{port}/api/paint"
    bomb = bomb_png()
    rows = []
    base = rss_mb(pid)

    def row(name, status, seconds, peak, note=""):
        rows.append((name, status, seconds, peak - base, note))
        print(f"{name:<16} {str(status):<34} {seconds:7.2f} s  +{peak - base:7.0f} MB  {note}", flush=True)

    async def watched(coro):
        """Runs `coro`, sampling the server's memory every 50 ms: (result, peak MB)."""
        task = asyncio.ensure_future(coro)
        peak = rss_mb(pid)
        while not task.done():
            peak = max(peak, rss_mb(pid))
            await asyncio.sleep(0.05)
        return task.result(), max(peak, rss_mb(pid))

    timeout = aiohttp.ClientTimeout(total=180)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        six = (
            [("photo", bomb, "p.png")] + [("painting", bomb, f"s{k}.png") for k in range(4)] + [("mask", bomb, "m.png")]
        )
        print(f"server at start: {base:.0f} MB; the six-picture request is {len(bomb) * 6 / 1024:.0f} KB", flush=True)
        (status, seconds, body), peak = await watched(post(session, url, six))
        row("amplification", status, seconds, peak, body.decode(errors="replace")[:60])

        (results, peak) = await watched(asyncio.gather(*[post(session, url, six) for _ in range(10)]))
        statuses = sorted({str(r[0]) for r in results})
        row("ten at once", "/".join(statuses), max(r[1] for r in results), peak)

        heavy = [("photo", bomb, "p.png"), ("painting", bomb, "s.png"), ("mask", bomb, "m.png")]
        (status, seconds, body), peak = await watched(post(session, url, heavy, size=512))
        row("heavy valid", status, seconds, peak, body.decode(errors="replace")[:60] if status != 200 else "painted")

        (results, peak) = await watched(asyncio.gather(*[post(session, url, heavy, size=512) for _ in range(10)]))
        counts = {k: sum(str(r[0]) == k for r in results) for k in sorted({str(r[0]) for r in results})}
        row("ten heavy", " ".join(f"{k}x{v}" for k, v in counts.items()), max(r[1] for r in results), peak)

        refine = f"http://127.0.0.1:{port}/api/refine"
        (results, peak) = await watched(asyncio.gather(*[post(session, refine, heavy, size=512) for _ in range(3)]))
        row("refines", "/".join(sorted({str(r[0]) for r in results})), max(r[1] for r in results), peak)
        if not quick:
            await asyncio.sleep(40)
            now = rss_mb(pid)
            row("refines +40 s", "-", 40.0, now)

        (status, seconds), peak = await watched(raw_newline_name(port))
        row("newline name", status, seconds, peak)

        (status, seconds, body), peak = await watched(
            post(session, url, [("photo", small_jpeg(1), "t.jpg")], painting="the_scream")
        )
        row("tiny photo", status, seconds, peak, body.decode(errors="replace")[:80] if status != 200 else "painted")
    if not quick:
        await asyncio.sleep(60)
        row("a minute later", "-", 60.0, rss_mb(pid))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8790)
    parser.add_argument("--quick", action="store_true", help="skip the 40 s and 60 s waits")
    parser.add_argument("--memory_mb", type=int, help="the server's --memory_mb (default: its own)")
    args = parser.parse_args()
    command = [os.path.join(os.path.dirname(sys.executable), "nst-tf-app"), f"--port={args.port}"]
    command += ["--weights=embedded", "--autotune=off"] + ([f"--memory_mb={args.memory_mb}"] if args.memory_mb else [])
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for line in server.stdout:
            if "open http" in line:
                break
        else:
            print("the server did not start", file=sys.stderr)
            return 1
        asyncio.run(probes(args.port, server.pid, args.quick))
        print("server alive:", server.poll() is None)
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
