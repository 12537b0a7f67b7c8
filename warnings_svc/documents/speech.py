"""Offline Mandarin speech for the broadcast script: Chinese text to pinyin, pinyin to a WAV by espeak-ng.

espeak-ng (a Debian package, no model download) speaks Mandarin with the voice ``cmn-Latn-pinyin``, which
reads pinyin syllables with tone numbers (``wu1 hai3``; 5 for the neutral tone). It can read Chinese
characters itself, but its dictionary knows few words, so polyphones come out wrong (重复 as zhong4 fu4);
pypinyin segments the text into its phrases first and picks the reading of each. The plain ``cmn`` voice is
no use for pinyin: it reads the tone numbers in English.

What espeak-ng does with the script was checked by its phoneme output (``espeak-ng -x``): tone numbers 1-5 give
the tones 55, 35, 21(4), 51 and a light 11; ``v`` and ``ü`` are both read as ü; digits are read as Mandarin
numbers (37 as san1 shi2 qi1); ASCII and full-width punctuation both make a pause; espeak-ng applies the
third-tone sandhi itself but not that of 一 and 不, which pypinyin's ``tone_sandhi`` supplies.

`synthesise` returns None (with one logged line saying why) rather than raising when espeak-ng or the voice is
missing: the warning goes out without audio, and the platform reads the script with its own speech.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import shutil
import struct
import subprocess
import unicodedata
from dataclasses import dataclass
from functools import cache

from pypinyin import Style, lazy_pinyin

logger = logging.getLogger(__name__)

PINYIN_VOICE = "cmn-Latn-pinyin"
DEFAULT_SPEED_WPM = 150  # espeak-ng's words a minute (its default is 175): loudspeakers echo, so slower
DEFAULT_TIMEOUT_S = 30.0
# A broadcast script is a few hundred characters; a bound keeps one bad input from running espeak for minutes.
MAX_TEXT_CHARS = 5000

_SYLLABLE = re.compile(r"[a-zü]+[1-5]")
# Chinese punctuation the script may carry, as the ASCII espeak-ng pauses on (NFKC already maps the
# full-width forms ，！？；： to ASCII); brackets and quotes are dropped, they are not heard.
_PUNCTUATION = str.maketrans({"。": ".", "、": ",", "…": ".", "—": ",", "～": ",", "·": " "})
# What a non-Chinese run keeps: numbers (with a decimal part or a percent sign), Latin words (pinyin with
# tone numbers stays one token, so a script can be converted twice) and the punctuation that makes a pause.
_KEPT = re.compile(r"[A-Za-z0-9]+(?:\.[0-9]+)*%?|[,.!?;:]")
_PAUSES = frozenset(",.!?;:")


def pinyin_script(text: str) -> str:
    """The text as the espeak-ng voice ``cmn-Latn-pinyin`` reads it: one pinyin syllable with its tone number
    (``Style.TONE3``, 5 for the neutral tone, ``v`` for ü) per Chinese character, separated by spaces;
    numbers and Latin words kept as they are; punctuation kept as ASCII ``, . ! ? ; :`` (pauses), attached to
    the word before it; any other symbol dropped.

    >>> pinyin_script("乌海市气象台发布高温橙色预警。")
    'wu1 hai3 shi4 qi4 xiang4 tai2 fa1 bu4 gao1 wen1 cheng2 se4 yu4 jing3.'
    >>> pinyin_script("最高气温37℃，请大家注意！")
    'zui4 gao1 qi4 wen1 37 C, qing3 da4 jia1 zhu4 yi4!'
    >>> pinyin_script("绿色的 ABC")
    'lv4 se4 de5 ABC'
    """
    syllables = lazy_pinyin(
        text,
        style=Style.TONE3,
        neutral_tone_with_five=True,
        tone_sandhi=True,  # 一 and 不 change tone before others; espeak-ng does only the third-tone sandhi
        errors=lambda run: run,  # a run of non-Chinese characters, kept whole and tokenised below
    )
    tokens: list[str] = []
    for piece in syllables:
        if _SYLLABLE.fullmatch(piece):
            tokens.append(piece)
            continue
        other = unicodedata.normalize("NFKC", piece).translate(_PUNCTUATION)
        tokens.extend(_KEPT.findall(other))
    words: list[str] = []
    for token in tokens:
        if token in _PAUSES:
            # a pause belongs to the word before it; two pauses in a row, or one at the start, say nothing more
            if words and words[-1][-1] not in _PAUSES:
                words[-1] += token
        else:
            words.append(token)
    return " ".join(words)


@dataclass(frozen=True, slots=True)
class Speech:
    """A spoken text: a complete RIFF/WAVE file (16-bit PCM), its length, and the script the voice read."""

    wav: bytes
    duration_s: float
    sample_rate: int
    voice: str
    script: str


@cache
def _installed_voices(program: str) -> frozenset[str]:
    """The voices espeak-ng lists (``espeak-ng --voices``, a few milliseconds), lower-cased; read once.

    A voice must be looked up here before use: espeak-ng reads an unknown name such as ``no-such-voice`` as a
    language and a variant (Norwegian) and speaks with that rather than failing.
    """
    listing = subprocess.run(
        [program, "--voices"], capture_output=True, text=True, timeout=10.0, check=True
    ).stdout
    # the listing's second column is the voice's language name, lower-cased ("cmn-latn-pinyin")
    return frozenset(line.split()[1] for line in listing.splitlines()[1:] if len(line.split()) > 1)


def speech_available(voice: str = PINYIN_VOICE) -> tuple[bool, str]:
    """Whether espeak-ng and the voice are installed here, with a one-line reason for people either way.

    >>> speech_available("no-such-voice")[0]
    False
    """
    program = shutil.which("espeak-ng")
    if program is None:
        return False, "espeak-ng is not installed (Debian package espeak-ng): warnings go out without audio"
    try:
        names = _installed_voices(program)
    except (OSError, subprocess.SubprocessError) as e:
        return False, f"espeak-ng did not list its voices ({e.__class__.__name__}): no audio"
    if voice.lower() not in names:
        return False, f"espeak-ng has no voice {voice!r}: warnings go out without audio"
    return True, f"espeak-ng with the voice {voice!r}"


def fix_wav_sizes(wav: bytes) -> bytes:
    """The WAV with its RIFF and data chunk sizes set from its real length.

    espeak-ng writing to a pipe cannot seek back, so its header carries placeholder sizes (0x7FFFF024); a
    reader that trusts them would think the file is 11 hours long. The data chunk is the last one it writes.

    >>> head = b"RIFF" + struct.pack("<I", 0x7FFFF024) + b"WAVE" + b"data" + struct.pack("<I", 0x7FFFF000)
    >>> fixed = fix_wav_sizes(head + b"\\x00\\x01" * 3)
    >>> struct.unpack("<I", fixed[4:8])[0], struct.unpack("<I", fixed[16:20])[0]
    (18, 6)
    """
    if wav[:4] != b"RIFF" or wav[8:12] != b"WAVE":
        raise ValueError("not a RIFF/WAVE file")
    data_at = wav.find(b"data", 12)
    if data_at < 0:
        raise ValueError("a WAV without a data chunk")
    body = wav[data_at + 8 :]
    return (
        wav[:4]
        + struct.pack("<I", len(wav) - 8)
        + wav[8:data_at]
        + b"data"
        + struct.pack("<I", len(body))
        + body
    )


def _pcm_format(wav: bytes) -> tuple[int, int, int]:
    """(sample rate, channels, bytes per sample) from the WAV's fmt chunk."""
    fmt_at = wav.find(b"fmt ", 12)
    if fmt_at < 0:
        raise ValueError("a WAV without a fmt chunk")
    _, channels, rate, _, _, bits = struct.unpack("<HHIIHH", wav[fmt_at + 8 : fmt_at + 24])
    return rate, channels, bits // 8


