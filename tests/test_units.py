"""Unit tests of the small pieces: guards, reordering,
interim stabilisation, packing, VAD segmentation."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from conftest import IDLE_LOAD, Clip
from livecap.asr.base import AsrResult, AsrSegment, AsrWord, DecodeOptions
from livecap.asr.decoding import FINAL_INPUT, INTERIM_INPUT, WHISPER_WINDOW_S
from livecap.asr.guards import PAD_TOLERANCE_S, collapse_repeats, drop_invented, is_hallucination
from livecap.asr.pool import AsrJob
from livecap.config import LiveConfig, VadConfig
from livecap.messages import SAMPLE_RATE, AudioChunk, Utterance
from livecap.pipeline.interims import Interims
from livecap.pipeline.packing import Packer
from livecap.pipeline.reorder import Reorderer
from livecap.pipeline.stabilize import LocalAgreement
from livecap.pipeline.stats import StreamStats
from livecap.pipeline.vad import Segmenter
from livecap.sources.file import decode_blocks


def test_repetition_loops_collapse() -> None:
    assert (
        collapse_repeats("thank you thank you thank you thank you so much") == "thank you so much"
    )
    assert collapse_repeats("no no no no no") == "no"
    assert collapse_repeats("a b a b c") == "a b a b c"  # two repeats are speech, not a loop


def test_hallucination_guard() -> None:
    assert is_hallucination("...", 0.1, -0.2)
    assert is_hallucination("Thanks for watching!", 0.9, -1.5)  # likely silence, low confidence
    assert not is_hallucination("Thanks for watching!", 0.9, -0.3)  # confident speech
    assert is_hallucination("the the the " * 30, 0.0, -0.1)  # compresses too well: a loop
    assert not is_hallucination("ask not what your country can do for you", 0.01, -0.3)


def test_reorderer_releases_in_sequence() -> None:
    order = list(range(50))
    random.Random(3).shuffle(order)
    reorder: Reorderer[int] = Reorderer()
    released = [item for seq in order for item in reorder.push(seq, seq * 10)]
    assert released == [seq * 10 for seq in range(50)] and reorder.waiting == 0
    with pytest.raises(ValueError):
        reorder.push(3, 0)


def test_local_agreement_commits_only_what_two_hypotheses_share() -> None:
    agreement = LocalAgreement()
    first = agreement.update("ask not what")
    assert first.committed == "" and first.tail == "ask not what"
    second = agreement.update("Ask not, what your")
    assert second.committed == "Ask not, what" and second.tail == "your"
    third = agreement.update("ask now")  # the committed words never change
    assert third.committed == "Ask not, what" and third.tail == ""


def test_local_agreement_goes_on_past_a_word_the_hypotheses_keep_changing() -> None:
    agreement = LocalAgreement()
    agreement.update("Mister Quilter is the")
    second = agreement.update("Mr. Quilter is the apostle")  # one word differs, the next two agree
    assert second.committed == "Mr. Quilter is the" and second.tail == "apostle"
    third = agreement.update("Mister Quilter is the apostle of the")  # rewrites a committed word
    assert third.committed == "Mr. Quilter is the apostle" and third.tail == "of the"
    assert agreement.update("Mr. Quilter is a different").committed == "Mr. Quilter is the apostle"
    fresh = LocalAgreement()
    fresh.update("ask not what")
    assert fresh.update("ask now what").committed == "ask"  # too little agrees after "now"


def test_local_agreement_commits_what_two_of_three_hypotheses_share() -> None:
    agreement = LocalAgreement()
    agreement.update("the gaudy spring within")
    misread = agreement.update("the God-i-spring within thine")
    assert misread.committed == "the" and misread.tail == "God-i-spring within thine"
    again = agreement.update("the gaudy spring within thine own")  # agrees with the first
    assert again.committed == "the gaudy spring within" and again.tail == "thine own"
    alone = LocalAgreement()  # three readings, no two alike: nothing past "the"
    for hypothesis in ("the gaudy spring", "the God-i-spring now", "the goddy spring"):
        last = alone.update(hypothesis)
    assert last.committed == "the"


def test_local_agreement_carries_committed_words_over_a_cut_in_speech() -> None:
    before = LocalAgreement()
    before.update("Thou art the world's fresh ornament and only")
    before.update("thou art the world's fresh ornament and only herald")
    shown = before.committed  # cut in speech after "the world's": the rest is the next utterance
    after = LocalAgreement()
    after.carry(shown, "fresh ornament, and only herald to the gaudy")
    carried = after.update("fresh ornament, and only herald to the gaudy")
    assert carried.committed == "fresh ornament and only" and carried.tail == "herald to the gaudy"
    assert after.update("fresh ornament and only herald to the gaudy spring").committed == (
        "fresh ornament and only herald to the gaudy"
    )
    unrelated = LocalAgreement()  # the next utterance does not begin with them: nothing carried
    unrelated.carry(shown, "within thine own bud buriest thy content")
    assert unrelated.update("within thine own bud").committed == ""


class _ScriptedPool:
    """Decodes each interim at once as the next scripted hypothesis (the interim stage's pool)."""

    def __init__(self, hypotheses: list[str]) -> None:
        self.hypotheses = hypotheses
        self.decoded: list[int] = []  # the utterance of each interim decoded

    def interim_share_for(self, wanted: float) -> float:
        return wanted

    def drop_interim(self, stream_id: str) -> None:
        pass

    def submit_interim(self, job: AsrJob) -> bool:
        self.decoded.append(job.utterance.seq)
        text = self.hypotheses.pop(0)
        job.on_done(job, AsrResult((AsrSegment(0.0, 1.0, text),), "en", 1.0), None)
        return True


def test_interims_keep_words_committed_before_a_cut_in_speech() -> None:
    pool = _ScriptedPool([
        "so we went down", "so we went down to", "down to the sea", "so they", "so they said",
    ])
    seq, shown = [0], []
    interims = Interims(
        pool, LiveConfig(interim_interval_ms=1000), stream_id="s", decode=DecodeOptions(),  # type: ignore[arg-type]
        stats=StreamStats(), current_utterance=lambda: seq[0], emit=shown.append,
    )

    def heard(now: float) -> Utterance:
        return _utterance(0.0, 1.0, seq[0])

    for now in (1.0, 2.0):
        interims.offer(now, heard)
    seq[0] = 1
    interims.cut(continued=True)  # cut at the length limit after "went": speech goes on
    interims.offer(2.1, heard)  # due at once, not a second after the last
    assert pool.decoded == [0, 0, 1]
    assert (shown[-1].utterance, shown[-1].committed, shown[-1].tail) == (1, "down", "to the sea")
    seq[0] = 2
    interims.cut()  # a pause: nothing carried, the next interim waits for speech
    for now in (3.5, 4.5):
        interims.offer(now, heard)
    assert [(c.committed, c.tail) for c in shown[-2:]] == [("", "so they"), ("so they", "said")]


def _utterance(start: float, seconds: float, seq: int) -> Utterance:
    samples = np.full(int(seconds * SAMPLE_RATE), seq, dtype=np.float32)
    return Utterance("s", seq, start, start + seconds, samples, True, 0.0, 0.0)


def test_packer_joins_utterances_and_maps_time_back() -> None:
    packer = Packer(max_seconds=10)
    assert packer.push(_utterance(0.0, 4.0, 0)) == []
    assert packer.push(_utterance(20.0, 3.0, 1)) == []
    # would overflow: the first two leave together
    (packed,) = packer.push(_utterance(40.0, 5.0, 2))
    assert packed.duration == pytest.approx(7.0) and packed.start == 0.0 and packed.end == 23.0
    assert packed.to_stream_time(1.0) == pytest.approx(1.0)
    assert packed.to_stream_time(5.0) == pytest.approx(21.0)  # 1 s into the second utterance
    assert packed.to_stream_time(99.0) == pytest.approx(23.0)
    second = packed.audio_between(4.0, 7.0)  # the second utterance (its samples are 1, levelled)
    assert len(second) == 3 * SAMPLE_RATE and np.all(second == second[0]) and second[0] > 0
    (last,) = packer.flush()
    assert last.start == 40.0 and last.pieces == ()


def _words(*timed: tuple[str, float]) -> tuple[AsrWord, ...]:
    return tuple(AsrWord(start, start + 0.1, word, 0.9) for word, start in timed)


def test_what_whisper_writes_over_the_pause_after_speech_is_dropped() -> None:
    """The segments tiny.en gave for a live final whose speech ended 2.91 s in (primed "Quilter"):
    the second lies over the pause, though its first words were timed just before that end."""
    real = AsrSegment(0.0, 2.8, "He might even have been made amiable himself.", _words(
        ("He", 0.0), ("might", 0.5), ("even", 0.74), ("have", 1.0), ("been", 1.22), ("made", 1.4),
        ("amiable", 1.78), ("himself.", 2.32)))
    text = "Thank you so much for watching, and I'll see you in the next one."
    invented = AsrSegment(2.8, 3.38, text, _words(
        ("Thank", 2.8), ("you", 2.82), ("so", 2.84), ("much", 2.94), ("for", 3.18),
        ("watching,", 3.18), *((w, 3.38) for w in "and I'll see you in the next one.".split())))
    utterance = Utterance("s", 0, 10.0, 13.21, np.zeros(16), True, 0.0, 0.0, speech_until=12.91)
    assert utterance.past_speech(2.91) == pytest.approx(0.0) and utterance.past_speech(3.4) > 0
    assert drop_invented((real, invented), utterance.past_speech) == (real,)
    # a real last word timed a little past the VAD's end of speech stays
    late = AsrSegment(2.8, 3.2, "Yes.", _words(("Yes.", 2.91 + PAD_TOLERANCE_S - 0.01)))
    assert drop_invented((real, late), utterance.past_speech) == (real, late)
    # the words that end a kept segment in the pause go, and its text is cut where they were
    bye = _words(("Bye", 3.38), ("-bye.", 3.38))
    tailed = AsrSegment(0.0, 3.38, real.text + " Bye-bye.", real.words + bye)
    (cut,) = drop_invented((tailed,), utterance.past_speech)
    assert cut.text == real.text and cut.words == real.words and cut.end == pytest.approx(2.42)
    # text that does not end with those words (a collapsed loop) is kept as it is: nothing guessed
    looped = AsrSegment(0.0, 3.38, real.text + " Bye.", real.words + _words(*(("Bye", 3.38),) * 2))
    assert drop_invented((looped,), utterance.past_speech) == (looped,)
    # without word times, a segment is judged by its start
    bare = [AsrSegment(0.0, 2.8, "x"), AsrSegment(3.3, 3.4, "y")]
    assert [s.text for s in drop_invented(bare, utterance.past_speech)] == ["x"]
    # where the end of speech is not known, nothing is dropped
    unknown = Utterance("s", 0, 10.0, 13.21, np.zeros(16), True, 0.0, 0.0)
    assert drop_invented((real, invented), unknown.past_speech) == (real, invented)


def test_packed_audio_is_judged_by_each_utterances_own_pause() -> None:
    def spoken(seq: int, start: float, seconds: int, until: float) -> Utterance:
        samples = np.full(seconds * SAMPLE_RATE, 0.1, np.float32)
        return Utterance("s", seq, start, start + seconds, samples, True, 0, 0, speech_until=until)

    first, second = spoken(0, 0.0, 4, 3.5), spoken(1, 20.0, 3, 22.6)
    packer = Packer(max_seconds=29)
    packer.push(first)
    packer.push(second)
    (packed,) = packer.flush()
    assert packed.past_speech(3.5) == pytest.approx(0.0)
    assert packed.past_speech(3.9) == pytest.approx(0.4)
    assert packed.past_speech(4.5) == pytest.approx(-2.1)  # 0.5 s into the second: it ends 2.6 s in
    assert packed.past_speech(6.9) == pytest.approx(0.3)
    segments = (
        AsrSegment(0.0, 3.9, "one two", _words(("one", 0.5), ("two", 3.0))),
        AsrSegment(3.8, 4.0, "thanks for watching",
                   _words(("thanks", 3.8), ("for", 3.85), ("watching", 3.9))),
        AsrSegment(4.0, 6.5, "three four", _words(("three", 4.2), ("four", 6.0))),
    )
    kept = drop_invented(segments, packed.past_speech)
    assert [s.text for s in kept] == ["one two", "three four"]


def _segment(samples: np.ndarray, options: VadConfig, live: bool = False) -> list[Utterance]:
    segmenter = Segmenter(options, live=live)
    block = SAMPLE_RATE // 10
    finals: list[Utterance] = []
    for i in range(0, len(samples), block):
        chunk = AudioChunk(
            samples[i : i + block], i / SAMPLE_RATE, 100.0 + (i + block) / SAMPLE_RATE
        )
        finals += segmenter.push(chunk, now=0.0)
    return finals + segmenter.flush(now=0.0)


def test_vad_cuts_real_speech_at_pauses(en_clips: list[Clip]) -> None:
    clips = sorted(en_clips, key=lambda c: c.duration)[:3]
    pause = np.zeros(SAMPLE_RATE, dtype=np.float32)
    parts, spans, position = [pause], [], 1.0
    for clip in clips:
        audio = np.concatenate(list(decode_blocks(Path(clip.path))))
        parts += [audio, pause]
        spans.append((position, position + len(audio) / SAMPLE_RATE))
        position += len(audio) / SAMPLE_RATE + 1.0
    options = VadConfig(min_silence_ms=500)
    pad = options.speech_pad_ms / 1000  # pre-roll and hangover kept around the speech
    finals = _segment(np.concatenate(parts), options)
    assert [u.seq for u in finals] == list(range(len(clips)))
    for utterance, (start, end) in zip(finals, spans):
        assert utterance.start <= start and utterance.end <= end + pad + 0.05
        # capture clock
        assert utterance.t_speech_end == pytest.approx(100.0 + utterance.end - pad, abs=0.3)
        assert utterance.speech_until == pytest.approx(utterance.end - pad, abs=0.3)  # stream clock
    assert spans[0][0] - pad - 0.05 <= finals[0].start
    # a pause shorter than JOIN_GAP_S belongs to the utterance after it: nothing between them is
    # lost
    assert all(a.end == b.start for a, b in zip(finals, finals[1:]))
    silence = _segment(np.zeros(3 * SAMPLE_RATE, dtype=np.float32), VadConfig())
    assert silence == []


def test_vad_cuts_long_speech_at_its_quietest_point(en_clips: list[Clip]) -> None:
    longest = max(en_clips, key=lambda c: c.duration)
    audio = np.concatenate(list(decode_blocks(Path(longest.path))))
    finals = _segment(audio, VadConfig(max_utterance_s=3.0, min_silence_ms=2000))
    assert len(finals) >= 2
    assert all(u.duration <= 3.0 + 0.3 for u in finals)
    # no audio is used twice
    assert all(a.end <= b.start + 1e-6 for a, b in zip(finals, finals[1:]))
    assert all(u.speech_until == u.end for u in finals[:-1])  # cut amid speech: no pause in it
    assert all(u.continued for u in finals[:-1]) and not finals[-1].continued


def test_live_long_speech_ends_at_a_short_pause_before_its_limit(en_clips: list[Clip]) -> None:
    """Past half of `max_utterance_s` a live utterance ends at a shorter pause (down to
    `min_pause_ms` at the limit) instead of running on to be cut mid-speech; a file's keeps
    `min_silence_ms`, and a short utterance's pause is not shortened (the tentative-final tests)."""
    options = VadConfig(min_silence_ms=500, min_pause_ms=250, max_utterance_s=15.0)
    shortest = sorted(en_clips, key=lambda c: c.duration)
    head = np.concatenate([_speech(clip) for clip in shortest[1:7]])[: 12 * SAMPLE_RATE]
    assert len(head) == 12 * SAMPLE_RATE  # the pause needed there: 0.35 s
    pause = np.zeros(int(0.42 * SAMPLE_RATE), dtype=np.float32)
    tail = _speech(shortest[0])[: 2 * SAMPLE_RATE]  # the whole stays under max_utterance_s
    audio = np.concatenate([head, pause, tail, np.zeros(SAMPLE_RATE, np.float32)])
    paused = (len(head) / SAMPLE_RATE, (len(head) + len(pause)) / SAMPLE_RATE)

    def ends_in_pause(finals: list[Utterance]) -> bool:
        return any(paused[0] <= u.end <= paused[1] for u in finals)

    live = _segment(audio, options, live=True)
    assert ends_in_pause(live) and not any(u.continued for u in live)
    assert not ends_in_pause(_segment(audio, options))


def _speech(clip: Clip) -> np.ndarray:
    """A clip without the silence before and after its speech (samples within 40 dB of its peak)."""
    audio = np.concatenate(list(decode_blocks(Path(clip.path))))
    loud = np.flatnonzero(np.abs(audio) > 0.01 * np.abs(audio).max())
    return audio[loud[0] : loud[-1] + 1]


def _cut_live(
    samples: np.ndarray,
) -> tuple[list[tuple[int, Utterance]], list[tuple[int, Utterance]]]:
    """Feed audio as a live stream does; the tentative finals and the finals, each with the block it
    came after."""
    segmenter = Segmenter(VadConfig(), live=True)
    block = SAMPLE_RATE // 10
    tentatives, finals = [], []
    for k, i in enumerate(range(0, len(samples), block)):
        chunk = AudioChunk(
            samples[i : i + block], i / SAMPLE_RATE, 100.0 + (i + block) / SAMPLE_RATE
        )
        finals += [(k, u) for u in segmenter.push(chunk, now=0.0)]
        tentative = segmenter.tentative(now=0.0)
        if tentative is not None:
            tentatives.append((k, tentative))
    return tentatives, finals + [(-1, u) for u in segmenter.flush(now=0.0)]


def _same(a: Utterance, b: Utterance) -> bool:
    return (a.seq, a.start, a.end) == (b.seq, b.start, b.end) and np.array_equal(
        a.samples, b.samples
    )


def test_a_tentative_final_is_the_final_when_the_pause_goes_on(en_clips: list[Clip]) -> None:
    first, second = sorted(en_clips, key=lambda c: c.duration)[:2]
    pause = np.zeros(SAMPLE_RATE, dtype=np.float32)
    tentatives, finals = _cut_live(np.concatenate([_speech(first), pause, _speech(second), pause]))
    (k_final, final), *_ = finals
    matching = [(k, t) for k, t in tentatives if _same(t, final)]
    # decodable before the utterance ended, the same audio
    assert matching and matching[0][0] < k_final


def test_a_tentative_final_is_not_the_final_when_speech_resumes(en_clips: list[Clip]) -> None:
    """A short utterance needs a pause of `min_silence_ms` to end; a shorter one only makes a
    tentative final that the real one (longer) does not match."""
    first, second = sorted(en_clips, key=lambda c: c.duration)[:2]
    pause = np.zeros(int(0.35 * SAMPLE_RATE), dtype=np.float32)
    tentatives, finals = _cut_live(
        np.concatenate([_speech(first), pause, _speech(second), pause, pause, pause])
    )
    assert len(finals) == 1 and tentatives
    assert not _same(tentatives[0][1], finals[0][1]) and _same(tentatives[-1][1], finals[0][1])


def test_footer_rtf_counts_interims_and_translation() -> None:
    """The RTF shown is all compute per audio second, split so a user sees where it goes."""
    from rich.console import Console

    from livecap.cli.view import stats_footer
    from livecap.pipeline.stats import StreamStats

    stats = StreamStats()
    stats.add_audio(10.0)
    stats.add_asr(2.0, final=True)
    stats.add_asr(3.0, final=False)
    snapshot = stats.snapshot(**IDLE_LOAD)
    assert snapshot.rtf == pytest.approx(0.5)
    console = Console(width=200, record=True)
    console.print(stats_footer(snapshot, "tiny.en", "cpu", "int8"))
    text = console.export_text()
    assert "RTF 0.50" in text and "finals 0.20 + interims 0.30" in text


def test_encoder_inputs_fit_the_audio_with_silence_after_it() -> None:
    """A short window is not encoded as 30 s: its input is its audio and at least the pad of
    silence, in whole steps (so windows of several streams share a shape), within 30 s."""
    frames = 100  # feature frames per second
    for kind in (FINAL_INPUT, INTERIM_INPUT):
        lengths = [kind.length(int(s * frames), frames) for s in np.arange(0.5, 40.0, 0.25)]
        assert lengths == sorted(lengths)  # longer audio never gets a shorter input
        for seconds, length in zip(np.arange(0.5, 40.0, 0.25), lengths):
            audio = int(seconds * frames)
            assert length == WHISPER_WINDOW_S * frames or length >= audio + kind.pad_s * frames
            assert length >= kind.min_s * frames and length <= WHISPER_WINDOW_S * frames
            assert length % int(kind.step_s * frames) == 0
    assert FINAL_INPUT.length(5 * frames, frames) < WHISPER_WINDOW_S * frames
    assert FINAL_INPUT.pad_s >= INTERIM_INPUT.pad_s  # a final is the caption that stays
