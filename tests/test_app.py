"""nst-tf-app's server through its HTTP API (aiohttp's test client): the painting is the Python API's,
refines stream, stop, queue one at a time and free a closed tab's place; bad uploads and settings are a
4xx with one line; nothing a request says reaches the file system; one tab cannot see another's job."""

import asyncio
import io
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import nst_tf
from nst_tf import image_io

aiohttp = pytest.importorskip("aiohttp")
from aiohttp.test_utils import TestClient, TestServer  # noqa: E402

from nst_tf.app import server, studio  # noqa: E402


@pytest.fixture(scope="module")
def painter():
    return studio.Studio("universal", weights="embedded", autotune="off")


def _run(painter, body, limits=studio.Limits()):
    """Runs `body(client)` against a fresh app over `painter`."""

    async def main():
        async with TestClient(TestServer(server.make_app(painter, limits))) as client:
            return await body(client)

    return asyncio.run(main())


def _form(photo="boston", paintings=("the_scream",), **fields):
    form = aiohttp.FormData()
    for name, value in [("photo", photo)] + [("painting", p) for p in paintings]:
        if isinstance(value, bytes):
            form.add_field(name, value, filename=f"{name}.png", content_type="image/png")
        else:
            form.add_field(name, value)
    for k, v in fields.items():
        form.add_field(k, str(v))
    return form


def _png(image) -> bytes:
    out = io.BytesIO()
    Image.fromarray(image).save(out, format="PNG")
    return out.getvalue()


def test_the_painting_is_the_python_apis_and_carries_its_command_line(painter):
    photo = (image_io.load_image(image_io.example_path("chelsea"), 160) * 255).astype(np.uint8)

    async def body(client):
        response = await client.post("/api/paint", data=_form(_png(photo), ("the_scream",), size=128, strength=0.7))
        return response.status, await response.read(), dict(response.headers)

    status, data, headers = _run(painter, body)
    assert status == 200 and headers["Content-Type"] == "image/png", data[:200]
    got = Image.open(io.BytesIO(data))
    command = got.info["nst-tf command"]
    assert command == headers["X-Command"] and "--strength=0.7" in command and "--size=128" in command
    expected = nst_tf.stylize(
        photo,
        image_io.example_path("the_scream"),
        network="universal",
        size=128,
        strength=0.7,
        weights="embedded",
        precision="float32",
    )
    np.testing.assert_array_equal(np.asarray(got.convert("RGB")), expected)


