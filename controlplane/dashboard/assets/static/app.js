// Skiff dashboard: keeps the server-rendered page live. The server sends
// fragments (an element's id, its container, its HTML) over server-sent
// events; this swaps them in. Actions are POSTs with the CSRF token.
"use strict";
(function () {
  const body = document.body;
  const csrf = document.querySelector('meta[name="csrf"]').content;
  const live = document.getElementById("live");
  const flash = document.getElementById("flash");
  const pending = new Map(); // fragments held while the user edits inside them

  function parse(html) {
    const t = document.createElement("template");
    t.innerHTML = html.trim();
    return t.content.firstElementChild;
  }

  function place(f) {
    const el = document.getElementById(f.id);
    if (f.del) { if (el) el.remove(); pending.delete(f.id); return; }
    const a = document.activeElement;
    if (el && a && a.tagName === "INPUT" && el.contains(a)) {
      pending.set(f.id, f); // do not pull an input away from under the cursor
      return;
    }
    const n = parse(f.html);
    if (!n) return;
    if (el) { el.replaceWith(n); return; }
    const parent = document.getElementById(f.parent);
    if (!parent) return;
    let before = null;
    for (const c of parent.children) { if (c.id > f.id) { before = c; break; } }
    parent.insertBefore(n, before);
  }

  function apply(msg) {
    if (msg.reset) {
      const keep = new Set(msg.frags.map(f => f.id));
      document.querySelectorAll("[data-frag]").forEach(el => { if (!keep.has(el.id)) el.remove(); });
    }
    msg.frags.forEach(place);
    ages();
    body.dataset.updates = String(Number(body.dataset.updates || 0) + 1);
  }

  document.addEventListener("focusout", () => {
    setTimeout(() => {
      for (const [id, f] of pending) {
        const el = document.getElementById(id);
        const a = document.activeElement;
        if (!el || !a || a.tagName !== "INPUT" || !el.contains(a)) { pending.delete(id); place(f); }
      }
    }, 0);
  });

  function connect() {
    const es = new EventSource("/live?" + body.dataset.params);
    es.onopen = () => { live.textContent = "live"; live.className = "live on"; };
    es.onmessage = ev => { apply(JSON.parse(ev.data)); body.dataset.live = "1"; };
    es.addEventListener("failure", ev => show(ev.data, false));
    es.onerror = () => { live.textContent = "reconnecting…"; live.className = "live off"; };
  }

  function show(text, ok) {
    flash.textContent = text;
    flash.className = ok ? "ok" : "err";
  }

  document.addEventListener("submit", async ev => {
    const form = ev.target.closest("form.act");
    if (!form) return;
    ev.preventDefault();
    if (document.activeElement) document.activeElement.blur(); // the row may update now
    const action = form.dataset.action;
    try {
      const resp = await fetch("/action/" + action, {
        method: "POST", credentials: "same-origin",
        headers: { "X-Skiff-CSRF": csrf, "Content-Type": "application/x-www-form-urlencoded" },
        body: new URLSearchParams(new FormData(form)),
      });
      const text = (await resp.text()).trim();
      show(text, resp.ok);
    } catch (e) {
      show(action + ": " + e, false);
    }
  });

  let logStream = null;
  document.addEventListener("click", ev => {
    const b = ev.target.closest("button.logs");
    if (!b) return;
    const pre = document.getElementById("logs");
    if (logStream) logStream.close();
    pre.textContent = "";
    const p = new URLSearchParams(body.dataset.params);
    logStream = new EventSource("/logs/" + encodeURIComponent(p.get("ns")) + "/" + encodeURIComponent(p.get("name")) +
      "?container=" + encodeURIComponent(b.dataset.container));
    logStream.onmessage = e => { pre.textContent += e.data + "\n"; };
    logStream.addEventListener("failure", e => { pre.textContent += e.data + "\n"; pre.classList.add("err"); logStream.close(); });
    logStream.addEventListener("end", () => logStream.close());
  });

  function ages() {
    const now = Date.now();
    document.querySelectorAll("time.age").forEach(t => {
      const ms = now - Date.parse(t.dateTime);
      if (isNaN(ms)) { t.textContent = ""; return; }
      const s = Math.max(0, Math.floor(ms / 1000));
      t.textContent = s < 120 ? s + "s" : s < 7200 ? Math.floor(s / 60) + "m" : s < 172800 ? Math.floor(s / 3600) + "h" : Math.floor(s / 86400) + "d";
    });
  }
  setInterval(ages, 10000);
  ages();
  connect();
})();
