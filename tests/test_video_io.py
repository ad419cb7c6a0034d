"""Clips in and out through FFmpeg's libraries (PyAV): frame rate (variable too), frame count, odd
sizes, display rotation and audio survive a round trip, as FFmpeg's own probe (through the binding)
reads them; bad clips and outputs are one clear error."""

import fractions
import os

import av
import numpy as np
import pytest

from nst_tf.errors import NstError
from nst_tf.video import io, synthetic


def _make(path, frames, fps=15, audio=True, times=None, rotation=0):
    """An H.264 clip of `frames` (float RGB) at `fps` (or at `times`, seconds), with a 440 Hz AAC tone."""
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=fps)
        h, w = frames[0].shape[:2]
        video.width, video.height, video.pix_fmt = w, h, ("yuv444p" if (w % 2 or h % 2) else "yuv420p")
        video.time_base = video.codec_context.time_base = fractions.Fraction(1, 1000)
        if rotation:
            video.set_display_rotation(rotation)
        sound = out.add_stream("aac", rate=44100) if audio else None
        if sound is not None:
            sound.layout = "mono"
        for k, f in enumerate(frames):
            picture = av.VideoFrame.from_ndarray((f * 255).astype(np.uint8), format="rgb24")
            picture.pts, picture.time_base = round((times[k] if times else k / fps) * 1000), video.time_base
            for packet in video.encode(picture):
                out.mux(packet)
        for packet in video.encode():
            out.mux(packet)
        if sound is not None:
            n = int(44100 * len(frames) / fps)
            tone = (0.2 * np.sin(2 * np.pi * 440 * np.arange(n) / 44100)).astype(np.float32)[None]
            for s0 in range(0, n, 1024):
                chunk = av.AudioFrame.from_ndarray(tone[:, s0 : s0 + 1024], format="fltp", layout="mono")
                chunk.sample_rate, chunk.pts = 44100, s0
                for packet in sound.encode(chunk):
                    out.mux(packet)
            for packet in sound.encode():
                out.mux(packet)


def _ffprobe(path):
    """What FFmpeg itself reads from the file: (width, height, video frames, average rate, audio packets, rotation)."""
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        width, height, rate = v.width, v.height, v.average_rate
        frames = [f.rotation for f in c.decode(video=0)]
    with av.open(str(path)) as c:
        audio = sum(1 for p in c.demux(c.streams.audio[0]) if p.size) if c.streams.audio else 0
    return width, height, len(frames), rate, audio, frames[0]


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    frames = synthetic.clip(frames=20, width=161, height=101, pan=3, speed=5, radius=16).frames  # odd size
    path = tmp_path_factory.mktemp("clip") / "in.mp4"
    _make(path, frames, rotation=90)
    return path, frames


def test_a_round_trip_keeps_rate_count_odd_size_rotation_and_the_audio_packets(clip, tmp_path):
    path, frames = clip
    info = io.probe(str(path))
    assert (info.width, info.height, info.frames, info.rotation, info.audio) == (161, 101, 20, 90, True)
    decoded = list(io.read(str(path)))
    assert [f.index for f in decoded] == list(range(20)) and decoded[0].rgb.shape == (101, 161, 3)
    assert np.abs(decoded[7].rgb - frames[7]).mean() < 0.02  # H.264 at its default quality
    out = tmp_path / "out.mp4"
    io.write(str(out), iter(decoded), info)
    width, height, count, rate, audio, rotation = _ffprobe(out)
    source = _ffprobe(path)
    assert (width, height, count, rotation) == (161, 101, 20, 90)
    assert abs(float(rate) - 15) < 0.05 and abs(float(source[3]) - float(rate)) < 0.05
    assert audio == source[4] > 0  # every audio packet copied, none re-encoded
    with av.open(str(out)) as c:
        assert c.streams.audio[0].codec_context.name == "aac"


def test_a_variable_frame_rate_keeps_each_frames_time(tmp_path):
    frames = synthetic.clip(frames=8, width=96, height=64, pan=2, speed=3, radius=10).frames
    times = [0, 0.05, 0.1, 0.3, 0.35, 0.6, 0.62, 0.9]
    _make(tmp_path / "vfr.mp4", frames, audio=False, times=times)
    assert [round(f.time, 3) for f in io.read(str(tmp_path / "vfr.mp4"))] == times
    info = io.probe(str(tmp_path / "vfr.mp4"))
    for ext in (".mkv", ".mp4"):
        io.write(str(tmp_path / f"out{ext}"), io.read(str(tmp_path / "vfr.mp4")), info)
        assert [round(f.time, 3) for f in io.read(str(tmp_path / f"out{ext}"))] == times


