"""nst-tf-app: a web page to paint with (`server`), over `studio` (settings, painting, refine, queue)."""
