// otseg console: times in the browser's timezone with the UTC offset, and live counters.
// No dependencies, no inline script (the page's Content-Security-Policy allows only this file).
"use strict";
(function () {
  function two(n) { return (n < 10 ? "0" : "") + n; }
  function localText(date) {
    var offset = -date.getTimezoneOffset();
    var sign = offset >= 0 ? "+" : "-";
    var abs = Math.abs(offset);
    return date.getFullYear() + "-" + two(date.getMonth() + 1) + "-" + two(date.getDate()) + " " +
      two(date.getHours()) + ":" + two(date.getMinutes()) + ":" + two(date.getSeconds()) +
      " UTC" + sign + two(Math.floor(abs / 60)) + ":" + two(abs % 60);
  }
  function localiseTimes(root) {
    root.querySelectorAll("time[data-utc]").forEach(function (element) {
      var date = new Date(element.getAttribute("datetime"));
      if (!isNaN(date.getTime())) { element.textContent = localText(date); element.title = element.getAttribute("datetime"); }
    });
  }
  function refresh(url, state) {
    fetch(url, { credentials: "same-origin", cache: "no-store" }).then(function (answer) {
      if (!answer.ok) { throw new Error("HTTP " + answer.status); }
      return answer.json();
    }).then(function (data) {
      document.querySelectorAll("[data-live]").forEach(function (element) {
        var key = element.getAttribute("data-live");
        if (!(key in data.counters)) { return; }
        var text = String(data.counters[key]);
        if (element.textContent !== text) { element.textContent = text; element.classList.add("changed"); }
      });
      if (state) { state.textContent = "updated " + localText(new Date(data.time * 1000)); }
    }).catch(function (error) {
      if (state) { state.textContent = "not updated (" + error.message + ")"; }
    });
  }
  document.addEventListener("DOMContentLoaded", function () {
    localiseTimes(document);
    var url = document.body.getAttribute("data-live-url");
    if (url) {
      var state = document.getElementById("live-state");
      refresh(url, state);
      window.setInterval(function () { refresh(url, state); }, 2000);
    }
  });
})();
