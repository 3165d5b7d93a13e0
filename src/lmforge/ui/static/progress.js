// Live progress on a run page: while the run is `running`, poll its progress.json every 2 s,
// update the stage table and badges, and reload the page when the run ends (so metrics,
// report link and log appear). Needs an element #progress with data-url; the run page's
// stage table is #stages (rows matched by their first cell) and its status badge #run-status.
(function () {
  "use strict";
  var box = document.getElementById("progress");
  if (!box) return;
  var url = box.getAttribute("data-url");
  var text = document.getElementById("progress-text");
  var bar = document.getElementById("progress-bar");
  var table = document.getElementById("stages");
  var ENDED = ["succeeded", "failed", "interrupted"];

  function badge(el, status) {
    el.className = "badge " + status;
    el.textContent = status;
  }

  function row(name) {
    var rows = table ? table.querySelectorAll("tr") : [];
    for (var i = 1; i < rows.length; i++) {
      if (rows[i].cells[0] && rows[i].cells[0].textContent.trim() === name) return rows[i];
    }
    if (!table) return null;
    var tr = (table.tBodies[0] || table).insertRow(-1);
    var cols = rows.length ? rows[0].cells.length : 3;
    for (var c = 0; c < cols; c++) tr.insertCell(-1);
    tr.cells[0].textContent = name;
    tr.cells[1].appendChild(document.createElement("span"));
    if (tr.cells[2]) tr.cells[2].className = "n";
    return tr;
  }

  function show(p) {
    var status = document.getElementById("run-status");
    if (status) badge(status, p.status);
    if (text) {
      text.textContent = p.status === "running"
        ? (p.current || "starting") + " · " + p.done + " of " + p.total + " stages · " + Math.round(p.seconds) + " s"
        : p.status + (p.error ? ": " + p.error : "");
    }
    if (bar) { bar.max = p.total || 1; bar.value = p.done; }
    p.stages.forEach(function (s) {
      var tr = row(s.name);
      if (!tr) return;
      var span = tr.cells[1].querySelector("span") || tr.cells[1].appendChild(document.createElement("span"));
      badge(span, s.status);
      if (tr.cells[2] && s.seconds !== null && s.seconds !== undefined) tr.cells[2].textContent = s.seconds.toFixed(1);
    });
  }

  function poll() {
    // The header: a poll does not count as the user being active (ui/session.py).
    fetch(url, { credentials: "same-origin", cache: "no-store", headers: { "X-Lmforge-Background": "1" } })
      .then(function (r) { return r.ok ? r.json() : Promise.reject(r.status); })
      .then(function (p) {
        show(p);
        if (ENDED.indexOf(p.status) >= 0) { window.location.reload(); return; }
        if (p.status === "running") window.setTimeout(poll, 2000);
        // `killed`: run.json still says running, so a reload would poll again forever; stop here.
      })
      .catch(function () { window.setTimeout(poll, 5000); });
  }
  poll();
})();
