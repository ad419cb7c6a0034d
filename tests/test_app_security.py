"""nst-tf-app attacked on loopback: tiny uploads that decode huge, many at once, a full budget and a full
refine queue (503 + Retry-After), refines nobody claims, a newline in a file name, a 1 x 1 photo, the
token. Memory is read from /proc (Linux); docs/security.md says what the server promises."""

import asyncio
import io
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from PIL import Image

from nst_tf import image_io

aiohttp = pytest.importorskip("aiohttp")
from aiohttp.test_utils import TestClient, TestServer  # noqa: E402

from nst_tf.app import server, studio  # noqa: E402


@pytest.fixture(scope="module")
def painter():
    return studio.Studio("universal", weights="embedded", autotune="off")


@pytest.fixture(scope="module")
def bomb() -> bytes:
    """A 6300 x 6300 1-bit PNG, all zeros: 5 KB on the wire, 40 megapixels (476 MB as float32 RGB)."""
    out = io.BytesIO()
    Image.new("1", (6300, 6300)).save(out, format="PNG", optimize=True)
    return out.getvalue()


def _run(painter, body, limits=studio.Limits(), token=None):
    async def main():
        app = server.make_app(painter, limits, token=token)
        async with TestClient(TestServer(app)) as client:
            return await body(client, app[server.STATE])

    return asyncio.run(main())


def _form(photo, paintings=("the_scream",), mask=None, **fields):
    form = aiohttp.FormData()
    parts = [("photo", photo, "photo.png")] + [("painting", p, f"painting{k}.png") for k, p in enumerate(paintings)]
    parts += [("mask", mask, "mask.png")] if mask is not None else []
    for name, value, filename in parts:
        if isinstance(value, bytes):
            form.add_field(name, value, filename=filename, content_type="image/png")
        else:
            form.add_field(name, value)
    for k, v in fields.items():
        form.add_field(k, str(v))
    return form


def _rss() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))


class _Peak:
    """The process's peak resident memory while the block runs, sampled every 20 ms."""

    def __enter__(self):
        self.start, self.peak, self._done = _rss(), _rss(), threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._done.wait(0.02):
            self.peak = max(self.peak, _rss())

    def __exit__(self, *exc):
        self._done.set()
        self._thread.join()
        self.growth = max(self.peak, _rss()) - self.start


def _jpeg(side: int) -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.full((side, side, 3), 120, np.uint8)).save(out, format="JPEG")
    return out.getvalue()


def test_tiny_uploads_that_decode_huge_cost_what_they_should(painter, bomb):
    """Before: the six-picture request (29 KB) grew the server by 3.5-3.7 GB and got its 400 after
    10-16 s; a valid one with three such pictures decoded each to 476 MB of float32."""

    async def body(client, state):
        out = {}
        six = _form(bomb, [bomb] * 4, mask=bomb, size=64)
        with _Peak() as peak:
            start = time.perf_counter()
            response = await client.post("/api/paint", data=six)
            out["six"] = (response.status, (await response.json())["error"], time.perf_counter() - start, peak)
        with _Peak() as peak:
            answers = await asyncio.gather(
                *[client.post("/api/paint", data=_form(bomb, [bomb] * 4, mask=bomb)) for _ in range(10)]
            )
            out["ten"] = ([a.status for a in answers], peak)
        await client.post("/api/paint", data=_form("boston", size=64))  # the painter warm at this size
        with _Peak() as peak:
            response = await client.post("/api/paint", data=_form(bomb, [bomb], mask=bomb, size=64))
            out["heavy"] = (response.status, Image.open(io.BytesIO(await response.read())).size, peak)
        out["budget"] = state.budget.used
        return out

    got = _run(painter, body)
    status, error, seconds, peak = got["six"]
    assert status == 400 and error.startswith("a painted region takes one or two paintings"), error
    assert seconds < 2.0 and peak.growth < 100 * 2**20, (seconds, peak.growth)  # refused before any decode
    statuses, peak = got["ten"]
    assert statuses == [400] * 10 and peak.growth < 100 * 2**20, peak.growth
    status, size, peak = got["heavy"]
    # Decoded straight to twice the painted size: the 1-bit picture once (40 MB), never as float32.
    assert status == 200 and size == (64, 64) and peak.growth < 300 * 2**20, peak.growth / 2**20
    assert got["budget"] == 0  # every request's share given back


def test_a_newline_in_a_file_name_and_a_one_pixel_photo(painter):
    async def body(client, state):
        boundary = "bOuNdArY"
        raw = (
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"photo\"; filename*=UTF-8''a%0Ab%0D%0A.jpg\r\n"
            "Content-Type: image/jpeg\r\n\r\n"
        ).encode() + _jpeg(64)
        for name, value in [("painting", "the_scream"), ("size", "64")]:
            raw += f'\r\n--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}'.encode()
        raw += f"\r\n--{boundary}--\r\n".encode()
        kind = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
        named = await client.post("/api/paint", data=raw, headers=kind)
        tiny = await client.post("/api/paint", data=_form(_jpeg(1), size=64))
        return named.status, dict(named.headers), tiny.status, await tiny.json()

    status, headers, tiny_status, tiny = _run(painter, body)
    assert status == 200 and "--content=a_b__.jpg" in headers["X-Command"], headers
    assert all(32 <= ord(c) < 127 for c in headers["X-Command"])
    assert tiny_status == 400 and tiny["error"].startswith("the photo is 1x1: a photo needs 16 px or more"), tiny


