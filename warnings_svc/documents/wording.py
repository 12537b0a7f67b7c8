"""Numbers and times as warning texts say them: Chinese and English numerals, ordinals, decimals with their
units, and times in Beijing time, written (``7月9日16时``, ``16:00 9 July (UTC+8)``) and spoken (今天下午四点,
"four p.m. today") for the broadcast script. Pure functions.
"""

from __future__ import annotations

import re
from datetime import datetime

from risk_zoning import BEIJING


class TextsError(Exception):
    """Unusable texts configuration or a message the texts cannot be rendered for; one line."""


# ---------------------------------------------------------------------------------------------- numbers

_ZH_DIGITS = "零一二三四五六七八九"


def _zh_under_10000(n: int) -> str:
    out: list[str] = []
    zero = False
    for digit, unit in zip(f"{n:04d}", ("千", "百", "十", ""), strict=True):
        d = int(digit)
        if d == 0:
            zero = bool(out)
            continue
        if zero:
            out.append("零")
            zero = False
        out.append(_ZH_DIGITS[d] + unit)
    return "".join(out)


def zh_number(n: int) -> str:
    """An integer as read aloud in Mandarin.

    >>> [zh_number(n) for n in (0, 12, 37, 105, 1000, 1050, 2000, 100000, 463000, -3)]
    ['零', '十二', '三十七', '一百零五', '一千', '一千零五十', '两千', '十万', '四十六万三千', '负三']
    """
    if n < 0:
        return "负" + zh_number(-n)
    if n == 0:
        return "零"
    for scale, word in ((10**8, "亿"), (10**4, "万")):
        if n >= scale:
            head, rest = divmod(n, scale)
            text = zh_number(head) + word
            if rest:
                text += ("零" if rest < scale // 10 else "") + _zh_under_10000(rest)
            return text
    text = _zh_under_10000(n)
    if 10 <= n < 20:
        text = text[1:]  # 十二, not 一十二
    if text.startswith("二") and text[1:2] in ("千", "百") and n >= 100:
        text = "两" + text[1:]
    return text


_EN_ONES = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
]
_EN_TENS = ["_", "_", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_EN_ORDINAL = {
    "one": "first",
    "two": "second",
    "three": "third",
    "five": "fifth",
    "eight": "eighth",
    "nine": "ninth",
    "twelve": "twelfth",
}
_MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]


