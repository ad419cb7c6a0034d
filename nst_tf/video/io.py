"""Reading and writing clips through FFmpeg's libraries (PyAV, the optional extra `[video]`).

PyAV rather than a pipe to an ffmpeg binary (imageio-ffmpeg): it gives each frame its own timestamp
(so a variable frame rate survives), the streams' rates, durations and display rotation, and it
copies the audio packets into the output without decoding them. Decoding speed does not decide: on
this project's 2-core CPU PyAV decoded a 384x288 H.264 clip at about 500 frames/s and
imageio-ffmpeg at about 1000, against about 2 frames/s for the fastest painter.

A clip is a video file (any container and codec FFmpeg reads) or a folder of pictures (sorted by
name, at `FOLDER_FPS`). Frames come out as float32 RGB `[H, W, 3]` in [0, 1] with their time in
seconds; the output keeps the input's timestamps, size, display rotation and audio.
"""

from __future__ import annotations

import fractions
import os
from typing import Iterator, List, NamedTuple, Optional

import numpy as np

from nst_tf import files, image_io
from nst_tf.errors import NstError

FOLDER_FPS = 30  # a folder of pictures has no timestamps: frame k is at k / FOLDER_FPS s
# The pictures a folder clip takes (by extension): what nst_tf writes, and the Netpbm frames
# that research code exchanges (.ppm).
FRAME_EXTENSIONS = (*image_io.SAVE_FORMATS, ".ppm", ".pnm")
# Output containers by extension, and their video codec and pixel format (odd sizes: 4:4:4).
CONTAINERS = {
    ".mp4": ("mp4", "libx264"),
    ".mov": ("mov", "libx264"),
    ".mkv": ("matroska", "libx264"),
    ".webm": ("webm", "libvpx-vp9"),
    ".gif": ("gif", "gif"),
}


def _av():
    try:
        import av
    except ImportError as err:
        raise NstError("video files need PyAV: pip install 'nst_tf[video]'") from err
    return av


class ClipInfo(NamedTuple):
    """What a clip is: its frame size, frame count (exact for a folder; the container's count or an
    estimate for a file), average rate (frames/s), duration (s), display rotation (degrees), whether
    it has audio, and whether it is a folder of pictures."""

    path: str
    width: int
    height: int
    frames: int
    fps: fractions.Fraction
    duration: float
    rotation: int
    audio: bool
    folder: bool


class Frame(NamedTuple):
    index: int  # the frame's index in the clip (from 0)
    time: float  # seconds from the clip's start
    rgb: np.ndarray  # float32 [H, W, 3] in [0, 1]


def _folder_files(path: str) -> List[str]:
    names = sorted(f for f in os.listdir(path) if os.path.splitext(f)[1].lower() in FRAME_EXTENSIONS)
    return [os.path.join(path, f) for f in names]


def probe(path: str) -> ClipInfo:
    """The clip at `path`, checked: an `NstError` for a missing file, one FFmpeg cannot open, one
    with no video stream or no frame."""
    if os.path.isdir(path):
        names = _folder_files(path)
        if not names:
            raise NstError(f"{path}: a folder with no pictures in it")
        first = image_io.load_image(names[0])
        return ClipInfo(
            path,
            first.shape[1],
            first.shape[0],
            len(names),
            fractions.Fraction(FOLDER_FPS),
            len(names) / FOLDER_FPS,
            0,
            False,
            True,
        )
    if not os.path.isfile(path):
        raise NstError(f"{path}: no such file")
    av = _av()
    try:
        with av.open(path) as container:
            if not container.streams.video:
                raise NstError(f"{path}: no video stream (a sound file?)")
            stream = container.streams.video[0]
            fps = stream.average_rate or stream.guessed_rate or fractions.Fraction(FOLDER_FPS)
            duration = float(stream.duration * stream.time_base) if stream.duration else (container.duration or 0) / 1e6
            first = next(container.decode(video=0), None)
            if first is None:
                raise NstError(f"{path}: a video stream with no frame in it")
            count = stream.frames or max(1, round(duration * float(fps)))
            audio = bool(container.streams.audio)
            return ClipInfo(
                path,
                first.width,
                first.height,
                count,
                fractions.Fraction(fps),
                duration,
                int(first.rotation or 0),
                audio,
                False,
            )
    except av.error.FFmpegError as err:
        raise NstError(f"{path}: not a video FFmpeg can read ({type(err).__name__}: {err.strerror or err})") from None


def read(
    path: str, start: float = 0.0, duration: Optional[float] = None, every: int = 1, skip_bad: bool = False
) -> Iterator[Frame]:
    """The clip's frames from `start` s for `duration` s (None: to the end), every `every`-th one of
    those (from the first).
    A frame that cannot be decoded raises an `NstError` naming its index, or with `skip_bad` comes
    out as the previous frame again (at its own index and time)."""
    frames = _folder_frames(path) if os.path.isdir(path) else _file_frames(path)
    previous, position = None, 0  # previous: the last frame's loader, for a bad frame's place
    for index, time, load in frames:  # load(): the frame's RGB (None: not decodable); called only if kept
        if duration is not None and time >= start + duration - 1e-9:
            break
        kept = time >= start - 1e-9
        position += kept  # every k-th frame of the slice, from its first
        if not kept or (position - 1) % every:
            previous = load if load is not None else previous
            continue
        rgb = _called(load)
        if rgb is None:
            rgb = _called(previous) if skip_bad else None
            if rgb is None:
                raise NstError(
                    f"{path}: frame {index} cannot be decoded (--skip_bad_frames replaces it by the previous one)"
                )
        previous = lambda rgb=rgb: rgb  # noqa: E731
        yield Frame(index, time, rgb)


