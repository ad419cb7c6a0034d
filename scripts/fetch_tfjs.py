"""TensorFlow.js for nst-tf-app's in-browser painting, from the npm registry (no CDN at run time).

    python scripts/fetch_tfjs.py tfjs/

Downloads @tensorflow/tfjs and @tensorflow/tfjs-backend-wasm from registry.npmjs.org once (make tfjs
runs this), checks each archive's SHA-256, and writes their browser files into the folder given:
tf.min.js, tf-backend-wasm.min.js and the WebAssembly kernels (Apache-2.0, (c) Google LLC).
"""

import hashlib
import io
import os
import sys
import tarfile
import urllib.request

VERSION = "4.22.0"
PACKAGES = {  # name: (archive SHA-256, files under package/dist/)
    "tfjs": ("56505c191e24116787477b3bb5bb1cc0cf1c2bdce8112b9c402a8a2d31cf2f00", ["tf.min.js"]),
    "tfjs-backend-wasm": (
        "5cd6f5e18657c12fb94f4ec3dcef485c8c1a9ca39f3ef1d261c1cb13c1a231c3",
        [
            "tf-backend-wasm.min.js",
            "tfjs-backend-wasm.wasm",
            "tfjs-backend-wasm-simd.wasm",
            "tfjs-backend-wasm-threaded-simd.wasm",
        ],
    ),
}


def main(folder: str) -> int:
    os.makedirs(folder, exist_ok=True)
    for package, (sha256, names) in PACKAGES.items():
        url = f"https://registry.npmjs.org/@tensorflow/{package}/-/{package}-{VERSION}.tgz"
        with urllib.request.urlopen(url, timeout=120) as response:
            data = response.read()
        digest = hashlib.sha256(data).hexdigest()
        if digest != sha256:
            sys.stderr.write(f"fetch_tfjs: {url} has SHA-256 {digest}, not {sha256}; not written\n")
            return 2
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
            for name in names:
                path = os.path.join(folder, name)
                with open(path + ".tmp", "wb") as f:
                    f.write(archive.extractfile(f"package/dist/{name}").read())
                os.replace(path + ".tmp", path)
        print(f"wrote {', '.join(names)} into {folder} (@tensorflow/{package} {VERSION})")
    return 0


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", nargs="?", default="tfjs", help="where to write the files (default: tfjs)")
    sys.exit(main(parser.parse_args().folder))
