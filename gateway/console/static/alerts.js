// Live alerts: listens to /alerts/stream, adds each alert to the table, and beeps.
"use strict";
(function () {
  const table = document.querySelector("#alerts tbody");
  const state = document.getElementById("live-state");
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  let audio = null;
  document.body.dataset.beeps = "0";

  function beep() {
    // A short two-tone beep made here, so no audio file is needed.
    try {
      audio = audio || new AudioContext();
      if (audio.state === "suspended") audio.resume();
      const now = audio.currentTime;
      [880, 660].forEach((pitch, step) => {
        const tone = audio.createOscillator();
        const level = audio.createGain();
        tone.frequency.value = pitch;
        level.gain.setValueAtTime(0.25, now + step * 0.18);
        level.gain.exponentialRampToValueAtTime(0.001, now + step * 0.18 + 0.16);
        tone.connect(level).connect(audio.destination);
        tone.start(now + step * 0.18);
        tone.stop(now + step * 0.18 + 0.17);
      });
      document.body.dataset.beeps = String(Number(document.body.dataset.beeps) + 1);
    } catch (error) {
      console.warn("no sound:", error);
    }
  }

  function cell(text) {
    const td = document.createElement("td");
    td.textContent = text;
    return td;
  }

  function actionForm(alert, action, label) {
    const form = document.createElement("form");
    form.method = "post";
    form.action = `/alerts/${encodeURIComponent(alert.badge)}/${encodeURIComponent(alert.incident)}/${action}`;
    const token = document.createElement("input");
    token.type = "hidden";
    token.name = "csrf";
    token.value = csrf;
    const button = document.createElement("button");
    button.type = "submit";
    button.textContent = label;
    form.append(token, button);
    return form;
  }

  function show(alert) {
    if (table.querySelector(`tr[data-incident="${CSS.escape(alert.incident)}"]`)) return;
    const row = document.createElement("tr");
    row.className = "alert status-open fresh";
    row.dataset.incident = alert.incident;
    const when = document.createElement("td");
    const time = document.createElement("time");
    time.setAttribute("datetime", alert.received.wall);
    time.textContent = alert.received.wall;
    when.append(time);
    const link = document.createElement("a");
    link.href = `/incidents/${encodeURIComponent(alert.badge)}/${encodeURIComponent(alert.incident)}`;
    link.textContent = alert.incident;
    const incident = document.createElement("td");
    incident.append(link);
    const actions = document.createElement("td");
    actions.className = "actions";
    actions.append(actionForm(alert, "acknowledge", "Acknowledge"), actionForm(alert, "resolve", "Resolve"));
    const status = cell("open");
    status.className = "status";
    row.append(when, cell(alert.wearer || ""), cell(alert.badge),
      cell(alert.location || alert.registered_location || ""), incident, status, actions);
    table.prepend(row);
    if (typeof localiseTimes === "function") localiseTimes(row);
    const none = document.getElementById("none");
    if (none) none.remove();
    beep();
  }

  document.getElementById("sound").addEventListener("click", () => {
    audio = audio || new AudioContext();
    audio.resume();
  });

  const stream = new EventSource("/alerts/stream");
  let dropped = false;
  stream.addEventListener("open", () => {
    // After a dropped connection, alerts may have come and gone: show the store's list.
    if (dropped) window.location.reload();
    state.textContent = "live";
    state.className = "state live";
  });
  stream.addEventListener("error", () => {
    dropped = true;
    state.textContent = "reconnecting…";
    state.className = "state";
  });
  stream.addEventListener("alert", (event) => show(JSON.parse(event.data)));
  // The stream lost alerts (this screen fell behind): reload the list from the store.
  stream.addEventListener("overflow", () => window.location.reload());
})();
