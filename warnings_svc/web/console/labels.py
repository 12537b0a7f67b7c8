"""The console's texts in the page's language: label tables (translated through the catalogues, `i18n`), names
of hazards, levels and statuses, warning titles and Beijing times."""

from __future__ import annotations

from datetime import datetime

from risk_zoning import BEIJING, HAZARD_NAMES
from warnings_svc.vocabulary import LEVEL_NAMES
from warnings_svc.web.i18n import N_, Message, translate

# The area channels by name, as the console shows them
CHANNEL_NAMES: dict[str, Message] = {
    "mqtt": N_("channel", "Loudspeakers and displays"),
    "area_sms": N_("channel", "Operator area SMS"),
    "cell_broadcast": N_("channel", "Cell broadcast"),
    "broadcast_platform": N_("channel", "Emergency broadcast platform"),
    "radio_tv": N_("channel", "Radio and TV"),
}

# The console's labels by key (templates use them as ``t.key``).
LABELS: dict[str, Message] = {
    "console": N_("console", "Warning console"),
    "region": N_("console", "Wuhai"),
    "map": N_("console", "Warning map"),
    "map_legend_live": N_("console", "Warnings in force"),
    "map_legend_proposal": N_("console", "Proposals (dashed)"),
    "map_legend_draft": N_("console", "Drafts, awaiting approval or returned (dotted)"),
    "map_none": N_("console", "none"),
    "proposals": N_("console", "Open proposals"),
    "no_proposals": N_("console", "No open proposals"),
    "warnings": N_("console", "Warnings"),
    "drafts": N_("console", "Drafts"),
    "pending": N_("console", "Pending approval"),
    "returned": N_("console", "Returned"),
    "issued": N_("console", "Issued (in force)"),
    "none": N_("console", "none"),
    "hazard": N_("console", "Hazard"),
    "level": N_("console", "Level"),
    "action": N_("console", "Action"),
    "areas": N_("console", "Areas"),
    "valid": N_("console", "Onset – expires (Beijing time)"),
    "onset": N_("console", "Onset (Beijing time)"),
    "expires": N_("console", "Expires (Beijing time)"),
    "probability": N_("console", "Probability"),
    "exposed": N_("console", "Exposed people"),
    "run": N_("console", "Forecast run"),
    "create_draft": N_("console", "Create draft"),
    "replaces": N_("console", "Changes warning"),
    "status": N_("console", "Status"),
    "version": N_("console", "Version"),
    "updated": N_("console", "Updated"),
    "by": N_("console", "By"),
    "exercise": N_("console", "exercise"),
    "live": N_("console", "Live"),
    "live_connecting": N_("console", "Connecting…"),
    "live_off": N_("console", "Disconnected, retrying"),
    # Translators: the name of the language the link switches to, in that language
    "lang_other": N_("language switch", "中文"),
    "logout": N_("console", "Sign out"),
    "back": N_("console", "Back to the console"),
    "colleague_changed": N_("console", "A colleague has changed this warning. Your edits are not saved yet:"),
    "reload": N_("console", "Reload"),
    "facts": N_("console", "Latest version"),
    "msg_type": N_("console", "Message type"),
    "identifier": N_("console", "Identifier"),
    "sent": N_("console", "Sent"),
    "created_by": N_("console", "Created by"),
    "editors": N_("console", "Edited by"),
    "approved_by": N_("console", "Approved by"),
    "approval_comment": N_("console", "Approval comment"),
    "return_reason": N_("console", "Reason for return"),
    "note": N_("console", "Note"),
    "in_force": N_("console", "Version in force"),
    "edit": N_("console", "Edit"),
    "edit_withdraws": N_("console", "Saving withdraws the submission; submit it again afterwards."),
    "cancel_edit_note": N_("console", "A Cancel message only takes a note (why)."),
    "whole_city": N_("console", "whole city"),
    "texts": N_("console", "Own texts (empty: the template's)"),
    "headline": N_("console", "Headline"),
    "description": N_("console", "Description"),
    "instruction": N_("console", "Instruction"),
    "save": N_("console", "Save changes"),
    "actions": N_("console", "Actions"),
    "submit": N_("console", "Submit for approval"),
    "approve": N_("console", "Approve and issue"),
    "comment": N_("console", "Comment (optional)"),
    "return": N_("console", "Return for edit"),
    "reason": N_("console", "Reason (required)"),
    "discard": N_("console", "Discard"),
    "discard_confirm": N_("console", "Discard this version?"),
    "start_update": N_("console", "Start an Update"),
    "start_cancel": N_("console", "Start a Cancel"),
    "cancel_note": N_("console", "Why it is cancelled"),
    "no_actions": N_("console", "Your role has nothing to do at this status."),
    # Translators: {level} is a warning level's name
    "two_person": N_(
        "console",
        "Two-person rule: you created or edited this {level} warning, so another approver must approve it.",
    ),
    "impact": N_("console", "Impact preview"),
    "public_channels": N_("console", "Public channels"),
    "channel": N_("console", "Channel"),
    "target": N_("console", "Target"),
    "reach": N_("console", "Reach"),
    "measured": N_("console", "measured"),
    "estimated": N_("console", "estimated"),
    "to_go": N_("console", "goes out on approval"),
    "not_at_level": N_("console", "not used at this level"),
    "not_chosen": N_("console", "not chosen for this warning"),
    "public_channels_hint": N_(
        "console", "Public channels to put it out on (the level's defaults unless changed)"
    ),
    "reach_of": N_("console", "{delivered} of {targeted}"),
    "people_served": N_("console", "people served"),
    "terminals_serving": N_("console", "{terminals} terminals serving {people} people"),
    "people_in_areas": N_("console", "{people} people in the areas"),
    "handsets_expected": N_("console", "about {handsets} handsets"),
    "population": N_("console", "Population covered"),
    "area_population": N_("console", "Population"),
    "vulnerable": N_("console", "Vulnerable groups and assets"),
    "vulnerable_none": N_("console", "none (not from a proposal)"),
    "responders": N_("console", "Departments and duty contacts to be called"),
    "responders_none": N_("console", "No department responds to this warning"),
    "registry_empty": N_("console", "The registry of departments is empty: nobody to list."),
    "registry_empty_ask": N_("console", "An administrator imports or adds the departments."),
    "manage_departments": N_("console", "Register departments"),
    "department": N_("console", "Department"),
    "duty_contact": N_("console", "Duty contact"),
    "vacant": N_("console", "vacant"),
    "phone": N_("console", "Phone"),
    "unit": N_("console", "Area"),
    "demo_data": N_("console", "demo data/示例数据"),
    "channels": N_("console", "Channel texts and SMS segments"),
    "preview_now": N_("console", "What it would say if approved now"),
    "issued_texts": N_("console", "The texts issued"),
    "preview_unavailable": N_("console", "No preview: "),
    "sms_short": N_("console", "SMS (one segment)"),
    "sms_full": N_("console", "SMS (full)"),
    "segments": N_("console", "segments"),
    "chars": N_("console", "characters"),
    "pages": N_("console", "pages"),
    "broadcast": N_("console", "Broadcast script"),
    "cell_broadcast": N_("console", "Cell broadcast"),
    "area_desc": N_("console", "Area description"),
    "budget_problems": N_("console", "Over budget"),
    "history": N_("console", "History"),
    "versions": N_("console", "Versions"),
    "timeline": N_("console", "Timeline"),
    "time": N_("console", "Time"),
    "who": N_("console", "Who"),
    "what": N_("console", "What"),
    "detail": N_("console", "Detail"),
    "changed": N_("console", "changed"),
    "open": N_("console", "Open"),
    "not_found": N_("console", "No such warning"),
    "noscript": N_("console", "The console's actions need JavaScript."),
    "field": N_("console", "field"),
    "no_changes": N_("console", "Nothing changed."),
    "error": N_("console", "Something went wrong"),
    "network_error": N_("console", "Network error; try again."),
    # the operations view (`console.operations`)
    "operations": N_("operations", "Operations"),
    "ops_panel": N_("operations", "Delivery and coverage"),
    "ops_live": N_("operations", "Warnings in force"),
    "ops_none_live": N_("operations", "No warning is in force."),
    "ops_expires": N_("operations", "expires"),
    "expiring_soon": N_("operations", "expires within the hour"),
    "public_record": N_("operations", "public page"),
    "ops_delivery": N_("operations", "Delivery per channel"),
    "ops_no_deliveries": N_("operations", "No delivery written yet."),
    "col_queued": N_("operations", "queued"),
    "col_sent": N_("operations", "sent"),
    "col_delivered": N_("operations", "delivered"),
    "col_failed": N_("operations", "failed"),
    "col_dead": N_("operations", "dead"),
    "ops_coverage": N_("operations", "Coverage"),
    # Translators: {target} is a percentage such as 95%
    "ops_of_target": N_("operations", "of the people in the area (target {target})"),
    "ops_at_10": N_("operations", "at 10 min"),
    "ops_at_30": N_("operations", "at 30 min"),
    "ops_minutes_to_target": N_("operations", "target reached after {minutes} min"),
    "ops_plot": N_("operations", "Public coverage over time against the target"),
    "ops_minutes_after_issue": N_("operations", "minutes after issue"),
    "ops_target": N_("operations", "target"),
    "ops_public": N_("operations", "public coverage"),
    "ops_measured_part": N_("operations", "measured part"),
    "ops_coverage_map": N_("operations", "Coverage by town"),
    "ops_method": N_("operations", "How coverage is computed"),
    "ops_escalations": N_("operations", "Escalation"),
    "ops_checkpoint": N_("operations", "Checkpoint"),
    "ops_step": N_("operations", "Step"),
    # Translators: {minutes} after issue; {coverage} and {target} are percentages
    "escalation_proposed": N_(
        "operations",
        "Coverage {coverage} at the {minutes}-minute checkpoint, below the target {target}. Proposed:",
    ),
    "escalation_apply": N_("operations", "Apply"),
    "escalation_decline": N_("operations", "Decline"),
    "escalation_decline_reason": N_("operations", "Why not (optional)"),
    "ops_acks": N_("operations", "Acknowledgements"),
    # Translators: {open} requests still open, {overdue} of them overdue or on the call list
    "ops_acks_outstanding": N_("operations", "{open} outstanding, {overdue} overdue"),
    "ops_no_acks": N_("operations", "No department was asked to acknowledge."),
    "ops_queues": N_("operations", "Queues and channels"),
    "ops_queues_empty": N_("operations", "Nothing waiting, no failure today."),
    "ops_waiting": N_("operations", "waiting"),
    "ops_oldest": N_("operations", "oldest due"),
    "ops_last_failure": N_("operations", "last failure (24 h)"),
    "ops_circuits": N_("operations", "Circuits"),
    "ops_circuits_elsewhere": N_(
        "operations", "The dispatchers run in other processes: their circuits are in /metrics and Grafana."
    ),
    # the forecaster's home: what matters on duty
    "onset_passed": N_("duty", "onset passed"),
    "run_old": N_("duty", "old forecast run"),
    # the registry of departments (admins)
    "departments": N_("departments", "Departments"),
    "departments_title": N_("departments", "Departments and their duty chains"),
    "departments_none": N_("departments", "No department is registered yet."),
    "departments_import_hint": N_(
        "departments", "Many at once: warnings-svc departments import FILE.csv (see docs/departments.md)."
    ),
    "add_department": N_("departments", "Add a department"),
    "edit_department": N_("departments", "Edit department"),
    "code": N_("departments", "Code"),
    "code_hint": N_("departments", "a-z, 0-9, _ . -; the key imports match on, never changed"),
    "name_zh": N_("departments", "Name (Chinese)"),
    "name_en": N_("departments", "Name (English)"),
    "sector": N_("departments", "Sector"),
    "area": N_("departments", "Area served"),
    "hazards": N_("departments", "Hazards it responds to"),
    "hazards_hint": N_("departments", "none ticked: all four"),
    "min_level": N_("departments", "Lowest level that calls it"),
    "duty_chain": N_("departments", "Duty chain"),
    "person_name": N_("departments", "Name"),
    "email": N_("departments", "Email"),
    "optional": N_("departments", "optional"),
    "state": N_("departments", "State"),
    "in_service": N_("departments", "in service"),
    "retired": N_("departments", "retired"),
    "retire": N_("departments", "Retire"),
    "restore": N_("departments", "Restore"),
    "save_department": N_("departments", "Save"),
    "back_to_list": N_("departments", "Back to the list"),
    "form_errors": N_("departments", "Nothing was saved; correct the fields marked:"),
    "no_such_department": N_("departments", "No such department"),
}
SECTOR_NAMES: dict[str, Message] = {
    "emergency": N_("sector", "emergency management"),
    "education": N_("sector", "education"),
    "agriculture": N_("sector", "agriculture"),
    "transport": N_("sector", "transport"),
    "housing": N_("sector", "housing"),
    "water": N_("sector", "water"),
    "power": N_("sector", "power"),
    "health": N_("sector", "health"),
    "media": N_("sector", "media"),
    "other": N_("sector", "other"),
}
RANK_NAMES: dict[str, Message] = {
    "duty": N_("rank", "duty contact"),
    "deputy": N_("rank", "deputy"),
    "leader": N_("rank", "leader"),
}
STATUS_NAMES: dict[str, Message] = {
    "draft": N_("warning status", "draft"),
    "pending_approval": N_("warning status", "pending approval"),
    "returned": N_("warning status", "returned"),
    "issued": N_("warning status", "issued"),
    "updated": N_("warning status", "updated"),
    "cancelled": N_("warning status", "cancelled"),
    "expired": N_("warning status", "expired"),
    "discarded": N_("warning status", "discarded"),
}
ROLE_NAMES: dict[str, Message] = {
    "forecaster": N_("role", "forecaster"),
    "approver": N_("role", "approver (chief)"),
    "operations": N_("role", "operations"),
    "department": N_("role", "department"),
    "admin": N_("role", "admin"),
}
MSG_TYPE_NAMES: dict[str, Message] = {
    "Alert": N_("message type", "Alert"),
    "Update": N_("message type", "Update"),
    "Cancel": N_("message type", "Cancel"),
}
# What an audit entry's action reads as on a warning's timeline.
AUDIT_ACTIONS: dict[str, Message] = {
    "create": N_("audit action", "created the draft"),
    "edit": N_("audit action", "edited"),
    "submit": N_("audit action", "submitted"),
    "approve": N_("audit action", "approved and issued"),
    "return_for_edit": N_("audit action", "returned for edit"),
    "discard": N_("audit action", "discarded"),
    "draft_update": N_("audit action", "started an Update"),
    "draft_cancel": N_("audit action", "started a Cancel"),
    "update": N_("audit action", "superseded by an Update"),
    "cancel": N_("audit action", "cancelled"),
    "expire": N_("audit action", "expired"),
    "acknowledgement_call": N_("audit action", "asked a department to acknowledge"),
    "acknowledgement_escalated": N_("audit action", "escalated an acknowledgement"),
    "acknowledgement_closed": N_("audit action", "closed an acknowledgement request"),
    "acknowledgement_call_outcome": N_("audit action", "noted a call that reached nobody"),
    "acknowledged": N_("audit action", "acknowledged"),
    "relay_report": N_("audit action", "a relayer reported"),
}
VULNERABLE_NAMES: dict[str, Message] = {
    "elderly_65plus": N_("vulnerable group", "people aged 65+"),
    "outdoor_workers": N_("vulnerable group", "outdoor workers"),
    "mining_area_km2": N_("vulnerable group", "mining area (km²)"),
    "people_in_gully_zones": N_("vulnerable group", "people in gully zones"),
    "cropland_km2": N_("vulnerable group", "cropland (km²)"),
    "road_exposure_km2": N_("vulnerable group", "road exposure (km²)"),
}
# Strings the page's JavaScript shows (handed over as JSON, never as inline script).
SCRIPT_LABELS: tuple[str, ...] = (
    "live",
    "live_connecting",
    "live_off",
    "discard_confirm",
    "field",
    "no_changes",
    "error",
    "network_error",
    "reason",
)