def test_a_painted_region_paints_there_and_leaves_the_photo_elsewhere(painter):
    """The page's mask (white where the user painted): with one painting, the painting inside and the
    photo outside, as the universal painter's masks do."""
    photo = image_io.load_image(image_io.example_path("boston"), 128)
    h, w = photo.shape[:2]
    mask = np.zeros((h, w, 3), np.uint8)
    mask[:, : w // 2] = 255

    async def body(client):
        form = _form(_png(image_io.to_uint8(photo)), ("the_scream",), size=128)
        form.add_field("mask", _png(mask), filename="mask.png", content_type="image/png")
        response = await client.post("/api/paint", data=form)
        return response.status, await response.read()

    status, data = _run(painter, body)
    assert status == 200, data[:300]
    got = Image.open(io.BytesIO(data))
    assert "--style_mask=mask.png" in got.info["nst-tf command"]
    painted = np.asarray(got.convert("RGB")).astype(float) / 255
    inside = np.abs(painted[:, : w // 2 - 8] - photo[:, : w // 2 - 8]).mean()
    outside = np.abs(painted[:, w // 2 + 8 :] - photo[:, w // 2 + 8 :]).mean()
    assert outside < inside / 3, (inside, outside)  # outside: the decoders' reconstruction of the photo


def test_bad_uploads_and_settings_are_a_4xx_with_one_line(painter, tmp_path):
    big = _png(np.zeros((1100, 1000, 3), np.uint8))  # 1.1 megapixels: over the limit below, from its header
    cases = [
        (_form(b"not a picture"), 400, "is not an image Pillow can read"),
        (_form(big), 400, "more than 1 megapixels"),
        (_form("../../setup.cfg"), 400, "no bundled picture '../../setup.cfg'"),
        (_form(paintings=()), 400, "at least one painting"),
        (_form(size=5000), 400, "size must be between 64 and 1024"),
        (_form(strength="strong"), 400, "strength must be a number"),
        (_form(paintings=("the_scream", "shipwreck"), style_blend="1"), 400, "style_blend needs 2"),
        (_form(preserve_colors="sepia"), 400, "unknown preserve_colors 'sepia'; choose one of"),
        (_form(tile="64"), 400, "the page takes no setting 'tile'"),  # honoured by the painter, not a page control
        (_form(budget="0"), 400, "budget must be between 1 and 600"),
        (_form(_png(np.random.default_rng(0).integers(0, 256, (600, 600, 3), np.uint8))), 413, "limit of 0.38147 MB"),
    ]
    limits = studio.Limits(max_input_pixels=1_000_000, max_upload_bytes=400_000)

    async def body(client):
        out = []
        for form, _, _ in cases:
            response = await client.post("/api/paint", data=form)
            out.append((response.status, await response.text()))
        for path in ["/api/pictures/..%2F..%2Fsetup.cfg", "/static/..%2Fserver.py", "/static/app.js.bak", "/tfjs/a/b"]:
            out.append(((await client.get(path)).status, path))
        return out

    got = _run(painter, body, limits)
    for (status, text), (_, want_status, want) in zip(got, cases):
        assert status == want_status and want in json.loads(text)["error"], (status, text)
        assert "Traceback" not in text and "\n" not in json.loads(text)["error"]
    assert [status for status, _ in got[len(cases) :]] == [404] * 4


def test_refines_stream_stop_queue_one_at_a_time_and_a_closed_tab_frees_its_place(painter):
    async def body(client):
        first = await (await client.post("/api/refine", data=_form(size=64, steps=40))).json()
        second = await (await client.post("/api/refine", data=_form(size=64, steps=3))).json()
        third = await (await client.post("/api/refine", data=_form(size=64, steps=3))).json()
        assert (first["place"], second["place"], third["place"]) == (0, 1, 2)
        tab1 = await client.ws_connect(f"/api/jobs/{first['job']}")
        assert (await client.get(f"/api/jobs/{first['job']}")).status == 404  # another tab cannot watch it
        tab2 = await client.ws_connect(f"/api/jobs/{second['job']}")
        tab3 = await client.ws_connect(f"/api/jobs/{third['job']}")
        seen1 = []
        async for message in tab1:
            event = json.loads(message.data)
            seen1.append(event)
            if event["type"] == "progress" and event["step"] == 2:
                await tab1.send_str("stop")
        await tab2.close()  # the second tab is closed while it waits: its job never runs
        seen3 = [json.loads(m.data) async for m in tab3]
        return seen1, seen3

    seen1, seen3 = _run(painter, body)
    types1 = [e["type"] for e in seen1]
    assert types1[:2] == ["queued", "started"] and types1[-1] == "stopped", types1
    stopped = seen1[-1]
    assert 2 <= stopped["step"] < 40 and f"--steps={stopped['step']}" in stopped["command"]
    picture = Image.open(io.BytesIO(_data_url(stopped["image"])))
    assert picture.size == (64, 43) and picture.info["nst-tf command"] == stopped["command"]
    progress = [e for e in seen1 if e["type"] == "progress"]
    assert all(e["eta"] >= 0 and e["loss"] > 0 for e in progress) and any("image" in e for e in progress)
    types3 = [e["type"] for e in seen3]
    assert types3[0] == "queued" and seen3[0]["place"] == 2 and types3[-1] == "done", types3
    places = [e["place"] for e in seen3 if e["type"] == "queued"]
    assert places[0] == 2 and places[-1] == 1 and places == sorted(places, reverse=True), places  # tab 2 closed
    assert sum(e["type"] == "progress" for e in seen3) == 3


def test_a_refine_given_a_time_runs_until_it_and_shows_the_steps_it_bought(painter):
    async def body(client):
        job = await (await client.post("/api/refine", data=_form(size=64, budget=2))).json()
        tab = await client.ws_connect(f"/api/jobs/{job['job']}")
        return [json.loads(m.data) async for m in tab]

    seen = _run(painter, body)
    assert [e["type"] for e in seen][-1] == "done", seen
    progress, done = [e for e in seen if e["type"] == "progress"], seen[-1]
    assert progress and all(e["steps"] is None and 0 < e["fraction"] <= 1 for e in progress)
    assert [e["step"] for e in progress] == list(range(1, done["step"] + 1))  # stopped by the time, not a count
    assert done["step"] < 1000 and f"--steps={done['step']}" in done["command"] and "--budget" not in done["command"]


def test_the_page_is_declared_by_the_option_table():
    """Every control is a `config.py` option with the flag's name and default; every option the page's
    painter honours is a control, the blend, the painted region, or refused with one line."""
    from nst_tf.config import Config, page_controls
    from nst_tf.networks.arbitrary import ArbitraryPainter

    options = studio.page_options(studio.Limits(max_size=700))
    assert [o["name"] for o in options] == list(page_controls()) and set(page_controls()) <= set(
        studio.Settings._fields
    )
    for o in options:
        assert o["default"] == getattr(Config, o["name"]) == getattr(studio.Settings(), o["name"]), o
    assert next(o for o in options if o["name"] == "size")["values"] == [256, 384, 512]  # the server's limit
    for name in ArbitraryPainter.supports:
        if name not in studio.Settings._fields and name != "style_mask":  # style_mask: the painted region
            with pytest.raises(nst_tf.NstError, match=f"the page takes no setting '{name}'"):
                studio.settings_from_form({name: "1"}, 1)
    for o in options:  # a value away from the default reaches the settings as the flag's type
        value = o["values"][-1] if o["values"] else o["high"]
        assert getattr(studio.settings_from_form({o["name"]: str(value)}, 1), o["name"]) == value, o


def _data_url(url: str) -> bytes:
    import base64

    assert url.startswith("data:image/png;base64,")
    return base64.b64decode(url.split(",", 1)[1])


def test_the_command_refuses_bad_flags_with_one_line():
    code = "import sys; sys.argv[0] = 'nst-tf-app'; from nst_tf.cli import run_app; run_app()"
    for args, want in [(["--port=0"], "--port must be in 1..65535"), (["--tfjs_dir=/nowhere"], "no TensorFlow.js")]:
        result = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith("nst-tf-app: error: "), result.stderr
        assert want in lines[0], lines


@pytest.mark.slow
def test_the_command_serves_the_page_on_localhost_and_stops_on_ctrl_c():
    import signal
    import socket
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = "import sys; sys.argv[0] = 'nst-tf-app'; from nst_tf.cli import run_app; run_app()"
    args = [sys.executable, "-c", code, f"--port={port}", "--weights=embedded", "--autotune=off"]
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        assert line.strip() == f"nst-tf-app: open http://127.0.0.1:{port}/ (Ctrl-C stops)", line
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30) as page:
            assert page.status == 200 and b'id="photo-input"' in page.read()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/info", timeout=30) as info:
            assert json.loads(info.read())["limits"]["max_size"] == 1024
    finally:
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    assert process.returncode == 0 and "Traceback" not in err, err[-2000:]
    with socket.socket() as taken:  # a port in use: one line, exit 2
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = subprocess.run(
            args[:3] + [f"--port={taken.getsockname()[1]}", "--weights=embedded", "--autotune=off"],
            capture_output=True,
            text=True,
            timeout=120,
        )
    lines = [line for line in busy.stderr.splitlines() if line.strip()]
    assert busy.returncode == 2 and len(lines) == 1 and "cannot listen on 127.0.0.1" in lines[0], busy.stderr[-2000:]


@pytest.mark.parametrize("refined, mask", [(False, False), (True, False), (True, True)])
def test_the_command_line_shown_parses_back_into_the_same_settings(painter, refined, mask):
    """The page's command is written by the code the command line parses it with: absl reads it back
    into the run's options."""
    import shlex

    from absl import flags

    from nst_tf.commands import common

    settings = studio.Settings(size=256, strength=0.7, style_blend=(1.0, 3.0), preserve_colors="luminance", steps=7)
    command = painter.command(settings, 2, refined, mask)
    fv = flags.FlagValues()
    common.define_flags(fv)
    fv(shlex.split(command))
    parsed = common.config_from_flags(fv)
    expected = painter.config(settings)
    names = ["network", "weights", "size", "strength", "style_blend", "preserve_colors", "precision"]
    names += ["init", "scales", "steps", "style_weight", "style_loss", "jit"] if refined else []
    assert {n: getattr(parsed, n) for n in names} == {n: getattr(expected, n) for n in names}, command
    assert parsed.init == ("network" if refined else "content")
    assert parsed.style_mask == (("mask.png", "mask_outside.png") if mask else None)
    assert fv.content == "photo.png" and fv.style == ["painting1.png", "painting2.png"] and fv.output == "painted.png"