async def synthesise(
    text: str,
    *,
    voice: str = PINYIN_VOICE,
    speed: int = DEFAULT_SPEED_WPM,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> Speech | None:
    """Speak the text with espeak-ng: a WAV file in memory, or None when it cannot be made here.

    With the pinyin voice the text is first turned into its `pinyin_script`; any other voice gets the text as
    it is. ``speed`` is in words a minute. None (and one logged line) when espeak-ng or the voice is missing,
    the text is empty or too long, or espeak-ng fails or takes longer than ``timeout_s``.
    """
    available, why = await asyncio.to_thread(speech_available, voice)
    program = shutil.which("espeak-ng")
    if not available or program is None:
        logger.warning("speech: %s", why, extra={"voice": voice})
        return None
    script = pinyin_script(text) if voice == PINYIN_VOICE else text.strip()
    if not script or len(script) > MAX_TEXT_CHARS:
        logger.warning("speech: no audio, the script is empty or too long", extra={"chars": len(script)})
        return None
    process = await asyncio.create_subprocess_exec(
        program,
        "-v",
        voice,
        "-s",
        str(speed),
        "-b",
        "1",  # the input is UTF-8
        "--stdin",  # no argument-length limit, and the script does not show in the process list
        "--stdout",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(script.encode()), timeout_s)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
        logger.warning("speech: no audio, espeak-ng took too long", extra={"timeout_s": timeout_s})
        return None
    if process.returncode != 0 or not out:
        reason = err.decode(errors="replace").strip().splitlines()[:1] or [
            f"exit status {process.returncode}"
        ]
        logger.warning("speech: no audio, espeak-ng failed: %s", reason[0], extra={"voice": voice})
        return None
    try:
        wav = fix_wav_sizes(out)
        rate, channels, width = _pcm_format(wav)
    except (ValueError, struct.error) as e:
        logger.warning("speech: no audio, espeak-ng wrote no usable WAV: %s", e, extra={"voice": voice})
        return None
    frames = (len(wav) - wav.find(b"data", 12) - 8) // (channels * width)
    return Speech(wav=wav, duration_s=frames / rate, sample_rate=rate, voice=voice, script=script)