def labels(lang: str) -> dict[str, str]:
    """Every console label in one language."""
    return {key: translate(message, lang) for key, message in LABELS.items()}


def name_in(table: dict[str, Message], key: str, lang: str) -> str:
    """`key`'s name from one of the tables above; the key itself when the table does not know it."""
    message = table.get(key)
    return key if message is None else translate(message, lang)


def hazard_name(hazard: str, lang: str) -> str:
    return HAZARD_NAMES[lang].get(hazard, hazard)


def level_name(level: str, lang: str) -> str:
    return pick(LEVEL_NAMES.get(level, (level, level)), lang)


def pick(pair: tuple[str, str], lang: str) -> str:
    """One of a (Chinese, English) pair, as the shared vocabularies give names."""
    return pair[0] if lang == "zh" else pair[1]


def warning_title(hazard: str, level: str, lang: str) -> str:
    """``高温橙色预警`` / ``Heat orange warning``."""
    if lang == "zh":
        return f"{hazard_name(hazard, lang)}{level_name(level, lang)}预警"
    return f"{hazard_name(hazard, lang)} {level_name(level, lang)} warning"


def area_separator(lang: str) -> str:
    return "、" if lang == "zh" else ", "


def beijing(t: datetime | None, fmt: str = "%m-%d %H:%M") -> str:
    """A time as Beijing wall-clock text (empty for None)."""
    return "" if t is None else t.astimezone(BEIJING).strftime(fmt)
