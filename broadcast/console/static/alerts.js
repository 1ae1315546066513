/* Warnings on every console page: held alerts ring a sound and show a banner at once; an alert's page refreshes
   its coverage live. Plain ES5 (old office browsers); only 'self' scripts and media (the CSP). */
(function () {
  var HEARD = "vb-heard-alerts";
  function get(url, done) {
    var xhr = new XMLHttpRequest();
    xhr.open("GET", url);
    xhr.setRequestHeader("Accept", "application/json");
    xhr.onload = function () { if (xhr.status === 200) { done(JSON.parse(xhr.responseText)); } };
    xhr.send();
  }
  function loadHeard() {
    try { return JSON.parse(window.sessionStorage.getItem(HEARD) || "{}"); } catch (e) { return {}; }
  }
  function saveHeard(heard) {
    try { window.sessionStorage.setItem(HEARD, JSON.stringify(heard)); } catch (e) { /* private mode */ }
  }

  var link = document.getElementById("nav-alerts");
  if (link) {
    var badge = document.getElementById("held-badge");
    var sound = null;
    var ring = function () {
      if (!sound) { sound = new Audio(link.getAttribute("data-sound")); }
      sound.currentTime = 0;
      var played = sound.play();
      var mark = function (how) { document.body.setAttribute("data-alert-sound", how); };
      if (played && played.then) {
        played.then(function () { mark("played"); }, function () { mark("blocked"); });
      } else {
        mark("played");
      }
    };
    var banner = function (count) {
      var box = document.getElementById("held-banner");
      if (count === 0 || document.getElementById("held")) {
        if (box) { box.parentNode.removeChild(box); }
        return;
      }
      if (!box) {
        box = document.createElement("p");
        box.id = "held-banner";
        box.className = "banner-down";
        box.setAttribute("role", "alert");
        var main = document.querySelector("main");
        main.insertBefore(box, main.firstChild);
      }
      box.textContent = "";
      var a = document.createElement("a");
      a.href = link.getAttribute("href");
      a.textContent = window.uiText("held_banner", { n: count });
      box.appendChild(a);
    };
    var poll = function () {
      get(link.getAttribute("data-held"), function (body) {
        var items = body.items, heard = loadHeard(), fresh = false, missing = false, i;
        badge.textContent = String(items.length);
        badge.hidden = items.length === 0;
        banner(items.length);
        var list = document.getElementById("held");
        for (i = 0; i < items.length; i++) {
          if (list && !list.querySelector('article[data-alert="' + items[i].id + '"]')) { missing = true; continue; }
          if (!heard[items[i].id]) { heard[items[i].id] = 1; fresh = true; }
        }
        saveHeard(heard);
        if (missing) { window.location.reload(); return; }  // the held list on this page is out of date
        if (fresh) { ring(); }
      });
      window.setTimeout(poll, 5000);
    };
    poll();
  }

  var chosen = document.getElementById("manual-targets");
  if (chosen) {  // a refused emergency form comes back with its areas still ticked
    var codes = JSON.parse(chosen.textContent);
    for (var j = 0; j < codes.length; j++) {
      var tick = document.querySelector('#manual input[name=targets][value="' + codes[j] + '"]');
      if (tick) { tick.checked = true; }
    }
  }

  var box = document.getElementById("alert");
  if (box && box.getAttribute("data-refresh")) {
    var labels = JSON.parse(document.getElementById("alert-state-labels").textContent);
    var set = function (row, cls, text) {
      var cell = row.querySelector("." + cls);
      if (cell) { cell.textContent = text; }
    };
    var refresh = function () {
      get(box.getAttribute("data-refresh"), function (a) {
        var state = document.getElementById("alert-state");
        state.textContent = labels[a.state] || a.state;
        state.setAttribute("data-state", a.state);
        var c = a.coverage, tone = a.tone_coverage;
        if (c) {
          document.getElementById("coverage-total").textContent = window.uiText("coverage", { sounded: c.sounded, total: c.speakers });
          for (var code in c.townships) {
            if (!c.townships.hasOwnProperty(code)) { continue; }
            var row = document.querySelector('tr[data-township="' + code + '"]');
            if (!row) { continue; }
            var t = c.townships[code];
            set(row, "speakers", String(t.speakers));
            set(row, "sounded", t.sounded + " / " + t.speakers);
            set(row, "offline", String(t.offline));
            set(row, "failed", String(t.failed));
            if (tone && tone.townships[code]) { set(row, "tone", String(tone.townships[code].sounded)); }
          }
        }
        if (a.state === "active" || a.state === "held") { window.setTimeout(refresh, 2000); }
      });
    };
    window.setTimeout(refresh, 2000);
  }
})();