def _called(load) -> Optional[np.ndarray]:
    """`load()`, or None for a frame that cannot be decoded."""
    try:
        return None if load is None else load()
    except NstError:
        return None


def _folder_frames(path: str):
    for index, name in enumerate(_folder_files(path)):
        yield index, index / FOLDER_FPS, lambda name=name: image_io.load_image(name)


def _file_frames(path: str):
    """(index, time, loader or None) for each frame, decoding packet by packet so that one bad
    packet costs one frame; a frame becomes RGB only when its loader is called."""
    av = _av()
    with av.open(path) as container:
        stream = container.streams.video[0]
        rate = float(stream.average_rate or FOLDER_FPS)
        index = 0
        for packet in container.demux(stream):
            try:
                decoded = packet.decode()
            except av.error.FFmpegError:
                if packet.pts is not None:  # a frame was in it
                    yield index, float(packet.pts * stream.time_base), None
                    index += 1
                continue
            for frame in decoded:
                time = float(frame.pts * stream.time_base) if frame.pts is not None else index / rate
                yield index, time, lambda frame=frame: frame.to_ndarray(format="rgb24").astype(np.float32) / 255.0
                index += 1


def check_output(path: str, input_path: str) -> str:
    """An output path checked before any work: a video file (`CONTAINERS`' extensions) or a folder
    for PNG frames (no extension); not the input."""
    ext = os.path.splitext(path)[1].lower()
    if ext and ext not in CONTAINERS:
        raise NstError(
            f"{path}: no video encoder here for {ext!r}; choose {', '.join(CONTAINERS)}, or no extension for a folder of PNG frames"
        )
    if os.path.abspath(path) == os.path.abspath(input_path) or (
        os.path.exists(path) and os.path.exists(input_path) and os.path.samefile(path, input_path)
    ):
        raise NstError(f"the output {path} is the input; choose another output path")
    if ext:  # the folder exists and can be written (the picture commands' own check)
        return image_io.check_output_path(path, tuple(CONTAINERS))
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise NstError(f"{path}: the folder {parent} does not exist")
    return path


def write(
    path: str, frames: Iterator[Frame], info: ClipInfo, start: float = 0.0, duration: Optional[float] = None
) -> str:
    """Writes `frames` (uint8 or float RGB, with their times) to `path`: a video file at the clip's
    timestamps (`time - start`), size and display rotation, with the input's audio from `start` for
    `duration` copied packet by packet; or, with no extension, a folder of PNG frames. Written
    atomically (the file or folder appears whole)."""
    ext = os.path.splitext(path)[1].lower()
    if not ext:

        def fill(folder):
            for k, frame in enumerate(frames):
                image_io.save_image(os.path.join(folder, f"frame_{k:06d}.png"), frame.rgb)

        return files.write_folder(path, fill, overwrite=True)
    return files.write_file(path, lambda tmp: _encode(tmp, ext, frames, info, start, duration))


def _encode(tmp: str, ext: str, frames, info: ClipInfo, start: float, duration: Optional[float]) -> None:
    av = _av()
    fmt, codec = CONTAINERS[ext]
    time_base = fractions.Fraction(1, 1000) if fmt != "gif" else fractions.Fraction(1, 100)
    with av.open(tmp, "w", format=fmt) as out:
        video = out.add_stream(codec, rate=info.fps)
        video.width, video.height = info.width, info.height
        odd = info.width % 2 or info.height % 2
        video.pix_fmt = {"gif": "rgb8", "libvpx-vp9": "yuv420p"}.get(codec, "yuv444p" if odd else "yuv420p")
        video.time_base = video.codec_context.time_base = time_base  # the frames' own times (variable rates)
        if info.rotation:
            video.set_display_rotation(info.rotation)
        audio_in = audio_out = source = None
        if info.audio and not info.folder and fmt in ("mp4", "mov", "matroska"):
            source = av.open(info.path)
            audio_in = source.streams.audio[0]
            audio_out = out.add_stream_from_template(audio_in)
        last = None
        for frame in frames:
            rgb = frame.rgb if frame.rgb.dtype == np.uint8 else image_io.to_uint8(frame.rgb)
            picture = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            pts = round((frame.time - start) / time_base)
            picture.pts = pts if last is None or pts > last else last + 1  # strictly increasing
            picture.time_base = time_base
            last = picture.pts
            for packet in video.encode(picture):
                out.mux(packet)
        for packet in video.encode():
            out.mux(packet)
        if audio_in is not None:
            end = None if duration is None else start + duration
            if start:
                source.seek(int(start / audio_in.time_base), stream=audio_in, any_frame=False, backward=True)
            for packet in source.demux(audio_in):
                if packet.dts is None:
                    continue
                t = float(packet.pts * audio_in.time_base)
                if start and t < start - 1e-9:
                    continue
                if end is not None and t >= end:
                    break
                shift = int(start / audio_in.time_base)
                packet.pts -= shift
                packet.dts -= shift
                packet.stream = audio_out
                out.mux(packet)
            source.close()
