// /admin, kept current: every few seconds the page is read again and each live region
// ([data-live]) takes the new numbers. A row someone is working in (a form open, focused or
// changed) keeps its forms: only its [data-cell] numbers change. Rows are keyed by
// [data-key]; a new row goes in where the page has it, without moving the others.
"use strict";
(() => {
  const page = document.querySelector(".rw-admin");
  const status = document.querySelector(".rw-status");
  const every = Number(page.dataset.liveMs) || 3000;

  function busy(node) {
    const active = document.activeElement;
    if (active && active !== document.body && node.contains(active)) return true;
    if (node.querySelector("details[open]")) return true;
    return [...node.querySelectorAll("input")].some((input) => input.value !== input.defaultValue);
  }

  function cells(current, fresh) {
    const mine = current.querySelectorAll("[data-cell]");
    const theirs = fresh.querySelectorAll("[data-cell]");
    if (mine.length !== theirs.length) return;
    mine.forEach((cell, n) => {
      if (cell.textContent !== theirs[n].textContent) cell.textContent = theirs[n].textContent;
    });
  }

  function keyed(region, fresh) {
    const existing = new Map();
    for (const child of region.children) existing.set(child.dataset.key, child);
    const wanted = new Set();
    let after = null; // the row the next (earlier) fresh row goes before
    for (const row of [...fresh.children].reverse()) {
      const key = row.dataset.key;
      wanted.add(key);
      let current = existing.get(key);
      if (current && busy(current)) {
        cells(current, row);
      } else if (current) {
        const adopted = document.importNode(row, true);
        current.replaceWith(adopted);
        current = adopted;
      } else {
        current = document.importNode(row, true);
        region.insertBefore(current, after);
      }
      after = current;
    }
    for (const [key, child] of existing) {
      if (!wanted.has(key) && !busy(child)) child.remove();
    }
  }

  function plain(region, fresh) {
    if (!busy(region) && region.innerHTML !== fresh.innerHTML) {
      region.replaceChildren(...[...fresh.childNodes].map((n) => document.importNode(n, true)));
    }
  }

  function say(state, text) {
    status.dataset.state = state;
    status.textContent = text;
  }

  async function refresh() {
    try {
      const reply = await fetch(location.pathname, { credentials: "same-origin", cache: "no-store" });
      if (reply.status === 401 || reply.status === 403 || reply.redirected) {
        say("signed-out", "signed out: reload the page to sign in again");
        return;
      }
      if (!reply.ok) throw new Error(`HTTP ${reply.status}`);
      const fresh = new DOMParser().parseFromString(await reply.text(), "text/html");
      for (const region of document.querySelectorAll("[data-live]")) {
        const name = region.dataset.live;
        const next = fresh.querySelector(`[data-live="${CSS.escape(name)}"]`);
        if (!next) continue;
        if (next.querySelector(":scope > [data-key]")) keyed(region, next);
        else plain(region, next);
      }
      say("live", `live · ${new Date().toLocaleTimeString()}`);
    } catch (error) {
      say("offline", "cannot reach the gateway: retrying");
    }
    setTimeout(refresh, every);
  }

  setTimeout(refresh, every);
})();
