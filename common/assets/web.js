// The one script of the pages the binaries serve (loaded from the binary itself: the
// Content-Security-Policy allows no other). Its jobs, each keyed on data- attributes:
// - a table body with data-stream="URL" follows that server-sent event stream and puts each
//   ready-rendered row on top (the browser's EventSource resends Last-Event-ID on reconnect,
//   so the server replays what was missed);
// - j / k move through rows with data-href, Enter opens the selected row, Esc follows the
//   link marked data-back;
// - a button with data-copy="ID" copies the text of the element with that id.
// - an element with data-refresh="MS" reloads the page after that many milliseconds (a page
//   that shows work in progress, such as pending deliveries), unless the person started doing
//   something there (a press, a key, an opened <details>): a reload must not swallow a click;
// - an element with data-overview-stream="URL" takes each `overview` event of that stream as
//   its new content (the inspector's overview, counted and drawn by the server).
"use strict";

function rows() {
  return Array.from(document.querySelectorAll("tr[data-href]"));
}

function select(row) {
  for (const other of rows()) other.removeAttribute("aria-selected");
  if (!row) return;
  row.setAttribute("aria-selected", "true");
  row.scrollIntoView({ block: "nearest" });
}

const LIVE_ROWS_KEPT = 1000;

function followStream(body) {
  const status = document.querySelector("[data-stream-status]");
  const say = (text) => { if (status) status.textContent = text; };
  const source = new EventSource(body.getAttribute("data-stream"));
  source.addEventListener("open", () => say("Live: new requests appear at the top."));
  source.addEventListener("error", () => say("Reconnecting…"));
  source.addEventListener("row", (event) => {
    const holder = document.createElement("tbody");
    holder.innerHTML = event.data;
    const empty = body.querySelector("tr[data-empty]");
    if (empty) empty.remove();
    for (const row of Array.from(holder.children).reverse()) body.prepend(row);
    // An open tab keeps a bounded list; older rows stay a reload or "Older requests" away.
    while (body.children.length > LIVE_ROWS_KEPT) body.lastElementChild.remove();
  });
  source.addEventListener("skipped", (event) => say(event.data));
}

function followOverview(element) {
  const source = new EventSource(element.getAttribute("data-overview-stream"));
  source.addEventListener("overview", (event) => { element.innerHTML = event.data; });
}

document.addEventListener("DOMContentLoaded", () => {
  for (const body of document.querySelectorAll("[data-stream]")) followStream(body);
  for (const element of document.querySelectorAll("[data-overview-stream]")) followOverview(element);

  const refresh = document.querySelector("[data-refresh]");
  if (refresh) {
    const delay = Number(refresh.getAttribute("data-refresh")) || 2000;
    const timer = setTimeout(() => window.location.reload(), delay);
    const stop = () => clearTimeout(timer);
    for (const kind of ["pointerdown", "keydown", "submit"]) {
      document.addEventListener(kind, stop, { capture: true, once: true });
    }
    for (const details of document.querySelectorAll("details")) {
      details.addEventListener("toggle", stop, { once: true });
    }
  }

  for (const button of document.querySelectorAll("button[data-copy]")) {
    button.addEventListener("click", async () => {
      const source = document.getElementById(button.getAttribute("data-copy"));
      if (!source) return;
      const label = button.textContent;
      try {
        await navigator.clipboard.writeText(source.textContent);
        button.textContent = "Copied";
      } catch (_) {
        const range = document.createRange();
        range.selectNodeContents(source);
        const selection = window.getSelection();
        selection.removeAllRanges();
        selection.addRange(range);
        button.textContent = "Selected: press Ctrl+C";
      }
      setTimeout(() => { button.textContent = label; }, 2000);
    });
  }

  document.addEventListener("click", (event) => {
    const row = event.target.closest("tr[data-href]");
    if (row && !event.target.closest("a, button, input, select, textarea")) {
      window.location.href = row.getAttribute("data-href");
    }
  });

  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.target.closest("input, select, textarea, [contenteditable]")) return;
    const all = rows();
    const current = all.findIndex((row) => row.getAttribute("aria-selected") === "true");
    if (event.key === "j" || event.key === "k") {
      const next = event.key === "j" ? Math.min(current + 1, all.length - 1) : Math.max(current - 1, 0);
      select(all[next]);
      event.preventDefault();
    } else if (event.key === "Enter" && current >= 0 && !event.target.closest("a, button")) {
      window.location.href = all[current].getAttribute("data-href");
      event.preventDefault();
    } else if (event.key === "Escape") {
      const back = document.querySelector("a[data-back]");
      if (back) window.location.href = back.getAttribute("href");
    }
  });
});