def test_a_full_budget_and_a_full_refine_queue_answer_503_and_unclaimed_refines_are_dropped(painter, bomb, monkeypatch):
    monkeypatch.setattr(studio, "CLAIM_SECONDS", 0.5)

    async def body(client, state):
        out = {}
        release = state.budget.reserve(state.budget.total - 1024)  # others' pictures fill the budget
        response = await client.post("/api/paint", data=_form(_jpeg(256), size=64))
        out["full"] = (response.status, response.headers.get("Retry-After"), (await response.json())["error"])
        release()
        response = await client.post("/api/paint", data=_form(bomb, size=64))  # more than the whole budget
        out["too big"] = (response.status, (await response.json())["error"])
        first = await client.post("/api/refine", data=_form(_jpeg(256), size=64, steps=2))
        second = await client.post("/api/refine", data=_form(_jpeg(256), size=64, steps=2))
        out["queue"] = (first.status, second.status, second.headers.get("Retry-After"), await second.json())
        out["held"] = state.budget.used
        job = (await first.json())["job"]
        await asyncio.sleep(1.5)  # nobody opens the job's WebSocket
        out["dropped"] = (state.budget.used, job in state.jobs, state.queue.running, len(state.queue._waiting))
        out["late"] = (await client.get(f"/api/jobs/{job}")).status
        return out

    limits = studio.Limits(max_refines=1, memory_bytes=32 * 2**20)
    got = _run(painter, body, limits)
    status, retry, error = got["full"]
    assert status == 503 and int(retry) > 0 and "busy" in error, got["full"]
    assert got["too big"][0] == 400 and "more than this server's budget of 32 MB" in got["too big"][1]
    first, second, retry, error = got["queue"]
    assert (first, second) == (200, 503) and int(retry) > 0 and "1 refines are queued" in error["error"]
    assert got["held"] > 0  # the queued refine holds its pictures' share ...
    assert got["dropped"] == (0, False, None, 0)  # ... until it is dropped, never run
    assert got["late"] == 404


def test_a_token_guards_every_route_but_the_static_files(painter):
    async def body(client, state):
        out = {}
        for path in ["/", "/api/info", "/api/pictures", "/api/pictures/boston", "/api/jobs/x"]:
            out[path] = (await client.get(path)).status
        out["paint"] = (await client.post("/api/paint", data=_form("boston", size=64))).status
        out["static"] = (await client.get("/static/app.js")).status
        out["wrong"] = (await client.get("/api/info", headers={"Authorization": "Bearer nope"})).status
        out["bearer"] = (await client.get("/api/info", headers={"Authorization": "Bearer s3cret"})).status
        page = await client.get("/?token=s3cret")  # the page keeps it in a cookie for its own requests
        out["page"] = (page.status, page.cookies.get(server.TOKEN_COOKIE).value)
        out["cookie"] = (await client.get("/api/pictures")).status
        return out

    got = _run(painter, body, token="s3cret")
    assert {k: got[k] for k in ["/", "/api/info", "/api/pictures", "/api/pictures/boston", "/api/jobs/x"]} == {
        k: 401 for k in ["/", "/api/info", "/api/pictures", "/api/pictures/boston", "/api/jobs/x"]
    }
    assert got["paint"] == 401 and got["wrong"] == 401 and got["static"] == 200
    assert got["bearer"] == 200 and got["page"] == (200, "s3cret") and got["cookie"] == 200


def test_serving_beyond_loopback_needs_a_token():
    code = "import sys; sys.argv[0] = 'nst-tf-app'; from nst_tf.cli import run_app; run_app()"
    result = subprocess.run([sys.executable, "-c", code, "--host=0.0.0.0"], capture_output=True, text=True, timeout=120)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert (
        result.returncode == 2 and len(lines) == 1 and "--host=0.0.0.0 serves other machines: give --token" in lines[0]
    )


def test_decoding_to_the_painted_size_keeps_orientation_and_the_picture(tmp_path):
    """A JPEG decoded at a fraction of its size (the decoder's own scaling, then a box reduction)
    keeps its EXIF orientation and paints the same picture within a level or two."""
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (30, 40, 3)).astype(np.uint8)
    photo = np.asarray(Image.fromarray(small).resize((4000, 3000), Image.BILINEAR))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    data = io.BytesIO()
    Image.fromarray(photo).save(data, format="JPEG", quality=95, exif=exif)
    header = image_io.peek(io.BytesIO(data.getvalue()), "upload")
    needed = image_io.decode_bytes_needed(header, 256)
    reduced = image_io.load_image(image_io.decode(header, 256))
    whole = image_io.load_image(image_io.decode_bytes(data.getvalue(), "upload"))
    assert whole.shape == (4000, 3000, 3) and reduced.shape[0] > reduced.shape[1] >= 512  # portrait, >= 2x
    assert needed < 40 * 2**20 < whole.nbytes  # the estimate from the header, before any decoding
    a, b = image_io.resize(reduced, (256, 192)), image_io.resize(whole, (256, 192))
    assert np.abs(a - b).mean() * 255 < 1.0, np.abs(a - b).mean() * 255
