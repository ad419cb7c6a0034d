"""The web server behind nst-tf-app (aiohttp): one page, the bundled pictures, and a small API.

    GET  /                      the page (and /static/<name>: its script, style sheet, TensorFlow.js)
    GET  /api/info              the limits, and whether the browser can paint (TensorFlow.js)
    GET  /api/pictures          the bundled photos and paintings: [{"name", "kind"}]
    GET  /api/pictures/<name>   one of them (JPEG)
    POST /api/paint             multipart: photo, painting (one or more), mask (optional), the
                                settings (`studio.settings_from_form`) -> the painting (PNG)
    POST /api/refine            the same -> {"job": id, "place": n}
    GET  /api/jobs/<id>         a WebSocket: the job's events as JSON (pictures as PNG data URLs);
                                the page sends "stop"; closing it (a closed tab) cancels the job
    GET  /tfjs/<model>/<file>   the network for painting in the browser, when the app has one
    GET  /tfjs/tf.min.js        TensorFlow.js itself (from the npm registry, in the same folder)

aiohttp, measured against Flask and Starlette (`scripts/benchmark.py --app` does not decide this;
docs/app.md does): the one of the three with WebSockets, multipart uploads and an upload
limit built in, and no template engine or CLI framework beside TensorFlow. Nothing a request says
is a path: pictures and files are looked up by name in tables made at start-up. Results stay in the
tab's own job (its id is unguessable) and are never written to disk.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import hmac
import json
import os
import time
import urllib.parse
from typing import Callable, Dict, NamedTuple, Optional

import numpy as np
from aiohttp import WSMsgType, web

from nst_tf import image_io
from nst_tf.app import studio as studio_lib
from nst_tf.errors import NstError

PAGE = os.path.join(os.path.dirname(__file__), "page")
STATIC_TYPES = {
    ".js": "text/javascript",
    ".css": "text/css",
    ".html": "text/html",
    ".json": "application/json",
    ".wasm": "application/wasm",
}
# Cross-origin isolation: TensorFlow.js's WebAssembly kernels may then run on several threads.
ISOLATION = {"Cross-Origin-Opener-Policy": "same-origin", "Cross-Origin-Embedder-Policy": "require-corp"}
TOKEN_COOKIE = "nst_tf_token"


class _State(NamedTuple):
    """What the handlers share: the studio and its queue, the limits, the memory budget and the
    decode pool, the jobs by id, the tables of what may be served (name -> path), the token."""

    studio: studio_lib.Studio
    limits: studio_lib.Limits
    queue: studio_lib.Queue
    budget: studio_lib.Budget
    decoder: concurrent.futures.ThreadPoolExecutor
    jobs: dict
    pictures: Dict[str, tuple]
    static: Dict[str, str]
    tfjs: Dict[str, str]
    token: Optional[str]


STATE = web.AppKey("nst_tf", _State)


def _files(folder: str, recursive: bool = False) -> Dict[str, str]:
    """`{relative name: path}` of the files under `folder` (empty if it is missing): the only paths
    the server reads."""
    out = {}
    if not os.path.isdir(folder):
        return out
    for root, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            out[os.path.relpath(path, folder).replace(os.sep, "/")] = path
        if not recursive:
            break
    return out


def _pictures() -> Dict[str, tuple]:
    """`{name: (kind, path)}` of the bundled photos and paintings."""
    out = {}
    for kind, folder in (("photo", image_io.PHOTOS), ("painting", image_io.PAINTINGS)):
        for name, path in sorted(_files(folder).items()):
            if name.endswith(".jpg"):
                out[name[:-4]] = (kind, path)
    return out


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _token_given(request) -> str:
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        return header[len("Bearer ") :]
    return request.query.get("token") or request.cookies.get(TOKEN_COOKIE) or ""


@web.middleware
async def _auth(request, handler):
    """With a token, every route but the page's static files needs it: `Authorization: Bearer
    <token>`, `?token=<token>` (the page opened as `/?token=...` keeps it in a same-site cookie),
    or that cookie. Compared in constant time."""
    token = request.app[STATE].token
    if token is None or request.path.startswith("/static/"):
        return await handler(request)
    if not hmac.compare_digest(_token_given(request).encode(), token.encode()):
        return _error(
            401, "this server needs its token: open the page as /?token=<token>, or send Authorization: Bearer"
        )
    response = await handler(request)
    if request.path == "/" and request.query.get("token"):
        response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="Strict")
    return response


@web.middleware
async def _errors(request, handler):
    """A user's mistake is a 4xx with one line for the page, never a traceback."""
    try:
        response = await handler(request)
        if not isinstance(response, web.WebSocketResponse):
            response.headers.update(ISOLATION)
        return response
    except studio_lib.Busy as err:
        response = _error(503, str(err))
        response.headers["Retry-After"] = str(err.retry_after)
        return response
    except NstError as err:
        return _error(400, str(err))
    except web.HTTPRequestEntityTooLarge as err:
        limit = request.app[STATE].limits.max_upload_bytes
        return _error(413, f"the upload is over this server's limit of {limit / 2**20:g} MB ({err.text})")


class _Form(NamedTuple):
    """A paint or refine request, decoded and checked; `release` frees its share of the budget."""

    photo: np.ndarray
    paintings: list
    mask: Optional[np.ndarray]
    settings: studio_lib.Settings
    names: Optional[tuple] = None  # (the photo's file name, [the paintings'])
    release: Callable[[], None] = lambda: None


def safe_name(given: str, default: str) -> str:
    """An uploaded file's name as the command line shows it: the base name, its characters other
    than letters, digits, '.', '-' and '_' replaced by '_' (never a path, a newline or a comma,
    which --style splits at), at most 64 characters."""
    base = os.path.basename(given.replace("\\", "/"))
    cleaned = "".join(c if c.isascii() and (c.isalnum() or c in "._-") else "_" for c in base)[-64:]
    return cleaned.lstrip(".") or default


async def _read_form(request) -> _Form:
    """The request's form: every cheap check first (counts, settings, each upload's header and
    pixels), then the request's share of the memory budget (`Busy` when it is full), then the
    pictures decoded in the decode pool, each shrunk while decoding to the size it is painted at."""
    if request.content_type not in ("multipart/form-data", "application/x-www-form-urlencoded"):
        raise NstError("send the pictures as a form (multipart/form-data)")
    post = await request.post()
    state = request.app[STATE]
    loop = asyncio.get_running_loop()
    checked = await loop.run_in_executor(state.decoder, _check_form, post, state.limits, state.pictures)
    release = state.budget.reserve(checked.bytes_needed)
    try:
        form = await loop.run_in_executor(state.decoder, _decode_form, checked)
    except BaseException:
        release()
        raise
    return form._replace(release=release)


class _Checked(NamedTuple):
    """A form whose headers have been read and checked, nothing decoded yet."""

    photo: object  # a bundled picture's path, or a peeked upload (`image_io.peek`)
    paintings: list
    mask: object
    settings: studio_lib.Settings
    names: tuple
    bytes_needed: int


def _check_form(post, limits: studio_lib.Limits, pictures) -> _Checked:
    photos, paintings = post.getall("photo", []), post.getall("painting", [])
    if len(photos) != 1:
        raise NstError("send one photo")
    if not paintings:
        raise NstError("send at least one painting")
    if len(paintings) > limits.max_paintings:
        raise NstError(f"at most {limits.max_paintings} paintings at once")
    masks = [m for m in post.getall("mask", []) if not isinstance(m, str)]
    if len(masks) > 1:
        raise NstError("send at most one mask")
    studio_lib.check_regions(bool(masks), len(paintings))
    fields = {k: v for k, v in post.items() if isinstance(v, str) and k not in ("photo", "painting", "mask")}
    settings = studio_lib.settings_from_form(fields, len(paintings), limits)

    def header(value, what):
        if isinstance(value, str):  # a bundled picture, by name
            if value not in pictures:
                raise NstError(f"no bundled picture {value!r}")
            return pictures[value][1]
        return image_io.peek(value.file, what, limits.max_input_pixels)

    def name(value, default):  # the file name the command line shows
        return safe_name(value, "") + ".jpg" if isinstance(value, str) else safe_name(value.filename or "", default)

    photo = header(photos[0], "the photo")
    styles = [header(p, f"painting {k + 1}") for k, p in enumerate(paintings)]
    mask = header(masks[0], "the mask") if masks else None
    uploads = [p for p in [photo, *styles, mask] if p is not None and not isinstance(p, str)]
    needed = sum(image_io.decode_bytes_needed(p, settings.size) for p in uploads)
    names = (name(photos[0], "photo.png"), [name(p, f"painting{k + 1}.png") for k, p in enumerate(paintings)])
    return _Checked(photo, styles, mask, settings, names, needed)


def _decode_form(form: _Checked) -> _Form:
    size = form.settings.size

    def picture(source, max_side=None):
        if isinstance(source, str):  # a bundled picture: as the command line reads it
            return image_io.load_image(source)
        return image_io.load_image(image_io.decode(source, max_side))

    photo = image_io.load_photo(picture(form.photo, size), size)
    paintings = [picture(p, size) for p in form.paintings]
    mask = None
    if form.mask is not None:
        mask = image_io.resize(picture(form.mask, size), photo.shape[:2]).mean(axis=-1)
    return _Form(photo, paintings, mask, form.settings, form.names)


async def page(request):
    return web.FileResponse(os.path.join(PAGE, "index.html"), headers={"Cache-Control": "no-store"})


async def static(request):
    path = request.app[STATE].static.get(request.match_info["name"])
    if path is None:
        raise web.HTTPNotFound()
    kind = STATIC_TYPES.get(os.path.splitext(path)[1], "application/octet-stream")
    return web.FileResponse(path, headers={"Content-Type": kind})


async def tfjs(request):
    name = "/".join(filter(None, (request.match_info.get("model"), request.match_info["name"])))
    path = request.app[STATE].tfjs.get(name)
    if path is None:
        raise web.HTTPNotFound()
    kind = STATIC_TYPES.get(os.path.splitext(path)[1], "application/octet-stream")
    return web.FileResponse(path, headers={"Content-Type": kind})


async def info(request):
    limits, tfjs = request.app[STATE].limits, request.app[STATE].tfjs
    models = sorted({name.split("/")[0] for name in tfjs if name.endswith("/model.json")})
    if "tf.min.js" not in tfjs:  # the models alone cannot run
        models = []
    return web.json_response(
        {
            "limits": limits._asdict(),
            "options": studio_lib.page_options(limits),
            "tfjs": models,
            "network": request.app[STATE].studio.network,
            "painter": request.app[STATE].studio.painter.name,
        }
    )


async def pictures(request):
    return web.json_response([{"name": n, "kind": k} for n, (k, _) in request.app[STATE].pictures.items()])


async def picture(request):
    found = request.app[STATE].pictures.get(request.match_info["name"])
    if found is None:
        raise web.HTTPNotFound()
    return web.FileResponse(found[1], headers={"Content-Type": "image/jpeg"})


def header_text(text: str) -> str:
    """`text` percent-encoded for an HTTP header (the page decodes it with decodeURIComponent):
    nothing a user wrote reaches a header raw."""
    return urllib.parse.quote(text, safe=" =-_.,/:'\"@+")


async def paint(request):
    studio: studio_lib.Studio = request.app[STATE].studio
    form = await _read_form(request)
    try:
        start = time.perf_counter()
        image = await asyncio.get_running_loop().run_in_executor(
            None, studio.paint, form.photo, form.paintings, form.settings, form.mask
        )
        seconds = time.perf_counter() - start
    finally:
        form.release()
    command = studio.command(
        form.settings, len(form.paintings), refined=False, mask=form.mask is not None, names=form.names
    )
    body = studio_lib.png_bytes(image, command)
    headers = {"X-Paint-Seconds": f"{seconds:.3f}", "X-Command": header_text(command), "Cache-Control": "no-store"}
    return web.Response(body=body, content_type="image/png", headers=headers)


async def refine(request):
    form = await _read_form(request)
    loop, events = asyncio.get_running_loop(), asyncio.Queue()

    def send(event):  # from the refine's thread into the tab's WebSocket
        loop.call_soon_threadsafe(events.put_nowait, event)

    job = studio_lib.Job(form.photo, form.paintings, form.settings, form.mask, send, form.names)
    job.release = form.release  # held until the job ends (done, stopped, cancelled or never claimed)
    jobs = request.app[STATE].jobs
    try:
        place = request.app[STATE].queue.submit(job)
    except studio_lib.Busy:
        form.release()
        raise
    jobs[job.id] = (job, events)

    def unclaimed():
        if job.id in jobs and not job.claimed.is_set():
            request.app[STATE].queue.cancel(job)
            jobs.pop(job.id, None)

    loop.call_later(studio_lib.CLAIM_SECONDS, unclaimed)
    return web.json_response({"job": job.id, "place": place})


def _wire(event: dict) -> str:
    event = dict(event)
    if "image" in event:
        event["image"] = "data:image/png;base64," + base64.b64encode(event["image"]).decode()
    return json.dumps(event)


async def job_events(request):
    jobs = request.app[STATE].jobs
    found = jobs.get(request.match_info["id"])
    if found is None or found[0].claimed.is_set():
        raise web.HTTPNotFound()
    job, events = found
    job.claimed.set()
    socket = web.WebSocketResponse(heartbeat=20)
    await socket.prepare(request)

    async def listen():  # "stop" from the page
        async for message in socket:
            if message.type == WSMsgType.TEXT and message.data == "stop":
                job.stop.set()

    listener = asyncio.ensure_future(listen())
    try:
        while True:
            getter = asyncio.ensure_future(events.get())
            done, _ = await asyncio.wait({getter, listener}, return_when=asyncio.FIRST_COMPLETED)
            if getter not in done:  # the tab went away
                getter.cancel()
                break
            event = getter.result()
            await socket.send_str(_wire(event))
            if event["type"] in ("done", "stopped", "error"):
                break
    finally:
        request.app[STATE].queue.cancel(job)  # a closed tab frees its place (or stops its run)
        jobs.pop(job.id, None)
        listener.cancel()
        await socket.close()
    return socket


def make_app(
    studio: studio_lib.Studio,
    limits: studio_lib.Limits = studio_lib.Limits(),
    tfjs_dir: Optional[str] = None,
    token: Optional[str] = None,
):
    """The aiohttp application: the page and the API over `studio`, uploads checked against
    `limits` (docs/security.md), the TensorFlow.js network from `tfjs_dir` (if given) for painting
    in the browser, and every route but the static files behind `token` when one is given."""
    app = web.Application(client_max_size=limits.max_upload_bytes, middlewares=[_errors, _auth])
    app[STATE] = _State(
        studio=studio,
        limits=limits,
        queue=studio_lib.Queue(studio, limits.max_refines),
        budget=studio_lib.Budget(limits.memory_bytes),
        # Decoding is CPU work: no more at once than the machine has cores (at most 2).
        decoder=concurrent.futures.ThreadPoolExecutor(min(2, os.cpu_count() or 1), "nst-tf-app decode"),
        jobs={},
        pictures=_pictures(),
        static=_files(PAGE),
        tfjs=_files(tfjs_dir, recursive=True) if tfjs_dir else {},
        token=token or None,
    )
    app.router.add_get("/", page)
    app.router.add_get("/static/{name}", static)
    app.router.add_get("/api/info", info)
    app.router.add_get("/api/pictures", pictures)
    app.router.add_get("/api/pictures/{name}", picture)
    app.router.add_post("/api/paint", paint)
    app.router.add_post("/api/refine", refine)
    app.router.add_get("/api/jobs/{id}", job_events)
    app.router.add_get("/tfjs/{name}", tfjs)
    app.router.add_get("/tfjs/{model}/{name}", tfjs)
    return app
