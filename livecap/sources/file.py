"""Media files as a source: decoding any format FFmpeg reads into 16 kHz mono blocks.

Decoding tolerates damage: packets are demuxed and decoded one at a time, so a damaged packet is
skipped (and counted, and replaced by its length of silence so that later timestamps stay true)
instead of ending the file there. What was lost is reported in a `DecodeReport`, never hidden: a
file shorter than its header says is reported as truncated. Plain functions, no terminal: a server
decoding uploads reuses them.
"""

from __future__ import annotations

import os
import shutil
import stat
import struct
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np

from livecap.errors import LivecapError
from livecap.messages import SAMPLE_RATE
from livecap.sources.queue import CaptureQueue, RawBlock

GAP_S = 0.1  # a jump in packet timestamps beyond this is audio the demuxer skipped
SHORT_S = 0.5  # decoding this much (and 2 %) less than the header announces means truncated


@dataclass
class DecodeReport:
    """What decoding a file found. `duration_s` counts the silence put in for damaged audio, so
    it is the length the captions' timestamps span; `skipped_s` is the audio lost to damage."""

    header_s: float | None = None
    duration_s: float = 0.0
    audio_s: float = 0.0  # audio really decoded (no filler)
    damaged_packets: int = 0
    skipped_s: float = 0.0
    stopped: str | None = None  # why decoding ended before the end of the file
    recovered: bool = False  # audio decoded after the first damage: the file goes on past it
    tracks: int = 1
    finished: bool = False

    @property
    def missing_s(self) -> float:
        """Seconds the header announces beyond what was decoded."""
        return max(0.0, (self.header_s or 0.0) - self.duration_s) if self.finished else 0.0

    @property
    def damaged(self) -> bool:
        """Damage inside the file, with audio after it (damage only at the very end is a cut, and
        counts as truncation when the header promised more)."""
        return bool(self.stopped) or (
            bool(self.damaged_packets or self.skipped_s) and self.recovered
        )

    @property
    def truncated(self) -> bool:
        """Ended well short of the header's duration, with no damage inside: the end is missing."""
        header = self.header_s or 0.0
        return not self.damaged and self.missing_s > max(SHORT_S, 0.02 * header)

    def lost_s(self) -> float:
        """Audio lost to damage: skipped packets and gaps, or what the header promised beyond (a
        demuxer resyncing past garbage drops audio without a failed packet), the larger."""
        return max(self.skipped_s, self.missing_s) if self.damaged else 0.0

    def warnings(self, name: str) -> list[str]:
        """One line per problem, for people."""
        out = []
        if self.truncated:
            out.append(
                f"{name}: truncated: decoded {self.duration_s:.1f} s of the {self.header_s:.1f} s "
                "its header announces"
            )
        elif self.damaged:
            packets = self.damaged_packets
            how = (
                f"{packets} damaged packet{'s' * (packets != 1)} skipped"
                if packets
                else "a gap in its timestamps"
            )
            out.append(f"{name}: damaged: {self.lost_s():.1f} s of audio lost ({how})"
                       + (f"; decoding stopped early ({self.stopped})" if self.stopped else ""))
        if self.tracks > 1:
            out.append(
                f"{name}: has {self.tracks} audio tracks; this is one of them (--audio-track N "
                "picks, from 0)"
            )
        return out

    def to_dict(self) -> dict[str, object]:
        """The json "warnings"/"skipped_s"/"truncated" fields."""
        return {
            "skipped_s": round(self.lost_s(), 3),
            "damaged_packets": self.damaged_packets,
            "truncated": self.truncated,
            "missing_s": round(self.missing_s, 3) if self.truncated else 0.0,
        }


def _check_path(path: Path) -> None:
    try:
        info = path.stat()
    except FileNotFoundError:
        raise LivecapError(f"{path}: no such file") from None
    except OSError as error:  # a name too long, a folder without permission, ...
        raise LivecapError(f"{path}: cannot read ({error.strerror or error})") from None
    if stat.S_ISDIR(info.st_mode):
        raise LivecapError(f"{path}: is a directory, not an audio or video file")
    if not stat.S_ISREG(info.st_mode):
        raise LivecapError(
            f"{path}: is a pipe or device, not a file; read it with `livecap file -` (standard "
            "input)"
        )
    if info.st_size == 0:
        raise LivecapError(f"{path}: empty file")


def _open_container(path: Path, track: int):  # noqa: ANN202 - av types are optional to name
    """The container and its chosen audio stream, or a one-line error."""
    import av

    _check_path(path)
    try:
        container = av.open(str(path), metadata_errors="ignore")
    except av.error.FFmpegError as error:
        raise LivecapError(
            f"{path}: not a readable audio or video file ({_reason(error)})"
        ) from None
    except OSError as error:
        raise LivecapError(f"{path}: cannot read ({error.strerror or error})") from None
    audio = container.streams.audio
    if not audio:
        container.close()
        raise LivecapError(f"{path}: has no audio track")
    if not 0 <= track < len(audio):
        container.close()
        raise LivecapError(
            f"{path}: has {len(audio)} audio track(s); --audio-track takes 0 to {len(audio) - 1}"
        )
    return container, audio[track]


