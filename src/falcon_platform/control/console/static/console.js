// Falcon console: live updates by short polling, and a confirmation before an action.
// Polling, not server-sent events: no long-lived connection on the supervisor's loop, and
// the update is the same server-rendered page a first load gets (one code path).
(() => {
  "use strict";
  const body = document.body;
  const interval = Number(body.dataset.refreshMs) || 2000;
  const status = document.getElementById("live-status");
  let failures = 0;

  function busy() {
    // Do not replace a section while the operator is typing or choosing in it.
    const active = document.activeElement;
    return active && active.closest("[data-live]") && active.matches("input, select, textarea");
  }

  async function refresh() {
    if (!document.hidden && !busy()) {
      try {
        const response = await fetch(location.href, {
          credentials: "same-origin",
          cache: "no-store",
          // the server may leave out what is not live (an incident's postmortem)
          headers: { Accept: "text/html", "X-Console-Refresh": "1" },
        });
        if (!response.ok) throw new Error("HTTP " + response.status);
        const doc = new DOMParser().parseFromString(await response.text(), "text/html");
        for (const fresh of doc.querySelectorAll("[data-live]")) {
          const current = document.getElementById(fresh.id);
          if (current) current.replaceWith(document.importNode(fresh, true));
        }
        failures = 0;
        body.dataset.updatedAt = String(Date.now());
        if (status) status.textContent = "Live: updated " + new Date().toLocaleTimeString();
      } catch (err) {
        failures += 1;
        if (status) {
          status.textContent = "Live updates paused: the control API did not answer (" +
            err.message + "); retrying";
        }
      }
    }
    setTimeout(refresh, Math.min(interval * (1 + failures), 30000));
  }

  document.addEventListener("submit", (event) => {
    const message = event.target.dataset.confirm;
    if (message && !window.confirm(message)) event.preventDefault();
  });

  if (status) status.textContent = "Live: updates every " + interval / 1000 + " s";
  setTimeout(refresh, interval);
})();
