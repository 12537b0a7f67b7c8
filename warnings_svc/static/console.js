// Forecaster console: calls the write API with the session's CSRF token, shows its problem documents next to
// the form and the field at fault, and keeps the page live with server-sent events. No framework, no build.
(() => {
  "use strict";

  const labels = JSON.parse(document.getElementById("console-labels").textContent);
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const page = document.body.dataset.page;
  const lang = document.body.dataset.lang;
  const warningId = document.body.dataset.warningId ? Number(document.body.dataset.warningId) : null;
  const REFRESH_DELAY_MS = 250; // events come in bursts (approve = version + superseded + proposal)
  const RECONNECT_MS = 10000; // after the server refused the stream (e.g. the session ended)

  // ------------------------------------------------------------------------------------------ the API

  async function api(method, url, payload) {
    const headers = { Accept: "application/json", "X-CSRF-Token": csrf };
    const init = { method, headers, credentials: "same-origin" };
    if (payload !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(payload);
    }
    let response;
    try {
      response = await fetch(url, init);
    } catch (e) {
      throw { title: labels.error, detail: labels.network_error };
    }
    let body = null;
    try {
      body = await response.json();
    } catch (e) {
      body = null;
    }
    if (!response.ok) {
      throw body && typeof body === "object"
        ? body
        : { title: labels.error, detail: `HTTP ${response.status}`, status: response.status };
    }
    return body;
  }

  // ------------------------------------------------------------------------------------------ problems

  function clearProblems(scope) {
    scope.querySelectorAll(".invalid").forEach((el) => el.classList.remove("invalid"));
    scope.querySelectorAll(".field-problem").forEach((el) => el.remove());
    scope.querySelectorAll("[data-problem]").forEach((el) => {
      el.hidden = true;
      el.textContent = "";
    });
  }

  function fieldElement(scope, field) {
    const all = [...scope.querySelectorAll("[data-field]")];
    const exact = all.find((el) => el.dataset.field === field);
    if (exact) return exact;
    // "texts.zh-CN" names the fieldset of that language; the longest enclosing name wins
    return (
      all
        .filter((el) => field.startsWith(el.dataset.field + ".") || el.dataset.field.startsWith(field + "."))
        .sort((a, b) => a.dataset.field.length - b.dataset.field.length)[0] || null
    );
  }

  function showProblem(scope, problem) {
    const box = scope.querySelector("[data-problem]");
    const field = problem.field;
    let text = `${problem.title || labels.error}: ${problem.detail || ""}`;
    if (field) text += ` (${labels.field}: ${field})`;
    if (box) {
      box.textContent = text; // never innerHTML: the detail may quote what someone typed
      box.hidden = false;
      box.dataset.code = problem.code || "";
      box.dataset.fieldName = field || "";
    }
    const target = field ? fieldElement(scope, field) : null;
    if (target) {
      target.classList.add("invalid");
      const note = document.createElement("span");
      note.className = "field-problem";
      note.textContent = problem.detail || "";
      target.appendChild(note);
    }
  }

  function busy(form, on) {
    form.querySelectorAll("button").forEach((b) => {
      if (on) {
        b.dataset.wasDisabled = b.disabled ? "1" : "";
        b.disabled = true;
        b.classList.add("busy");
      } else {
        b.disabled = b.dataset.wasDisabled === "1";
        b.classList.remove("busy");
      }
    });
  }

  // ------------------------------------------------------------------------------------------ forms

  function readEditForm(form) {
    const out = {};
    const level = form.querySelector('[name="level"]');
    if (level) out.level = level.value;
    for (const name of ["onset", "expires"]) {
      const el = form.querySelector(`[name="${name}"]`);
      if (el) out[name] = el.value ? `${el.value.length === 16 ? el.value + ":00" : el.value}${el.dataset.tz}` : "";
    }
    const boxes = form.querySelectorAll('input[name="areas"]');
    if (boxes.length) out.areas = [...boxes].filter((b) => b.checked).map((b) => b.value);
    const targets = form.querySelectorAll('input[name="area_targets"]');
    if (targets.length) out.area_targets = [...targets].filter((b) => b.checked).map((b) => b.value);
    const textInputs = form.querySelectorAll('[name^="texts."]');
    if (textInputs.length) {
      const texts = {};
      textInputs.forEach((el) => {
        const [, textLang, name] = el.name.split(".");
        if (el.value.trim()) (texts[textLang] = texts[textLang] || {})[name] = el.value;
      });
      out.texts = texts;
    }
    const note = form.querySelector('[name="note"]');
    if (note) out.note = note.value;
    return out;
  }

  const initial = new WeakMap();

  function snapshot() {
    document.querySelectorAll("form[data-edit]").forEach((f) => initial.set(f, readEditForm(f)));
  }

  function changes(form) {
    const before = initial.get(form) || {};
    const now = readEditForm(form);
    const out = {};
    for (const [key, value] of Object.entries(now)) {
      if (JSON.stringify(value) !== JSON.stringify(before[key])) out[key] = value;
    }
    return out;
  }

  function isDirty() {
    // typed-in changes, or a refusal the user has not read yet: neither may vanish under a refresh
    if ([...document.querySelectorAll("[data-problem]")].some((el) => !el.hidden)) return true;
    for (const form of document.querySelectorAll("form[data-edit]")) {
      if (Object.keys(changes(form)).length) return true;
    }
    for (const input of document.querySelectorAll("form.action input")) {
      if (input.value.trim()) return true;
    }
    return false;
  }

  let ownAction = false; // events caused by this page's own request must not raise the colleague banner

  async function saveEdit(form) {
    clearProblems(form);
    const body = changes(form);
    if (!Object.keys(body).length) {
      showProblem(form, { title: labels.error, detail: labels.no_changes });
      return;
    }
    await send(form, "PATCH", body);
  }

  async function act(form) {
    clearProblems(form);
    if (form.hasAttribute("data-confirm") && !window.confirm(labels.discard_confirm)) return;
    const payload = {};
    form.querySelectorAll("input[name], textarea[name]").forEach((el) => {
      if (el.value.trim()) payload[el.name] = el.value.trim();
    });
    if (form.dataset.action === "return" && !("reason" in payload)) payload.reason = "";
    // data-body: the API takes a JSON body even when nothing was typed (an escalation step's optional reason)
    const withBody = Object.keys(payload).length || form.hasAttribute("data-body");
    await send(form, "POST", withBody ? payload : undefined);
  }

  // One change from a form to its URL, then the page refreshed; a refusal is shown on the form.
  async function send(form, method, body) {
    ownAction = true;
    busy(form, true);
    try {
      await api(method, form.dataset.url, body);
      await refresh(true);
    } catch (problem) {
      showProblem(form, problem);
    } finally {
      busy(form, false);
      ownAction = false;
    }
  }

  async function createDraft(button) {
    const panel = button.closest("[data-live]") || document;
    clearProblems(panel);
    button.disabled = true;
    try {
      const version = await api("POST", button.dataset.url);
      window.location.assign(`/console/warnings/${version.id}${lang === "en" ? "?lang=en" : ""}`);
    } catch (problem) {
      button.disabled = false;
      showProblem(panel, problem);
    }
  }

  document.addEventListener("submit", (event) => {
    const form = event.target;
    if (form.matches("form[data-edit]")) {
      event.preventDefault();
      saveEdit(form);
    } else if (form.matches("form.action")) {
      event.preventDefault();
      act(form);
    }
  });

  document.addEventListener("click", (event) => {
    const create = event.target.closest("[data-create-draft]");
    if (create) {
      createDraft(create);
      return;
    }
    if (event.target.id === "banner-reload") {
      refresh(true);
      return;
    }
    const unit = event.target.closest("svg.selectable [data-code]");
    if (unit) {
      const box = document.querySelector(
        `#edit-form input[name="areas"][value="${CSS.escape(unit.dataset.code)}"]`
      );
      if (box) box.checked = !box.checked;
    }
  });

  // ------------------------------------------------------------------------------------------ live refresh

  const banner = document.getElementById("banner");
  let serverHtml = document.getElementById("console-main").innerHTML; // as the server last sent it

  // Fetch this page again and put its main part in place. Unless `force`d, an unchanged page is left alone
  // (an event this page caused itself comes back after its own refresh), so nothing typed or shown is lost.
  async function refresh(force = false) {
    let response;
    try {
      response = await fetch(window.location.pathname + window.location.search, {
        headers: { Accept: "text/html" },
        credentials: "same-origin",
      });
    } catch (e) {
      return;
    }
    if (response.redirected && new URL(response.url).pathname.startsWith("/console/login")) {
      window.location.reload(); // the session ended: show the login form
      return;
    }
    if (!response.ok) return;
    const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
    const main = document.getElementById("console-main");
    const freshMain = fresh.getElementById("console-main");
    if (!main || !freshMain) return;
    if (!force && freshMain.innerHTML === serverHtml) return;
    serverHtml = freshMain.innerHTML;
    const open = new Set([...main.querySelectorAll("details[id][open]")].map((d) => d.id));
    const closed = new Set([...main.querySelectorAll("details[id]:not([open])")].map((d) => d.id));
    main.replaceChildren(...[...freshMain.childNodes].map((n) => document.importNode(n, true)));
    main.querySelectorAll("details[id]").forEach((d) => {
      if (open.has(d.id)) d.open = true;
      if (closed.has(d.id)) d.open = false;
    });
    snapshot();
    banner.hidden = true;
    document.body.dataset.refreshed = String(Date.now()); // lets tests see that a live refresh happened
  }

  let timer = null;

  function schedule() {
    if (timer !== null) return;
    timer = window.setTimeout(async () => {
      timer = null;
      if (ownAction) return; // the page refreshes itself when its own request is answered
      if (page === "warning" && isDirty()) {
        banner.hidden = false;
      } else {
        await refresh();
      }
    }, REFRESH_DELAY_MS);
  }

  function relevant(kind, data) {
    if (kind === "resync") return true;
    if (page === "home") return true;
    if (page === "warning") return kind === "warning" && Number(data.id) === warningId;
    if (page === "operations") return kind === "warning"; // a warning issued, updated or ended
    return false;
  }

  const status = document.getElementById("live-status");

  function setLive(state) {
    status.dataset.state = state;
    status.textContent = { live: labels.live, off: labels.live_off, connecting: labels.live_connecting }[state];
  }

  function connect() {
    if (!window.EventSource) return;
    const source = new EventSource("/api/v1/events");
    let openedBefore = false;
    source.addEventListener("open", () => {
      setLive("live");
      if (openedBefore) schedule(); // events may have been missed while away
      openedBefore = true;
    });
    source.addEventListener("error", () => {
      setLive("off");
      if (source.readyState === EventSource.CLOSED) window.setTimeout(connect, RECONNECT_MS);
    });
    for (const kind of ["warning", "proposal", "run", "resync"]) {
      source.addEventListener(kind, (event) => {
        let data = {};
        try {
          data = JSON.parse(event.data);
        } catch (e) {
          data = {};
        }
        if (relevant(kind, data)) schedule();
      });
    }
  }

  // ------------------------------------------------------------------------------------------ panels

  // Delivery receipts and coverage send no event (they come by the thousand), so each operations panel is
  // fetched again every few seconds and swapped in when it changed; never while its form shows a refusal
  // or is being sent, nor while something is typed into it.
  async function pollPanel(panel) {
    if (panel.querySelector("button.busy") || [...panel.querySelectorAll("[data-problem]")].some((e) => !e.hidden)) {
      return;
    }
    const typing = [...panel.querySelectorAll("input, textarea")].some(
      (el) => el.value.trim() || el === document.activeElement
    );
    if (typing) return;
    let response;
    try {
      response = await fetch(panel.dataset.panelUrl, { headers: { Accept: "text/html" }, credentials: "same-origin" });
    } catch (e) {
      return;
    }
    if (!response.ok || response.redirected) return;
    const fresh = new DOMParser().parseFromString(await response.text(), "text/html").querySelector("[data-ops-panel]");
    if (!fresh || fresh.dataset.opsPanel !== panel.dataset.opsPanel) return;
    if (fresh.outerHTML === panel.dataset.lastHtml) return;
    const open = new Set([...panel.querySelectorAll("details[id][open]")].map((d) => d.id));
    const node = document.importNode(fresh, true);
    node.dataset.lastHtml = fresh.outerHTML;
    node.querySelectorAll("details[id]").forEach((d) => {
      if (open.has(d.id)) d.open = true;
    });
    panel.replaceWith(node);
    document.body.dataset.polled = String(Date.now()); // lets tests see that a panel was refreshed
  }

  function pollPanels() {
    const panels = [...document.querySelectorAll("[data-panel-url]")];
    const seconds = panels.length ? Number(panels[0].dataset.pollSeconds) || 5 : 5;
    Promise.all(panels.map(pollPanel)).finally(() => window.setTimeout(pollPanels, seconds * 1000));
  }

  snapshot();
  connect();
  if (document.querySelector("[data-panel-url]")) window.setTimeout(pollPanels, 1000);
})();