def _reason(error: Exception) -> str:
    return getattr(error, "strerror", None) or str(error).split(":")[0] or type(error).__name__


def _header_seconds(container, stream) -> float | None:  # noqa: ANN001
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    return container.duration / 1_000_000 if container.duration else None


# at or above: a placeholder left by a writer that could not seek back
UNKNOWN_RIFF_SIZE = 0x7FFFF000


def _riff_seconds(path: Path) -> float | None:
    """The duration a WAV's own header announces (its data chunk's size over its byte rate).
    FFmpeg's WAV reader shrinks the length to what the file holds, which hides a cut file."""
    try:
        with path.open("rb") as handle:
            head = handle.read(1 << 16)
    except OSError:
        return None
    if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    position, byte_rate = 12, 0
    while position + 8 <= len(head):
        kind, size = head[position : position + 4], struct.unpack_from("<I", head, position + 4)[0]
        if kind == b"fmt " and position + 16 <= len(head):
            byte_rate = struct.unpack_from("<I", head, position + 16)[0]
        elif kind == b"data":
            return size / byte_rate if byte_rate and 0 < size < UNKNOWN_RIFF_SIZE else None
        position += 8 + size + (size & 1)
    return None


def _own_seconds(container, stream, path: Path) -> float | None:  # noqa: ANN001
    """The duration announced for this audio track alone: the container's duration covers every
    track (a longer video, another audio track), so it counts only when the track is alone."""
    if container.format.name == "wav":
        return _riff_seconds(path) or _header_seconds(container, stream)
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    return _header_seconds(container, stream) if len(container.streams) == 1 else None


COUNTED_TIMESTAMPS = frozenset({"mp3"})  # demuxers that count timestamps instead of reading them


class _LostLength:
    """How long an undecodable packet lasted: its duration, except from the mp3 demuxer, which
    counts timestamps frame by frame and hands a run of garbage over as one packet one frame long.
    There the packet's size, at the bytes per second of the good packets, tells."""

    def __init__(self, format_name: str) -> None:
        self.by_size = format_name in COUNTED_TIMESTAMPS
        self.bytes = 0
        self.seconds = 0.0

    def good(self, size: int, length: float) -> None:
        self.bytes, self.seconds = self.bytes + size, self.seconds + length

    def lost(self, size: int, length: float) -> float:
        return max(length, size * self.seconds / self.bytes if self.by_size and self.bytes else 0.0)


def _decoded(path: Path, track: int, report: DecodeReport) -> Iterator[np.ndarray]:
    """16 kHz mono int16 pieces, in file order, damage skipped and silenced; fills `report`."""
    import av

    container, stream = _open_container(path, track)
    report.header_s = _own_seconds(container, stream, path)
    report.tracks = len(container.streams.audio)
    resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
    lost_length = _LostLength(container.format.name)
    produced = real = 0  # samples handed out: all, and those not put in for damage
    end_s: float | None = None  # where the previous packet ended, in stream seconds
    try:
        packets = container.demux(stream)
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                break
            except av.error.FFmpegError as error:
                # the demuxer itself gave up: keep what came before
                report.stopped = _reason(error)
                break
            start = (
                float(packet.pts * packet.time_base)
                if packet.pts is not None and packet.time_base
                else None
            )
            length = (
                float(packet.duration * packet.time_base)
                if packet.duration and packet.time_base
                else 0.0
            )
            if start is not None and end_s is not None and start - end_s > GAP_S:
                gap = start - end_s
                if report.header_s is None or start <= report.header_s + GAP_S:
                    # not a wild timestamp
                    report.skipped_s += gap
                    silence = np.zeros(round(gap * SAMPLE_RATE), np.int16)
                    produced += len(silence)
                    yield silence
            if start is not None:
                end_s = max(end_s or start, start + length)
            try:
                frames = packet.decode()
            except av.error.FFmpegError:
                lost = lost_length.lost(packet.size, length)
                report.damaged_packets += 1
                report.skipped_s += lost
                silence = np.zeros(round(lost * SAMPLE_RATE), np.int16)
                produced += len(silence)
                yield silence
                continue
            lost_length.good(packet.size, length)
            for frame in frames:
                for out in resampler.resample(frame):
                    samples = out.to_ndarray().reshape(-1)
                    produced, real = produced + len(samples), real + len(samples)
                    report.recovered = report.recovered or bool(
                        report.damaged_packets or report.skipped_s
                    )
                    yield samples
        for out in resampler.resample(None):
            samples = out.to_ndarray().reshape(-1)
            produced, real = produced + len(samples), real + len(samples)
            yield samples
        report.finished = True
    finally:
        container.close()
        report.duration_s, report.audio_s = produced / SAMPLE_RATE, real / SAMPLE_RATE