def en_number(n: int) -> str:
    """An integer as read aloud in (British) English.

    >>> [en_number(n) for n in (0, 37, 105, 1000, 463000, -3)]
    ['zero', 'thirty-seven', 'one hundred and five', 'one thousand', 'four hundred and sixty-three thousand', 'minus three']
    """
    if n < 0:
        return "minus " + en_number(-n)
    if n < 20:
        return _EN_ONES[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return _EN_TENS[tens] + (f"-{_EN_ONES[ones]}" if ones else "")
    if n < 1000:
        hundreds, rest = divmod(n, 100)
        return f"{_EN_ONES[hundreds]} hundred" + (f" and {en_number(rest)}" if rest else "")
    for scale, word in ((10**9, "billion"), (10**6, "million"), (1000, "thousand")):
        if n >= scale:
            head, rest = divmod(n, scale)
            text = f"{en_number(head)} {word}"
            if rest:
                text += (" and " if rest < 100 else " ") + en_number(rest)
            return text
    raise AssertionError("unreachable")


def en_ordinal(n: int) -> str:
    """``en_ordinal(9) == "ninth"``, ``en_ordinal(21) == "twenty-first"``."""
    words = en_number(n)
    head, sep, last = words.rpartition("-") if "-" in words else words.rpartition(" ")
    if last in _EN_ORDINAL:
        last = _EN_ORDINAL[last]
    elif last.endswith("y"):
        last = last[:-1] + "ieth"
    else:
        last += "th"
    return head + sep + last


def _zh_decimal(integer: str, fraction: str) -> str:
    text = zh_number(int(integer.replace(",", "")))
    if fraction:
        text += "点" + "".join(_ZH_DIGITS[int(d)] for d in fraction)
    return text


def _en_decimal(integer: str, fraction: str) -> str:
    text = en_number(int(integer.replace(",", "")))
    if fraction:
        text += " point " + " ".join(_EN_ONES[int(d)] for d in fraction)
    return text


_ZH_NUMBER = re.compile(r"(?<![\d.])(-?)(\d+)(?:\.(\d+))?(℃|°C|%)?")
_ZH_COUNTED = ("小时", "天", "个")  # 两小时, not 二小时
_ZH_ROMAN = str.maketrans("ⅠⅡⅢⅣ", "一二三四")


def spoken_zh(text: str) -> str:
    """Chinese text as a broadcast reader should say it: numbers in words, symbols and brackets spoken or
    dropped.

    >>> spoken_zh("24小时内最高气温将升至37℃以上（能见度小于1000米）")
    '二十四小时内最高气温将升至三十七摄氏度以上，能见度小于一千米'
    >>> spoken_zh("地面最低温度将下降到-3℃以下，约46.3万人")
    '地面最低温度将下降到零下三摄氏度以下，约四十六点三万人'
    """
    text = text.translate(_ZH_ROMAN)
    text = re.sub(r"(\d)\s*[~～]\s*(?=-?\d)", r"\1到", text)

    def say(m: re.Match[str]) -> str:
        sign, integer, fraction, unit = m.group(1), m.group(2), m.group(3) or "", m.group(4) or ""
        number = _zh_decimal(integer, fraction)
        if integer == "2" and not fraction and not unit and text.startswith(_ZH_COUNTED, m.end()):
            number = "两"
        if unit == "%":
            return ("负" if sign else "") + "百分之" + number
        if unit:
            return ("零下" if sign else "") + number + "摄氏度"
        return ("负" if sign else "") + number

    text = _ZH_NUMBER.sub(say, text)
    text = re.sub(r"[（()）]", "，", text)
    text = re.sub(r"[\[\]【】]", "", text)
    text = text.replace("/", "，")
    text = re.sub(r"，+(?=[，。；！])|(?<=[。；！：])，+", "", text)
    return re.sub(r"，{2,}", "，", text).rstrip("，")


_EN_NUMBER = re.compile(
    r"(?<![\w.])(-?)(\d{1,3}(?:,\d{3})+|\d+)(?:\.(\d+))?(?:\s*(°C|degC|mm|km|m|%)(?!\w))?(?![\w])"
)
_EN_UNITS = {
    "°C": ("degree Celsius", "degrees Celsius"),
    "degC": ("degree Celsius", "degrees Celsius"),
    "mm": ("millimetre", "millimetres"),
    "km": ("kilometre", "kilometres"),
    "m": ("metre", "metres"),
    "%": ("per cent", "per cent"),
}


def spoken_en(text: str) -> str:
    """English text as a broadcast reader should say it: numbers and units in words, brackets dropped.

    >>> spoken_en("rise to 37 °C or above within 24 hours; visibility below 1000 m (about 463,000 people)")
    'rise to thirty-seven degrees Celsius or above within twenty-four hours; visibility below one thousand metres, about four hundred and sixty-three thousand people'
    """

    def say(m: re.Match[str]) -> str:
        sign, integer, fraction, unit = m.group(1), m.group(2), m.group(3) or "", m.group(4)
        number = ("minus " if sign else "") + _en_decimal(integer, fraction)
        if not unit:
            return number
        one, many = _EN_UNITS[unit]
        return f"{number} {one if integer == '1' and not fraction else many}"

    text = _EN_NUMBER.sub(say, text)
    text = re.sub(r"\s*[()]\s*", ", ", text).replace("/", ", ")
    text = re.sub(r"[\[\]]", "", text)
    text = re.sub(r",\s*(?=[,.;:!?]|$)", "", text)
    return text.strip()


# ---------------------------------------------------------------------------------------------- times


def beijing_time(dt: datetime) -> datetime:
    """`dt` in Beijing time; `TextsError` when it has no time zone."""
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise TextsError(f"time {dt.isoformat()} has no time zone (message times must be timezone-aware)")
    return dt.astimezone(BEIJING)


def zh_time(dt: datetime, now: datetime) -> str:
    """Beijing time as Chinese warnings write it: ``7月9日16时``, ``7月9日16时30分``; the year is added when it
    is not ``now``'s year.

    >>> from datetime import UTC
    >>> zh_time(datetime(2017, 7, 9, 8, 0, tzinfo=UTC), datetime(2017, 7, 9, tzinfo=UTC))
    '7月9日16时'
    """
    t, today = beijing_time(dt), beijing_time(now)
    year = f"{t.year}年" if t.year != today.year else ""
    minutes = f"{t.minute}分" if t.minute else ""
    return f"{year}{t.month}月{t.day}日{t.hour}时{minutes}"


def en_clock(dt: datetime, now: datetime) -> str:
    """Beijing time without the zone suffix: ``16:00 9 July`` (the year when it is not ``now``'s)."""
    t, today = beijing_time(dt), beijing_time(now)
    year = f" {t.year}" if t.year != today.year else ""
    return f"{t:%H:%M} {t.day} {_MONTHS[t.month - 1]}{year}"


def en_time(dt: datetime, now: datetime) -> str:
    """Beijing time as the English texts write it: ``16:00 9 July (UTC+8)``."""
    return f"{en_clock(dt, now)} (UTC+8)"


def zh_spoken_time(dt: datetime, now: datetime) -> str:
    """Beijing time as a broadcast says it: ``今天下午四点``, ``明天凌晨两点半``, ``七月九日下午四点十五分``."""
    t, today = beijing_time(dt), beijing_time(now)
    days = (t.date() - today.date()).days
    day = {-1: "昨天", 0: "今天", 1: "明天", 2: "后天"}.get(days)
    if day is None:
        year = "".join(_ZH_DIGITS[int(d)] for d in str(t.year)) + "年" if t.year != today.year else ""
        day = f"{year}{zh_number(t.month)}月{zh_number(t.day)}日"
    h = t.hour
    period = "凌晨" if h < 6 else "早上" if h < 9 else "上午" if h < 12 else "中午" if h == 12 else "下午"
    if h >= 18:
        period = "晚上"
    h12 = h if h <= 12 else h - 12
    hour = "两" if h12 == 2 else zh_number(h12)
    if t.minute == 0:
        minutes = ""
    elif t.minute == 30:
        minutes = "半"
    else:
        minutes = ("零" if t.minute < 10 else "") + zh_number(t.minute) + "分"
    return f"{day}{period}{hour}点{minutes}"


def en_spoken_time(dt: datetime, now: datetime) -> str:
    """Beijing time as a broadcast says it: ``four p.m. today``, ``noon tomorrow``, ``four oh five p.m. on
    the ninth of July``."""
    t, today = beijing_time(dt), beijing_time(now)
    days = (t.date() - today.date()).days
    day = {-1: "yesterday", 0: "today", 1: "tomorrow"}.get(days)
    if day is None:
        year = f" {t.year}" if t.year != today.year else ""
        day = f"on the {en_ordinal(t.day)} of {_MONTHS[t.month - 1]}{year}"
    if (t.hour, t.minute) == (0, 0):
        clock = "midnight"
    elif (t.hour, t.minute) == (12, 0):
        clock = "noon"
    else:
        h12 = t.hour % 12 or 12
        minutes = "" if t.minute == 0 else " oh " if t.minute < 10 else " "
        minutes += en_number(t.minute) if t.minute else ""
        clock = f"{en_number(h12)}{minutes} {'a.m.' if t.hour < 12 else 'p.m.'}"
    return f"{clock} {day}"
