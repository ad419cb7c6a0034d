"""nst-tf-app: a web page to paint with, served from this machine.

    nst-tf-app                      then open http://127.0.0.1:8765/
    nst-tf-app --host=0.0.0.0 --token=SECRET   (other machines open http://<this machine>:8765/?token=SECRET)

Drop a photo and one or more paintings (or pick the bundled ones): the one-pass painter's painting
(--network=demo: Magenta's arbitrary network)
appears at once; Refine runs the optimisation from it and streams its progress; the result downloads
as a PNG with the command line that makes it. Served beyond this machine (--host other than
loopback), every route but the static files needs --token (or $NST_TF_APP_TOKEN); what the server
promises and what to put in front of it: docs/security.md. With --tfjs_dir (`nst-tf-export-network
--tfjs_dir=...`), the page can also paint in the browser with TensorFlow.js.
"""

import os

from absl import flags

from nst_tf import config as config_lib
from nst_tf.commands import common
from nst_tf.errors import NstError
from nst_tf.app.studio import Limits

NAME = "nst-tf-app"
TOKEN_ENV = "NST_TF_APP_TOKEN"
LOOPBACK = ("127.0.0.1", "::1", "localhost")


def define():

    flags.DEFINE_string(
        "host", "127.0.0.1", "Address to listen on (default: this machine only; any other needs --token)."
    )
    flags.DEFINE_string(
        "token",
        os.environ.get(TOKEN_ENV) or None,
        f"A secret every API request must carry (Bearer header, ?token=, or the cookie the page gets from "
        f"/?token=...). Required with a --host other than loopback. Default: ${TOKEN_ENV}.",
    )
    flags.DEFINE_integer("port", 8765, "Port to listen on.")
    flags.DEFINE_string(
        "network",
        "demo",
        "A network that paints any painting: demo (the default: arbitrary), arbitrary, universal or a file.",
    )
    flags.DEFINE_string("weights", "auto", config_lib.option_help("weights"))
    flags.DEFINE_string("tfjs_dir", None, "A TensorFlow.js export of the painter (nst-tf-export-network --tfjs_dir).")
    common.define_autotune_flag()
    defaults = Limits()
    flags.DEFINE_integer("max_upload_mb", defaults.max_upload_bytes // 2**20, "Largest upload (all files), MB.")
    flags.DEFINE_integer("max_size", defaults.max_size, "Largest output side a page may ask for, pixels.")
    flags.DEFINE_integer("max_steps", defaults.max_steps, "Most refine steps a page may ask for.")
    flags.DEFINE_integer("max_refines", defaults.max_refines, "Refines queued or running at once (beyond: 503).")
    flags.DEFINE_integer(
        "memory_mb",
        defaults.memory_bytes // 2**20,
        "Budget for decoded pictures held by requests in flight and queued, MB (beyond: 503). "
        "Default: an eighth of this machine's memory, at most 2048.",
    )


def main(argv) -> int:
    fv = flags.FLAGS
    common.no_arguments(argv)
    if not 0 < fv.port < 65536:
        raise NstError(f"--port must be in 1..65535, got {fv.port}")
    if fv.host not in LOOPBACK and not fv.token:
        raise NstError(
            f"--host={fv.host} serves other machines: give --token=SECRET (or ${TOKEN_ENV}) so only those who "
            "know it can paint, or keep the default --host=127.0.0.1"
        )
    for name in ("max_upload_mb", "max_size", "max_steps", "max_refines", "memory_mb"):
        if fv[name].value <= 0:
            raise NstError(f"--{name} must be positive, got {fv[name].value}")
    if fv.tfjs_dir and not os.path.isfile(os.path.join(fv.tfjs_dir, "style_transform", "model.json")):
        raise NstError(
            f"{fv.tfjs_dir}: no TensorFlow.js painter in it (nst-tf-export-network --tfjs_dir=... writes one)"
        )
    common.check_network(fv.network)
    common.import_tensorflow_quietly()
    from aiohttp import web

    from nst_tf.app import server, studio  # loads aiohttp and TensorFlow: not at import

    limits = studio.Limits(
        max_upload_bytes=fv.max_upload_mb * 2**20,
        max_size=fv.max_size,
        max_steps=fv.max_steps,
        max_refines=fv.max_refines,
        memory_bytes=fv.memory_mb * 2**20,
    )
    painter = studio.Studio(fv.network, fv.weights, fv.autotune)
    app = server.make_app(painter, limits, fv.tfjs_dir, fv.token)
    query = "?token=<your token>" if fv.token else ""
    ready = f"{NAME}: open http://{fv.host}:{fv.port}/{query} (Ctrl-C stops)"  # once the port is bound
    try:
        web.run_app(app, host=fv.host, port=fv.port, print=lambda _: print(ready, flush=True), access_log=None)
    except OSError as err:  # the port is taken, or the address is not this machine's
        raise NstError(f"cannot listen on {fv.host}:{fv.port} ({err.strerror or err}); choose another --port") from None
    return 0


def run():
    common.run(NAME, main, define, __doc__)


if __name__ == "__main__":
    run()