def decode_blocks(
    path: Path, block_s: float = 0.5, *, report: DecodeReport | None = None, track: int = 0
) -> Iterator[np.ndarray]:
    """Decode any format FFmpeg reads (audio, or an audio track of a video) into 16
    kHz mono float blocks of `block_s` seconds (the last one shorter). Damage is
    skipped and counted in `report`."""
    report = report if report is not None else DecodeReport()
    block = int(block_s * SAMPLE_RATE)
    pending: list[np.ndarray] = []
    pending_len = 0
    for piece in _decoded(path, track, report):
        pending.append(piece)
        pending_len += len(piece)
        while pending_len >= block:
            joined = np.concatenate(pending)
            yield joined[:block].astype(np.float32) / 32768.0
            pending, pending_len = [joined[block:]], pending_len - block
    tail = np.concatenate(pending) if pending else np.zeros(0, np.int16)
    if len(tail):
        yield tail.astype(np.float32) / 32768.0
    if report.audio_s == 0:
        if report.damaged:
            raise LivecapError(f"{path}: not a readable audio or video file (no packet decodes)")
        raise LivecapError(f"{path}: contains no audio samples")


def probe_duration(path: Path, track: int = 0) -> float | None:
    """Duration in seconds from the container header, checking that the file opens as media and
    that audio decodes from it (a header with no samples behind it fails here, before any work)."""
    import av

    container, stream = _open_container(path, track)
    header = _header_seconds(container, stream)
    damaged = bool(header)  # a header announcing audio that never comes: the rest is damage
    try:
        for packet in container.demux(stream):
            try:
                if any(frame.samples for frame in packet.decode()):
                    return header
            except av.error.FFmpegError:
                damaged = True  # damage at the start: decoding will skip it
    except av.error.FFmpegError as error:
        raise LivecapError(
            f"{path}: not a readable audio or video file ({_reason(error)})"
        ) from None
    finally:
        container.close()
    if damaged:
        raise LivecapError(f"{path}: not a readable audio or video file (no packet decodes)")
    raise LivecapError(f"{path}: contains no audio samples")


def spool(stream: IO[bytes], folder: Path | None = None) -> Path:
    """Copy a stream (standard input, a pipe, an upload) into a temporary file, so that it can be
    probed and decoded like any file; the caller deletes it."""
    handle, name = tempfile.mkstemp(prefix="livecap-input-", dir=folder)
    try:
        with os.fdopen(handle, "wb") as out:
            shutil.copyfileobj(stream, out, length=1 << 20)
    except OSError as error:
        Path(name).unlink(missing_ok=True)
        raise LivecapError(f"cannot store the input in {name}: {error.strerror or error}") from None
    return Path(name)


class FileSource:
    """A media file as a source: as fast as the pipeline takes it, or paced at 1x (`realtime`).
    After the end, `report` says what decoding found (damage, truncation, the real duration)."""

    rate = SAMPLE_RATE

    def __init__(self, path: Path, realtime: bool = False, block_s: float = 0.1, track: int = 0,
                 start_s: float = 0.0) -> None:
        self.path = path
        # audio before this is skipped (a replay resumed where another left off)
        self.start_s = start_s
        self.name = str(path)
        self.realtime = realtime
        self.track = track
        self.block_s = block_s if realtime else 0.5
        # for progress; the decoded length is in `report`
        self.duration = probe_duration(path, track)
        self.report = DecodeReport()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, sink: CaptureQueue) -> None:
        self._thread = threading.Thread(
            target=self._run, args=(sink,), name="file-source", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self, sink: CaptureQueue) -> None:
        error = None
        t0 = time.monotonic()
        position = 0
        skip = int(self.start_s * SAMPLE_RATE)
        try:
            for samples in decode_blocks(
                self.path, self.block_s, report=self.report, track=self.track
            ):
                if skip:
                    samples, skip = samples[skip:], max(0, skip - len(samples))
                    if not len(samples):
                        continue
                position += len(samples)
                if self.realtime:
                    # a live source: deliver each block when it would have been captured
                    due = t0 + position / SAMPLE_RATE
                    if self._stop.wait(max(0.0, due - time.monotonic())):
                        break
                    sink.offer(RawBlock(samples, time.monotonic()))
                elif not sink.put(RawBlock(samples, time.monotonic()), self._stop):
                    break
        except LivecapError as failure:
            error = str(failure)
        sink.end(error)
