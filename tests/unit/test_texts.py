"""Warning texts: headlines by the national convention, guidance from the TOML, channel budgets, encodings."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from risk_zoning.region import builtin_regions, load_region_file
from warnings_svc.documents.message import Area, Issuer, WarningMessage
from warnings_svc.documents.texts import (
    CHANNELS,
    BudgetProblem,
    Budgets,
    Places,
    TextsError,
    cbs_pages,
    check_budgets,
    default_texts_path,
    load_texts,
    render_texts,
    sms_segments,
)
from warnings_svc.documents.wording import (
    en_spoken_time,
    spoken_en,
    spoken_zh,
    zh_number,
    zh_spoken_time,
    zh_time,
)
from warnings_svc.forecast.criteria import load_criteria
from warnings_svc.vocabulary import HAZARD_LEVELS

SENT = datetime(2017, 7, 9, 8, 0, tzinfo=UTC)  # 16:00 Beijing time
WUHAI = Issuer(
    "wuhai@weather.example.cn", "15030041600000", "乌海市气象台", "Wuhai Meteorological Observatory"
)
HAIBOWAN = Area("150302000000", "海勃湾区", "Haibowan")
WUDA = Area("150304000000", "乌达区", "Wuda")
TOWNS = tuple(
    Area(t.code, t.name, t.name_en)
    for t in load_region_file(builtin_regions() / "wuhai" / "region.toml").town
)
TEXTS = load_texts()


def message(**changes: object) -> WarningMessage:
    """A heat orange Alert for 海勃湾区 and 乌达区, issued 16:00 9 July 2017 Beijing time; override any field."""
    base = WarningMessage(
        identifier="15030041600000_20170709160000",
        msg_type="Alert",
        status="Actual",
        hazard="heat",
        level="orange",
        areas=(HAIBOWAN, WUDA),
        sent=SENT,
        onset=SENT,
        expires=SENT + timedelta(hours=24),
        issuer=WUHAI,
        exposed_population=463_400,
    )
    return replace(base, **changes)


EVERY_MESSAGE = [
    (hazard, level, lang, msg_type)
    for hazard, levels in HAZARD_LEVELS.items()
    for level in levels
    for lang in ("zh-CN", "en")
    for msg_type in ("Alert", "Update", "Cancel")
]


# ---------------------------------------------------------------------------------------------- every message


@pytest.mark.parametrize(("hazard", "level", "lang", "msg_type"), EVERY_MESSAGE)
def test_every_hazard_level_language_and_message_type_renders_within_budget(
    hazard: str, level: str, lang: str, msg_type: str
) -> None:
    msg = message(hazard=hazard, level=level, msg_type=msg_type, onset=SENT + timedelta(hours=2))
    texts = render_texts(msg, lang=lang)

    assert check_budgets(texts) == []
    words = TEXTS.levels[level][lang]
    signal = (
        f"{texts.event}{words.colour}预警" if lang == "zh-CN" else f"{words.colour} {texts.event} Warning"
    )
    assert texts.event == TEXTS.hazards[hazard].name[lang]
    for text in (texts.headline, texts.description, texts.sms_short, texts.sms_full, texts.cell_broadcast):
        assert signal in text
    assert texts.area_desc in texts.sms_short
    assert set(texts.channels) == set(CHANNELS)
    assert texts.channels["SMS"] == texts.sms_full
    assert texts.channels["SPEAKER"] == texts.broadcast
    assert sms_segments(texts.sms_short) == 1
    assert 1 <= texts.sms_full_segments <= 3
    assert 1 <= texts.cell_broadcast_pages <= 15
    if msg_type != "Cancel":
        assert TEXTS.hazards[hazard].levels[level][lang].core in texts.sms_short
        assert texts.instruction.splitlines()[0].startswith("1.")


@pytest.mark.parametrize("lang", ["zh-CN", "en"])
@pytest.mark.parametrize("branch", ["forecast", "observed", "forecast+observed"])
def test_all_twenty_wuhai_towns_stay_within_every_budget(lang: str, branch: str) -> None:
    for hazard, levels in HAZARD_LEVELS.items():
        texts = render_texts(message(hazard=hazard, level=levels[-1], areas=TOWNS, branch=branch), lang=lang)
        assert check_budgets(texts) == [], hazard


# ---------------------------------------------------------------------------------------------- headlines


def test_the_heat_orange_alert_headline_follows_the_national_convention() -> None:
    assert render_texts(message(), lang="zh-CN").headline == "乌海市气象台发布高温橙色预警[Ⅱ级/严重]"


def test_the_heat_orange_cancel_headline_says_jiechu_without_a_level_label() -> None:
    assert render_texts(message(msg_type="Cancel"), lang="zh-CN").headline == "乌海市气象台解除高温橙色预警"


def test_an_update_headline_says_gengxin_and_keeps_the_label_of_the_level_in_force() -> None:
    texts = render_texts(message(msg_type="Update", hazard="rainstorm", level="red"), lang="zh-CN")
    assert texts.headline == "乌海市气象台更新暴雨红色预警[Ⅰ级/特别严重]"


def test_the_english_headline_names_the_issuer_the_colour_and_the_level() -> None:
    texts = render_texts(message(), lang="en")
    assert texts.headline == "Wuhai Meteorological Observatory issues Orange Heat Warning [Level II/Severe]"
    assert texts.event == "Heat"


# ---------------------------------------------------------------------------------------------- content


def test_the_description_says_what_where_when_how_severe_and_who_is_exposed() -> None:
    texts = render_texts(message(onset=SENT + timedelta(hours=4)), lang="zh-CN")
    assert texts.description == (
        "乌海市气象台7月9日16时发布高温橙色预警信号：预计7月9日20时起，海勃湾区、乌达区24小时内最高气温"
        "将升至37℃以上，可能造成严重影响，影响人口约46.3万人。预警有效期至7月10日16时。"
    )


def test_the_observed_branch_says_the_threshold_has_been_reached() -> None:
    texts = render_texts(message(branch="observed"), lang="zh-CN")
    assert "海勃湾区、乌达区最高气温已达37℃以上，并可能持续" in texts.description
    assert "预计" not in texts.description


def test_the_instruction_is_the_cma_guidance_for_the_hazard_and_level() -> None:
    texts = render_texts(message(hazard="sandstorm", level="red"), lang="zh-CN")
    assert texts.instruction.splitlines() == [
        "1.政府及相关部门按照职责做好防沙尘暴应急抢险工作；",
        "2.人员应当留在防风、防尘的地方，不要在户外活动；",
        "3.学校、幼儿园推迟上学或者放学，直至特强沙尘暴结束；",
        "4.飞机暂停起降，火车暂停运行，高速公路暂时封闭。",
    ]


def test_the_guidance_comes_from_the_texts_file(tmp_path: Path) -> None:
    original = "停止户外露天作业（除特殊行业外）"
    changed = "停止一切户外作业（本市试行）"
    path = tmp_path / "texts.toml"
    path.write_text(default_texts_path().read_text("utf-8").replace(original, changed), "utf-8")

    texts = render_texts(message(level="red"), lang="zh-CN", config=load_texts(path))

    assert f"2.{changed}；" in texts.instruction
    assert original not in texts.instruction
    assert changed in texts.channels["WEB"]


def test_a_texts_file_missing_a_level_is_refused_naming_the_key(tmp_path: Path) -> None:
    text = default_texts_path().read_text("utf-8")
    path = tmp_path / "texts.toml"
    path.write_text(
        text.replace("[hazards.frost.levels.orange.zh-CN]", "[hazards.frost.levels.orange.zh-TW]")
    )
    with pytest.raises(TextsError, match=r"hazards\.frost\.levels\.orange"):
        load_texts(path)


def test_the_criteria_wording_repeats_the_packaged_thresholds() -> None:
    symbol = {"degC": "℃", "mm": "毫米", "m": "米"}
    criteria = load_criteria()
    for hazard, levels in HAZARD_LEVELS.items():
        for lv in criteria.hazard(hazard).levels():
            if lv.name not in levels:
                continue
            wording = TEXTS.hazards[hazard].levels[lv.name]["zh-CN"]
            expected = f"{lv.threshold:g}{symbol[lv.units]}"
            assert expected in wording.forecast and expected in wording.observed, (hazard, lv.name)
            if lv.window_h is not None:
                assert f"{lv.window_h:g}小时内" in wording.forecast, (hazard, lv.name)


def test_chinese_texts_give_times_in_beijing_time() -> None:
    late = datetime(2017, 7, 9, 17, 30, tzinfo=UTC)  # 01:30 on 10 July in Beijing
    texts = render_texts(message(sent=late, onset=late, expires=late + timedelta(hours=12)), lang="zh-CN")
    assert "7月10日1时30分发布" in texts.description
    assert "预警有效期至7月10日13时30分" in texts.description
    assert "7月10日1时30分" in texts.sms_full
    assert zh_time(datetime(2017, 12, 31, 16, 0, tzinfo=UTC), SENT) == "2018年1月1日0时"


def test_english_texts_give_times_with_the_utc_offset() -> None:
    texts = render_texts(message(), lang="en")
    assert "at 16:00 9 July (UTC+8)" in texts.description
    assert "Valid until 16:00 10 July (UTC+8)" in texts.description


def test_a_naive_time_is_refused() -> None:
    with pytest.raises(TextsError, match="time zone"):
        render_texts(message(sent=datetime(2017, 7, 9, 16)), lang="zh-CN")


def test_an_unknown_language_or_hazard_is_refused() -> None:
    with pytest.raises(TextsError, match="language"):
        render_texts(message(), lang="fr")
    with pytest.raises(TextsError, match="typhoon"):
        render_texts(message(hazard="typhoon"), lang="zh-CN")


def test_area_names_cannot_break_the_text() -> None:
    hostile = Area("150302000000", "海勃湾区\n\x07{{ 7 * 7 }}\u200b\u202e", "Haibowan\r\n[x]")
    texts = render_texts(message(areas=(hostile, WUDA), note="已核实\n\x1e完毕"), lang="zh-CN")
    assert "海勃湾区 {{ 7 * 7 }}、乌达区" in texts.description
    assert "49" not in texts.description
    for text in (texts.description, texts.sms_short, texts.sms_full, texts.broadcast, texts.area_desc):
        assert not re.search(r"[\x00-\x1f\u200b\u202e]", text)
    assert texts.description.endswith("已核实 完毕。")


# ---------------------------------------------------------------------------------------------- area_desc


def test_area_desc_joins_the_names_when_they_fit() -> None:
    assert render_texts(message(), lang="zh-CN").area_desc == "海勃湾区、乌达区"
    assert render_texts(message(), lang="en").area_desc == "Haibowan, Wuda"


def test_area_desc_of_all_twenty_towns_is_the_city() -> None:
    assert len(TOWNS) == 20
    texts = render_texts(message(areas=TOWNS), lang="zh-CN")
    assert texts.area_desc == "乌海市"
    assert "新华西街道" in texts.description  # the description still names every town


def test_area_desc_of_nineteen_towns_names_whole_counties_and_parts() -> None:
    texts = render_texts(message(areas=TOWNS[:19]), lang="zh-CN")
    assert texts.area_desc == "海勃湾区、乌达区、海南区部分地区"
    assert render_texts(message(areas=TOWNS[:19]), lang="en").area_desc == "Haibowan, Wuda, parts of Hainan"


def test_area_desc_falls_back_to_part_of_the_jurisdiction_when_counties_are_unknown() -> None:
    towns = tuple(Area(f"150399{i:03d}000", f"第{i}试验街道", f"Test {i}") for i in range(20))
    texts = render_texts(message(areas=towns), lang="zh-CN")
    assert texts.area_desc == "乌海市部分地区"
    assert len(texts.area_desc) < 50


def test_area_desc_uses_the_given_places_when_the_region_is_not_built_in() -> None:
    county = Area("659999000000", "示例县", "Example County")
    towns = tuple(Area(f"659999{i:03d}000", f"示例第{i}镇", f"Example {i}") for i in range(1, 21))
    places = Places(Area("659900000000", "示例市", "Example City"), (county,), {"659999": frozenset()})
    assert render_texts(message(areas=towns), lang="zh-CN", places=places).area_desc == "示例县部分地区"


# ---------------------------------------------------------------------------------------------- channels


def test_the_one_segment_sms_carries_the_signal_the_area_and_the_core_instruction() -> None:
    texts = render_texts(message(), lang="zh-CN")
    assert texts.sms_short == (
        "【乌海市气象台】发布高温橙色预警：海勃湾区、乌达区24小时内最高气温将升至37℃以上，避免高温时段户外活动。"
    )
    assert sms_segments(texts.sms_short) == 1


def test_the_full_sms_falls_back_to_the_brief_guidance_within_its_segments() -> None:
    texts = render_texts(message(hazard="rainstorm", level="yellow"), lang="zh-CN")
    assert TEXTS.hazards["rainstorm"].levels["yellow"]["zh-CN"].brief in texts.sms_full
    assert texts.sms_full_segments == 3
    roomy = render_texts(
        message(hazard="rainstorm", level="yellow"), lang="zh-CN", budgets=Budgets(sms_full_segments=5)
    )
    assert "防御指南：1.政府及相关部门按照职责做好防暴雨工作；" in roomy.sms_full


def test_english_sms_stays_in_the_gsm_alphabet() -> None:
    texts = render_texts(message(), lang="en")
    assert "37C" in texts.sms_full
    assert len(texts.sms_full) > 160 and texts.sms_full_segments == 3  # GSM-7: 153 a segment


def test_the_broadcast_is_read_twice_with_numbers_and_times_spoken() -> None:
    texts = render_texts(message(onset=SENT + timedelta(hours=3)), lang="zh-CN")
    assert texts.broadcast.startswith("各位居民请注意！")
    assert (
        texts.broadcast.count(
            "预计从今天晚上七点起，海勃湾区、乌达区二十四小时内最高气温将升至三十七摄氏度以上"
        )
        == 2
    )
    assert texts.broadcast.count("预警有效到明天下午四点") == 2
    assert not re.search(r"\d", texts.broadcast)


def test_the_english_broadcast_spells_numbers_and_times() -> None:
    texts = render_texts(message(), lang="en")
    assert texts.broadcast.count("thirty-seven degrees Celsius or above within twenty-four hours") == 2
    assert "at four p.m. today" in texts.broadcast
    assert not re.search(r"\d", texts.broadcast)


def test_the_broadcast_keeps_to_a_configured_length_with_the_brief_guidance() -> None:
    msg = message(hazard="rainstorm", level="yellow")
    assert len(render_texts(msg, lang="zh-CN").broadcast) > 400  # the full guidance, read twice

    budgets = Budgets(broadcast_chars=400)
    texts = render_texts(msg, lang="zh-CN", budgets=budgets)

    assert len(texts.broadcast) <= 400
    assert check_budgets(texts, budgets) == []
    assert texts.broadcast.count("请大家注意：请做好防暴雨工作，积水路段实行交通管制和引导") == 2


def test_the_cell_broadcast_text_carries_the_full_guidance_within_fifteen_pages() -> None:
    texts = render_texts(message(hazard="sandstorm", level="yellow"), lang="zh-CN")
    assert "防御指南：1.政府及相关部门按照职责做好防沙尘暴工作；" in texts.cell_broadcast
    assert texts.cell_broadcast_pages == cbs_pages(texts.cell_broadcast) <= 15


def test_the_web_text_has_the_headline_the_description_and_one_guidance_item_a_line() -> None:
    web = render_texts(message(), lang="zh-CN").channels["WEB"].splitlines()
    assert web[0] == "乌海市气象台发布高温橙色预警[Ⅱ级/严重]"
    assert web[1].startswith("乌海市气象台7月9日16时发布高温橙色预警信号：")
    assert web[2] == "防御指南："
    assert web[3].startswith("1.") and web[-1].startswith("4.")


# ---------------------------------------------------------------------------------------------- budgets


def test_budget_problems_name_the_field_the_limit_and_the_actual_value() -> None:
    texts = render_texts(message(), lang="zh-CN")
    budgets = Budgets(headline_chars=20, sms_full_segments=1, broadcast_chars=100, cell_broadcast_pages=2)
    problems = {p.field: p for p in check_budgets(texts, budgets)}

    assert set(problems) == {"headline", "sms_full", "broadcast", "cell_broadcast"}
    assert problems["headline"] == BudgetProblem("headline", "characters", 20, 21)
    assert problems["sms_full"].limit == 1 and problems["sms_full"].actual == texts.sms_full_segments
    assert problems["broadcast"].actual == len(texts.broadcast)
    assert str(problems["headline"]) == "headline: 21 characters, at most 20 allowed"
    assert str(problems["sms_full"]).startswith(f"sms_full: {texts.sms_full_segments} segments, at most 1")
    assert "UCS2 characters" in str(problems["sms_full"])


def test_an_area_desc_of_fifty_characters_is_a_problem() -> None:
    texts = render_texts(message(), lang="zh-CN")
    problems = check_budgets(replace(texts, area_desc="区" * 50))
    assert problems == [BudgetProblem("area_desc", "characters", 49, 50)]


def test_budgets_refuse_a_limit_that_is_not_a_positive_integer() -> None:
    with pytest.raises(ValueError, match="sms_full_segments"):
        Budgets(sms_full_segments=0)


# ---------------------------------------------------------------------------------------------- encodings


@pytest.mark.parametrize(
    ("text", "segments"),
    [
        ("", 0),
        ("预" * 70, 1),
        ("预" * 71, 2),
        ("预" * 134, 2),
        ("预" * 135, 3),
        ("a" * 160, 1),
        ("a" * 161, 2),
        ("a" * 306, 2),
        ("a" * 307, 3),
        ("[" * 80, 1),  # extension characters take two septets
        ("[" * 81, 2),
        ("预" * 68 + "🌡", 1),  # an emoji takes two UTF-16 code units
        ("预" * 69 + "🌡", 2),
        ("a" * 69 + "🌡", 2),  # one character outside GSM-7 makes the whole text UCS2
        ("37 °C", 1),
    ],
)
def test_sms_segments_follow_the_70_67_and_160_153_rules(text: str, segments: int) -> None:
    assert sms_segments(text) == segments


@pytest.mark.parametrize(
    ("text", "pages"),
    [
        ("", 0),
        ("预" * 41, 1),
        ("预" * 42, 2),
        ("预" * 615, 15),
        ("预" * 616, 16),
        ("a" * 93, 1),
        ("a" * 94, 2),
        ("预" * 40 + "🌡", 2),
    ],
)
def test_cell_broadcast_pages_hold_41_ucs2_or_93_gsm_characters(text: str, pages: int) -> None:
    assert cbs_pages(text) == pages


# ---------------------------------------------------------------------------------------------- spoken words


def test_numbers_are_spoken_as_mandarin_reads_them() -> None:
    said = " ".join(zh_number(n) for n in (10, 15, 20, 50, 100, 110, 200, 1000, 2000, 10000, 100015))
    assert said == "十 十五 二十 五十 一百 一百一十 两百 一千 两千 一万 十万零一十五"
    assert spoken_zh("2小时内降雨量将达100毫米以上，Ⅱ级") == "两小时内降雨量将达一百毫米以上，二级"
    assert (
        spoken_en("below -5 °C, 1 m and 3.5 mm")
        == "below minus five degrees Celsius, one metre and three point five millimetres"
    )


def test_broadcast_times_are_spoken_relative_to_now() -> None:
    now = SENT  # 16:00 9 July Beijing time
    assert zh_spoken_time(SENT, now) == "今天下午四点"
    assert zh_spoken_time(SENT + timedelta(hours=10, minutes=30), now) == "明天凌晨两点半"
    assert zh_spoken_time(SENT + timedelta(days=3, minutes=5), now) == "七月十二日下午四点零五分"
    assert en_spoken_time(SENT, now) == "four p.m. today"
    assert en_spoken_time(SENT + timedelta(hours=20), now) == "noon tomorrow"
    assert (
        en_spoken_time(SENT + timedelta(days=3, minutes=5), now) == "four oh five p.m. on the twelfth of July"
    )


@pytest.mark.parametrize("module", ["warnings_svc.documents.texts", "warnings_svc.documents.wording"])
def test_the_worked_examples_in_the_texts_modules_hold(module: str) -> None:
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0
