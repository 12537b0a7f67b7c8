"""Offline speech: Chinese text to the pinyin espeak-ng reads, and espeak-ng really run when installed."""

from __future__ import annotations

import doctest
import io
import shutil
import struct
import wave

import pytest

from warnings_svc.documents import speech
from warnings_svc.documents.speech import fix_wav_sizes, pinyin_script, speech_available, synthesise

HAS_ESPEAK = shutil.which("espeak-ng") is not None
needs_espeak = pytest.mark.skipif(
    not HAS_ESPEAK, reason="espeak-ng is not installed (Debian package espeak-ng)"
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "乌海市气象台发布高温橙色预警",
            "wu1 hai3 shi4 qi4 xiang4 tai2 fa1 bu4 gao1 wen1 cheng2 se4 yu4 jing3",
        ),
        # polyphones read by phrase: 重复 chong2 (espeak-ng alone says zhong4), 行 in 银行 hang2
        ("现在重复播报一遍", "xian4 zai4 chong2 fu4 bo1 bao4 yi1 bian4"),
        ("银行", "yin2 hang2"),
        # the neutral tone is 5, ü is v
        ("绿色的预警", "lv4 se4 de5 yu4 jing3"),
        # punctuation becomes the ASCII pause, attached to the word before; repeated pauses collapse
        (
            "各位居民请注意！各位居民请注意！",
            "ge4 wei4 ju1 min2 qing3 zhu4 yi4! ge4 wei4 ju1 min2 qing3 zhu4 yi4!",
        ),
        ("海勃湾区、乌达区。。", "hai3 bo2 wan1 qu1, wu1 da2 qu1."),
        # digits, decimals, percent signs and Latin words stay; other symbols and brackets go
        ("最高气温37.5℃", "zui4 gao1 qi4 wen1 37.5 C"),
        ("湿度20%，见《通知》", "shi1 du4 20%, jian4 tong1 zhi1"),
        ("CAP 预警", "CAP yu4 jing3"),
        ("", ""),
        ("！！", ""),
    ],
)
def test_chinese_text_becomes_the_pinyin_script_the_voice_reads(text: str, expected: str) -> None:
    assert pinyin_script(text) == expected


def test_a_script_converted_twice_is_unchanged() -> None:
    once = pinyin_script("乌海市气象台2026年7月9日发布高温橙色预警，请注意防范。")
    assert pinyin_script(once) == once


def test_the_module_examples_hold() -> None:
    result = doctest.testmod(speech)
    assert result.attempted >= 6
    assert result.failed == 0


def test_wav_sizes_are_set_from_the_real_length() -> None:
    pcm = b"\x01\x00" * 100
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(22050)
        w.writeframes(pcm)
    good = buffer.getvalue()
    # what espeak-ng writes to a pipe: placeholder sizes
    broken = good[:4] + struct.pack("<I", 0x7FFFF024) + good[8:40] + struct.pack("<I", 0x7FFFF000) + good[44:]
    assert fix_wav_sizes(broken) == good
    with pytest.raises(ValueError):
        fix_wav_sizes(b"not a wav file at all")


async def test_a_missing_voice_gives_no_audio_and_says_why(caplog: pytest.LogCaptureFixture) -> None:
    if HAS_ESPEAK:
        assert speech_available("no-such-voice")[0] is False
    assert await synthesise("预警", voice="no-such-voice") is None
    assert "without audio" in caplog.text


@needs_espeak
def test_the_pinyin_voice_is_reported_available() -> None:
    available, reason = speech_available()
    assert available, reason
    assert "cmn-Latn-pinyin" in reason


@needs_espeak
async def test_espeak_speaks_a_complete_wav_whose_length_grows_with_the_text() -> None:
    short = await synthesise("乌海市气象台发布高温橙色预警。")
    long = await synthesise("乌海市气象台发布高温橙色预警。" * 3 + "请大家注意防暑降温。")
    assert short is not None and long is not None
    for spoken in (short, long):
        assert spoken.wav[:4] == b"RIFF" and spoken.wav[8:12] == b"WAVE"
        with wave.open(io.BytesIO(spoken.wav)) as w:
            assert w.getframerate() == spoken.sample_rate == 22050
            assert w.getsampwidth() == 2 and w.getnchannels() == 1
            # the header's sizes are the real ones, so the wave module agrees with the stated duration
            assert w.getnframes() / w.getframerate() == pytest.approx(spoken.duration_s)
            samples = w.readframes(w.getnframes())
        assert max(abs(v) for (v,) in struct.iter_unpack("<h", samples)) > 1000  # not silence
    # fourteen syllables at 150 words a minute take seconds, not milliseconds
    assert 2.0 < short.duration_s < 10.0
    assert long.duration_s > 3 * short.duration_s
    assert short.script.startswith("wu1 hai3 shi4")


@needs_espeak
async def test_a_slower_speed_gives_longer_speech() -> None:
    fast = await synthesise("乌海市气象台发布高温橙色预警。", speed=220)
    slow = await synthesise("乌海市气象台发布高温橙色预警。", speed=110)
    assert fast is not None and slow is not None
    assert slow.duration_s > 1.4 * fast.duration_s
