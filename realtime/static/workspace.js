// The specialist's workspace: /rtc/workspace/<language>#token=<access token>[&appointment=<id>]
// Everything goes through the authenticated API with the token from the fragment (never sent to
// the server as part of the page's URL); the call is the consultation page in a frame.
"use strict";
(() => {
  const T = JSON.parse(document.body.dataset.texts);
  const t = (key, vars = {}) => (T[key] || key).replace(/\{(\w+)\}/g, (_, k) => String(vars[k] ?? ""));
  const $ = (id) => document.getElementById(id);
  const params = new URLSearchParams(location.hash.slice(1));
  const token = params.get("token");
  let current = params.get("appointment");
  let queue = [], appointment = null;
  const lang = document.documentElement.lang;

  document.querySelectorAll("[data-t]").forEach((el) => { el.textContent = t(el.dataset.t); });
  const status = (text) => { $("ws-status").textContent = text; };

  class ApiError extends Error {
    constructor(statusCode, body) { super(body.detail || body.code || String(statusCode)); this.status = statusCode; this.body = body; }
  }
  async function api(path, options = {}) {
    const answer = await fetch(path, {
      ...options,
      headers: {
        Authorization: `Bearer ${token}`, ...(options.body ? { "Content-Type": "application/json" } : {}), ...(options.headers || {}),
      },
    });
    const body = await answer.json().catch(() => ({}));
    if (!answer.ok) throw new ApiError(answer.status, body);
    return body;
  }
  // A refusal in words: the code the server gives when there is a text for it, else its status.
  function explain(error) {
    if (!(error instanceof ApiError)) return t("ws_err_network");
    const code = error.body.code;
    if (code && T[`ws_err_${code}`]) return t(`ws_err_${code}`);
    if (error.status === 400 || error.status === 422) {
      const field = (error.body.errors || [])[0];
      return t("ws_err_invalid", { detail: field ? `${field.field}: ${field.message}` : error.message });
    }
    const byStatus = { 401: "ws_err_401", 403: "ws_err_403", 404: "ws_err_404", 409: "ws_err_409", 429: "ws_err_429", 503: "ws_err_503" };
    return t(byStatus[error.status] || "ws_err_server");
  }
  const randomKey = () => Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0")).join("");
  const minutes = (seconds) => Math.max(0, Math.round(seconds / 60));
  const hhmm = (local) => local.slice(11, 16);
  const zoned = (instant, timeZone) => new Intl.DateTimeFormat(lang, { timeZone, dateStyle: "medium", timeStyle: "short" }).format(new Date(instant));
  const item = (text, extra) => { const li = document.createElement("li"); li.textContent = text; if (extra) li.dataset.id = extra; return li; };

  // ---- the day's queue ----
  function standingText(entry) {
    switch (entry.standing) {
      case "waiting": return t("ws_waiting", { min: minutes(entry.waiting_s) });
      case "late": return t("ws_late", { min: minutes(entry.late_s) });
      case "next": return t("ws_next");
      case "in_progress": return t("ws_in_progress");
      case "done": return t(`ws_status_${entry.appointment.status}`);
      default: return t("ws_later");
    }
  }
  function drawQueue() {
    const list = $("ws-queue-list");
    list.replaceChildren();
    for (const entry of queue) {
      const a = entry.appointment;
      const button = document.createElement("button");
      button.type = "button";
      button.id = `queue-${a.id}`;
      button.dataset.standing = entry.standing;
      if (a.id === current) button.setAttribute("aria-current", "true");
      const time = document.createElement("span"); time.className = "time"; time.textContent = hhmm(a.start_local);
      const who = document.createElement("span"); who.className = "who"; who.textContent = entry.patient_name || "—";
      const standing = document.createElement("span"); standing.className = `standing ${entry.standing}`;
      standing.textContent = standingText(entry);
      button.append(time, who, standing);
      button.onclick = () => select(a.id);
      const li = document.createElement("li"); li.appendChild(button); list.appendChild(li);
    }
    $("ws-queue-empty").hidden = queue.length > 0;
    const waiting = queue.filter((e) => e.standing === "waiting").length;
    if (!current) status(waiting ? t("ws_n_waiting", { n: waiting }) : t("ws_nobody_waiting"));
  }
  async function refreshQueue() {
    try {
      const day = await api("/v1/me/consultation-queue");
      queue = day.items;
      $("ws-day").textContent = new Intl.DateTimeFormat(lang, { dateStyle: "full", timeZone: queue[0]?.appointment.timezone }).format(new Date(day.now));
      drawQueue();
    } catch (error) {
      $("ws-queue-empty").hidden = false;
      $("ws-queue-empty").textContent = explain(error);
    }
  }

  // ---- the patient's summary ----
  function showProblem(text) {
    $("ws-problem").textContent = text;
    $("ws-problem").hidden = !text;
  }
  function clearPatient() {
    $("ws-summary").hidden = true;
    $("ws-results").hidden = true;
    clearReport();
    for (const id of ["ws-problems", "ws-medications", "ws-vitals", "ws-referral-obs"]) $(id).replaceChildren();
    $("ws-call").querySelector("iframe")?.remove();
    $("ws-call-empty").hidden = false;
  }
  const valueOf = (body) => body.components
    ? body.components.map((c) => c.value).join("/") + ` ${body.components[0].unit}`
    : `${body.value ?? ""} ${body.unit ?? ""}`.trim();
  function observationText(entry, timeZone) {
    return `${entry.body.display || entry.code}: ${valueOf(entry.body)} (${zoned(entry.effective_at, timeZone)})`;
  }
  function fill(list, entries, text, empty) {
    $(list).replaceChildren(...(entries.length ? entries.map((e) => item(text(e), e.id)) : [item(t(empty))]));
  }
  async function loadPatient(a) {
    const pid = a.patient_id;
    const [patient, conditions, prescriptions, observations] = await Promise.all([
      api(`/v1/patients/${pid}`),
      api(`/v1/patients/${pid}/record?kind=condition&limit=50`),
      api(`/v1/patients/${pid}/record?kind=prescription&limit=50`),
      api(`/v1/patients/${pid}/record?kind=observation&limit=100`),
    ]);
    const name = (patient.names || [])[0]?.text || "—";
    const age = patient.birth_year ? t("ws_born", { year: patient.birth_year }) : "";
    $("ws-patient").textContent = [name, age].filter(Boolean).join(" · ");
    $("ws-appointment").textContent = t("ws_appointment", {
      time: zoned(a.start, a.timezone), status: t(`ws_status_${a.status}`), reason: a.reason || "—",
    });
    $("ws-checkin").hidden = a.status !== "booked";
    const problems = conditions.items.filter((c) => !["inactive", "resolved"].includes(c.body.clinical_status));
    fill("ws-problems", problems, (c) => `${c.body.display || c.code} (${c.code})`, "ws_none");
    fill("ws-medications", prescriptions.items,
      (p) => `${p.body.drug} ${p.body.dose}, ${p.body.frequency}, ${p.body.duration_days} ${t("ws_days")}`, "ws_none");
    // The latest value of each measurement.
    const latest = new Map();
    for (const o of observations.items) {
      const known = latest.get(o.code);
      if (!known || known.effective_at < o.effective_at) latest.set(o.code, o);
    }
    fill("ws-vitals", [...latest.values()].slice(0, 10), (o) => observationText(o, a.timezone), "ws_none");
    // The referral's question and the observations sent with it.
    const referral = queue.find((e) => e.appointment.id === a.id)?.referral;
    $("ws-referral").hidden = !referral;
    if (referral) {
      $("ws-referral-reason").textContent = t("ws_referral_reason", { urgency: t(`ws_urgency_${referral.urgency}`), reason: referral.reason });
      const sent = await Promise.all(referral.observation_ids.map(
        (id) => observations.items.find((o) => o.id === id) || api(`/v1/record/${id}`)));
      fill("ws-referral-obs", sent, (o) => observationText(o, a.timezone), "ws_none");
    }
    $("ws-summary").hidden = false;
  }

  // ---- the call ----
  function openCall(a) {
    $("ws-call").querySelector("iframe")?.remove();
    if (["completed", "cancelled", "no_show"].includes(a.status)) { $("ws-call-empty").hidden = false; return; }
    // A new frame each time: a fragment change alone would not load the other consultation.
    const frame = document.createElement("iframe");
    frame.id = "ws-frame";
    frame.title = t("ws_call");
    frame.allow = "camera; microphone; autoplay; fullscreen";
    frame.src = `/rtc/consult#token=${encodeURIComponent(token)}&appointment=${encodeURIComponent(a.id)}`;
    $("ws-call-empty").hidden = true;
    $("ws-call").appendChild(frame);
  }

  // ---- selecting a consultation ----
  async function select(id) {
    current = id;
    history.replaceState(null, "", `#token=${encodeURIComponent(token)}&appointment=${encodeURIComponent(id)}`);
    drawQueue();
    clearPatient();
    showProblem("");
    resetForm();
    try {
      appointment = await api(`/v1/appointments/${id}`);
      status(t("ws_with", { time: hhmm(appointment.start_local) }));
      openCall(appointment);
      await loadPatient(appointment);
      $("ws-results").hidden = false;
      lockForm(["completed", "cancelled", "no_show"].includes(appointment.status));
      if (appointment.status === "completed") await offerReport(appointment);
    } catch (error) {
      clearPatient();
      appointment = null;
      showProblem(explain(error));
      status("");
    }
  }

  // ---- the consultation's report (PDF, in the patient's language, sent to them by SMS) ----
  let reportKey = null, pdfUrl = null;  // a retry after a lost answer reuses the key
  let shown = 0;  // which selection the report part belongs to: a late answer for an earlier one is dropped
  function clearReport() {
    $("ws-report").hidden = true;
    $("ws-make-report").hidden = false; $("ws-make-report").disabled = false;
    $("ws-report-result").textContent = ""; $("ws-report-result").className = "";
    $("ws-report-pdf").hidden = true; $("ws-report-pdf").removeAttribute("href");
    if (pdfUrl) URL.revokeObjectURL(pdfUrl);
    pdfUrl = null; reportKey = null; shown += 1;
  }
  // The PDF is the record attachment's content, read with the page's token (not a cookie, so a
  // plain link could not carry it): fetched once, opened from an object URL.
  async function pdfLink(entryId) {
    const answer = await fetch(`/v1/record/${entryId}/content`, { headers: { Authorization: `Bearer ${token}` } });
    if (!answer.ok) throw new ApiError(answer.status, await answer.json().catch(() => ({})));
    return URL.createObjectURL(await answer.blob());
  }
  async function makeReport(a) {
    const result = $("ws-report-result"), mine = shown;
    reportKey = reportKey || randomKey();
    $("ws-make-report").disabled = true;
    result.textContent = t("ws_report_making"); result.className = "";
    try {
      // Idempotent: for a report already made, the server answers it again and sends nothing.
      const made = await api(`/v1/consultations/${a.id}/report`, { method: "POST", headers: { "Idempotency-Key": reportKey } });
      if (mine !== shown) return;  // another consultation was picked meanwhile
      reportKey = null;
      const language = t(`ws_lang_${made.language}`);
      result.textContent = t(made.sent_to_patient ? "ws_report_sent" : "ws_report_not_sent", { language });
      result.className = "ok";
      result.dataset.entry = made.entry_id;
      $("ws-make-report").hidden = true;
      const url = await pdfLink(made.entry_id);
      if (mine !== shown) { URL.revokeObjectURL(url); return; }
      pdfUrl = url;
      $("ws-report-pdf").href = url;
      $("ws-report-pdf").hidden = false;
    } catch (error) {
      if (mine !== shown) return;
      result.textContent = explain(error); result.className = "error";
      $("ws-make-report").hidden = false; $("ws-make-report").disabled = false;
    }
  }
  // A completed consultation offers its report; one whose report is in the record shows it.
  async function offerReport(a) {
    $("ws-report").hidden = false;
    try {
      const attachments = await api(`/v1/patients/${a.patient_id}/record?kind=attachment&limit=100`);
      if (attachments.items.some((e) => e.body.report_for === a.id)) await makeReport(a);
    } catch (error) {
      $("ws-report-result").textContent = explain(error); $("ws-report-result").className = "error";
    }
  }
  $("ws-make-report").onclick = () => { if (appointment) makeReport(appointment); };

  // ---- the results form ----
  const ROUTES = ["oral", "intravenous", "intramuscular", "subcutaneous", "topical", "inhaled", "rectal", "sublingual"];
  function field(kind, name, labelKey, attrs = {}) {
    const input = document.createElement(kind);
    input.name = name;
    input.setAttribute("aria-label", t(labelKey));
    if (kind !== "select") input.placeholder = t(labelKey);
    Object.assign(input, attrs);
    return input;
  }
  function addDiagnosis() {
    const row = document.createElement("div");
    row.className = "row diagnosis";
    row.append(field("input", "code", "ws_icd10", { maxLength: 20 }), field("input", "display", "ws_diagnosis_name", { maxLength: 200 }));
    $("ws-diagnoses").appendChild(row);
  }
  function addPrescription() {
    const row = document.createElement("div");
    row.className = "row prescription";
    const route = field("select", "route", "ws_route");
    for (const r of ROUTES) { const o = document.createElement("option"); o.value = r; o.textContent = t(`ws_route_${r}`); route.appendChild(o); }
    row.append(
      field("input", "drug", "ws_drug", { maxLength: 200 }), field("input", "dose", "ws_dose", { maxLength: 200 }), route,
      field("input", "frequency", "ws_frequency", { maxLength: 200 }),
      field("input", "duration_days", "ws_duration", { type: "number", min: 1, max: 3650 }),
    );
    $("ws-prescriptions").appendChild(row);
  }
  function resetForm() {
    $("ws-results").reset();
    $("ws-diagnoses").querySelectorAll(".row").forEach((r) => r.remove());
    $("ws-prescriptions").querySelectorAll(".row").forEach((r) => r.remove());
    addDiagnosis(); addPrescription();
    $("ws-result").textContent = ""; $("ws-result").className = "";
  }
  function lockForm(done) {
    $("ws-results").querySelectorAll("input, select, textarea, button").forEach((el) => { el.disabled = done; });
    if (done) { $("ws-result").textContent = t("ws_already_done"); $("ws-result").className = "ok"; }
  }
  const valuesOf = (row) => Object.fromEntries([...row.querySelectorAll("input, select")].map((i) => [i.name, i.value.trim()]));
  // The results as the API takes them; a half-filled row is an error here, an empty one is skipped.
  function results() {
    const entries = [];
    const findings = $("ws-findings").value.trim(), plan = $("ws-plan").value.trim();
    if (findings) entries.push({ kind: "note", category: "progress", text: findings });
    for (const row of $("ws-diagnoses").querySelectorAll(".row")) {
      const v = valuesOf(row);
      if (!v.code && !v.display) continue;
      if (!v.code) throw new Error(t("ws_err_diagnosis_code"));
      entries.push({ kind: "condition", code: v.code.toUpperCase(), ...(v.display ? { display: v.display } : {}) });
    }
    for (const row of $("ws-prescriptions").querySelectorAll(".row")) {
      const v = valuesOf(row);
      if (!v.drug && !v.dose && !v.frequency && !v.duration_days) continue;
      if (!v.drug || !v.dose || !v.frequency || !v.duration_days) throw new Error(t("ws_err_prescription_incomplete"));
      entries.push({ kind: "prescription", drug: v.drug, dose: v.dose, route: v.route, frequency: v.frequency, duration_days: Number(v.duration_days) });
    }
    if (plan) entries.push({ kind: "note", category: "plan", text: plan });
    return { entries };
  }
  let idempotencyKey = null;  // one per attempt: a retry after a lost answer replays, not writes twice
  $("ws-results").oninput = () => { idempotencyKey = null; };
  $("ws-results").onsubmit = async (event) => {
    event.preventDefault();
    if (!appointment) return;
    const result = $("ws-result");
    let body;
    try { body = results(); } catch (error) { result.textContent = error.message; result.className = "error"; return; }
    idempotencyKey = idempotencyKey || randomKey();
    $("ws-complete").disabled = true;
    result.textContent = t("ws_saving"); result.className = "";
    try {
      const done = await api(`/v1/appointments/${appointment.id}/complete`, {
        method: "POST", headers: { "Idempotency-Key": idempotencyKey }, body: JSON.stringify(body),
      });
      appointment = done.appointment;
      idempotencyKey = null;
      lockForm(true);
      result.textContent = t("ws_completed", { n: done.entries.length });
      result.className = "ok";
      await refreshQueue();
      await loadPatient(appointment);
      await offerReport(appointment);
    } catch (error) {
      result.textContent = explain(error); result.className = "error";
      $("ws-complete").disabled = false;
    }
  };
  $("ws-add-diagnosis").onclick = addDiagnosis;
  $("ws-add-prescription").onclick = addPrescription;
  $("ws-checkin").onclick = async () => {
    try {
      appointment = await api(`/v1/appointments/${appointment.id}/check-in`, { method: "POST", headers: { "Idempotency-Key": randomKey() } });
      $("ws-checkin").hidden = true;
      await refreshQueue();
      await loadPatient(appointment);
    } catch (error) { showProblem(explain(error)); }
  };

  async function start() {
    if (!token) { showProblem(t("ws_no_token")); return; }
    await refreshQueue();
    if (current) await select(current);
    else if (queue.length) {
      const first = queue.find((e) => e.standing === "waiting") || queue.find((e) => e.standing !== "done");
      if (first) await select(first.appointment.id);
    }
    // The queue moves on its own (check-ins, lateness): redraw it every 30 seconds.
    setInterval(refreshQueue, 30_000);
  }
  start();
})();
