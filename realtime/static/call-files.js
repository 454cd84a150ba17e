// Files in the consultation's chat (realtime/call_files.py): attach an image or PDF, see each
// shared file as a chip with a download link, and, on the specialist's page, file it into the
// patient's record with one click. The bytes go over HTTP with the page's own token; the room
// only announces them (`file`, `file_filed` messages, passed on by consult.html as
// `spean:message` events).
"use strict";
(() => {
  const params = new URLSearchParams(location.hash.slice(1));
  const token = params.get("token"), appointment = params.get("appointment");
  if (!token || !appointment) return;
  const base = `/v1/appointments/${encodeURIComponent(appointment)}/files`;
  const auth = { Authorization: `Bearer ${token}` };
  const TYPES = "image/jpeg,image/png,image/webp,application/pdf";
  const chips = new Map();  // file id -> its chip
  let side = null, listed = false;

  const el = (tag, props = {}, ...children) => {
    const node = Object.assign(document.createElement(tag), props);
    node.append(...children);
    return node;
  };
  const key = () => (crypto.randomUUID ? crypto.randomUUID() : `${Date.now()}-${Math.random()}`);
  const sizeText = (n) => (n < 1024 ? `${n} B` : n < 1048576 ? `${(n / 1024).toFixed(0)} KB` : `${(n / 1048576).toFixed(1)} MB`);
  const problem = async (res) => {
    try { const p = await res.json(); return p.detail || p.code || res.statusText; } catch { return res.statusText; }
  };

  document.head.append(el("style", { textContent: `
    .file-chip { border: 1px solid #556; border-radius: 6px; padding: .3em .5em; margin: .3em 0; }
    .file-chip .file-name { font-weight: bold; }
    .file-chip a { color: #8cf; }
    #call-files { margin-top: .4em; }` }));

  // The attach control, under the chat's form.
  const input = el("input", { type: "file", accept: TYPES, id: "call-file-input", hidden: true });
  const button = el("button", { type: "button", id: "call-file-attach", textContent: "Attach a file" });
  const note = el("span", { id: "call-file-status", role: "status" });
  const bar = el("div", { id: "call-files" }, button, input, note);
  (document.getElementById("chatform") || document.body).after(bar);
  button.onclick = () => input.click();
  input.onchange = async () => {
    const file = input.files[0];
    input.value = "";
    if (!file) return;
    if (!TYPES.split(",").includes(file.type)) { note.textContent = "Only images (JPEG, PNG, WebP) and PDF files can be shared."; return; }
    note.textContent = `Sending ${file.name}…`;
    const res = await fetch(`${base}/?name=${encodeURIComponent(file.name)}`, {
      method: "POST",
      headers: { ...auth, "Content-Type": file.type, "Idempotency-Key": key() },
      body: file,
    });
    note.textContent = res.ok ? "" : `Not sent: ${await problem(res)}`;
    if (res.ok) show(await res.json());  // the room's `file` message finds the chip there already
  };

  async function download(file, link) {
    const res = await fetch(`${base}/${file.id}/content`, { headers: auth });
    if (!res.ok) { link.textContent = `Download failed: ${await problem(res)}`; return; }
    const url = URL.createObjectURL(await res.blob());
    const save = el("a", { href: url, download: file.name });
    document.body.append(save);
    save.click();
    save.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60000);
  }

  async function fileIt(file, action) {
    action.disabled = true;
    action.textContent = "Filing…";
    const res = await fetch(`${base}/${file.id}/file-into-record`, {
      method: "POST", headers: { ...auth, "Idempotency-Key": `file-into-record:${file.id}` },
    });
    if (res.ok) filed(file.id);
    else { action.disabled = false; action.textContent = `File into record (failed: ${await problem(res)})`; }
  }

  function filed(id) {
    const action = chips.get(id)?.querySelector(".file-into-record");
    if (action) { action.disabled = true; action.textContent = "Filed in the record"; }
  }

  function show(file) {
    if (chips.has(file.id)) return;
    const link = el("a", { href: "#", className: "file-download", textContent: "Download" });
    link.onclick = (e) => { e.preventDefault(); download(file, link); };
    const by = file.by || file.uploader_name || "";
    const chip = el("div", { className: "file-chip", id: `file-${file.id}` },
      el("span", { className: "file-name", textContent: file.name }),
      ` (${file.content_type === "application/pdf" ? "PDF" : "image"}, ${sizeText(file.size)}${by ? `, from ${by}` : ""}) `,
      link);
    if (side === "specialist") {
      const action = el("button", { type: "button", className: "file-into-record", textContent: "File into record" });
      action.onclick = () => fileIt(file, action);
      chip.append(" ", action);
    }
    chips.set(file.id, chip);
    (document.getElementById("chat") || document.body).append(chip);
    if (file.filed_entry_id) filed(file.id);
  }

  window.addEventListener("spean:message", async ({ detail: msg }) => {
    if (msg.type === "ready") {
      side = msg.side;
      if (listed) return;
      listed = true;  // what was shared before this page joined
      const res = await fetch(`${base}/`, { headers: auth });
      if (res.ok) for (const file of (await res.json()).items) show(file);
    } else if (msg.type === "file") show(msg.file);
    else if (msg.type === "file_filed") filed(msg.file);
  });
})();
