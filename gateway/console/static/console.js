// Shows every <time datetime="..."> in the browser's local time zone (UTC stays in the tooltip).
"use strict";
function localiseTimes(root) {
  for (const element of root.querySelectorAll("time[datetime]")) {
    const moment = new Date(element.getAttribute("datetime"));
    if (!Number.isNaN(moment.getTime())) {
      element.title = element.getAttribute("datetime");
      element.textContent = moment.toLocaleString();
    }
  }
}
document.addEventListener("DOMContentLoaded", () => localiseTimes(document));