def test_a_slice_and_a_folder_of_frames(clip, tmp_path):
    path, _ = clip
    part = list(io.read(str(path), start=0.5, duration=0.5, every=2))
    assert [f.index for f in part] == [8, 10, 12, 14]  # 15 fps: frames at 0.53 .. 0.93 s, every other
    info = io.probe(str(path))
    io.write(str(tmp_path / "part.mp4"), iter(part), info, start=0.5, duration=0.5)
    sliced = io.probe(str(tmp_path / "part.mp4"))
    assert sliced.frames == 4 and sliced.audio and sliced.duration < 0.6
    io.write(str(tmp_path / "frames"), iter(part), info)  # no extension: a folder of PNG frames
    assert sorted(os.listdir(tmp_path / "frames")) == [f"frame_{k:06d}.png" for k in range(4)]
    folder = io.probe(str(tmp_path / "frames"))
    assert (folder.width, folder.height, folder.frames, folder.folder) == (161, 101, 4, True)
    assert [f.index for f in io.read(str(tmp_path / "frames"))] == [0, 1, 2, 3]


def test_bad_clips_and_outputs_are_one_clear_error(clip, tmp_path):
    path, frames = clip
    (tmp_path / "notes.mp4").write_text("not a video")
    with pytest.raises(NstError, match="not a video FFmpeg can read"):
        io.probe(str(tmp_path / "notes.mp4"))
    with pytest.raises(NstError, match="no such file"):
        io.probe(str(tmp_path / "missing.mp4"))
    with av.open(str(tmp_path / "sound.m4a"), "w") as out:  # audio only
        sound = out.add_stream("aac", rate=44100)
        sound.layout = "mono"
        chunk = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        chunk.sample_rate, chunk.pts = 44100, 0
        for packet in [*sound.encode(chunk), *sound.encode()]:
            out.mux(packet)
    with pytest.raises(NstError, match="no video stream"):
        io.probe(str(tmp_path / "sound.m4a"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(NstError, match="no pictures"):
        io.probe(str(tmp_path / "empty"))
    with pytest.raises(NstError, match="no video encoder here for '.xyz'"):
        io.check_output(str(tmp_path / "out.xyz"), str(path))
    with pytest.raises(NstError, match="is the input"):
        io.check_output(str(path), str(path))
    with pytest.raises(NstError, match="does not exist"):
        io.check_output(str(tmp_path / "no" / "out.mp4"), str(path))
    assert io.check_output(str(tmp_path / "out.webm"), str(path)).endswith("out.webm")


def with_a_corrupt_frame(path, frames, bad=2, fps=10):
    """A .mov of `frames` (float RGB) in the PNG codec (each frame its own packet), then frame `bad`'s
    packet overwritten with zeros past its header: a file FFmpeg opens whose one frame fails to decode."""
    with av.open(str(path), "w", format="mov") as out:
        video = out.add_stream("png", rate=fps)
        video.height, video.width = frames[0].shape[:2]
        video.pix_fmt = "rgb24"
        for k, f in enumerate(frames):
            picture = av.VideoFrame.from_ndarray((f * 255).astype(np.uint8), format="rgb24")
            picture.pts = k
            for packet in video.encode(picture):
                out.mux(packet)
        for packet in video.encode():
            out.mux(packet)
    with av.open(str(path)) as container:
        packets = [(p.pos, p.size) for p in container.demux(video=0) if p.size]
    data = bytearray(open(path, "rb").read())
    pos, size = packets[bad]
    data[pos + 40 : pos + size - 8] = bytes(size - 48)
    with open(path, "wb") as f:
        f.write(data)
    return str(path)


def test_a_corrupt_frame_inside_a_video_file_is_named_or_replaced_by_the_previous_one(tmp_path):
    frames = synthetic.clip(frames=5, width=64, height=48, pan=2, speed=3, radius=8).frames
    path = with_a_corrupt_frame(tmp_path / "bad.mov", frames, bad=2)
    assert io.probe(path).frames == 5  # the file opens; its frame 2 does not decode
    with pytest.raises(NstError, match="frame 2 cannot be decoded"):
        list(io.read(path))
    replaced = list(io.read(path, skip_bad=True))
    assert [f.index for f in replaced] == [0, 1, 2, 3, 4]
    assert np.array_equal(replaced[2].rgb, replaced[1].rgb) and not np.array_equal(replaced[3].rgb, replaced[1].rgb)
    np.testing.assert_allclose(replaced[3].rgb, frames[3], atol=1 / 255)  # lossless PNG frames
