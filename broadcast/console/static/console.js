/* Self-refreshing pages; plain ES5 so old office browsers run it. Times are the deployment's, never the browser's. */
(function () {
  var texts = JSON.parse((document.getElementById("ui-texts") || { textContent: "{}" }).textContent);
  /* A text of the page's language (base.html hands them over), with %(name)s filled in from VALUES. */
  window.uiText = function (key, values) {
    var text = texts[key] || key;
    for (var name in values || {}) {
      if (values.hasOwnProperty(name)) { text = text.split("%(" + name + ")s").join(String(values[name])); }
    }
    return text.split("%%").join("%");
  };
  var zone = document.body.getAttribute("data-tz") || "";
  var offsetMin = parseFloat(document.body.getAttribute("data-utc-offset") || "0");
  function p(n) { return (n < 10 ? "0" : "") + n; }
  function fmtTime(at) {
    if (!at) { return ""; }
    var d = new Date(at * 1000);
    if (window.Intl && zone) {
      try {
        return new Intl.DateTimeFormat("zh-CN", { timeZone: zone, hour: "2-digit", minute: "2-digit", second: "2-digit",
          hourCycle: "h23", hour12: false }).format(d);
      } catch (e) { /* an old browser without time zones: use the offset the server gave */ }
    }
    var shifted = new Date(at * 1000 + offsetMin * 60000);
    return p(shifted.getUTCHours()) + ":" + p(shifted.getUTCMinutes()) + ":" + p(shifted.getUTCSeconds());
  }
  function labels(id) {
    var el = document.getElementById(id);
    return el ? JSON.parse(el.textContent) : {};
  }
  function get(url, done) {
    var xhr = new XMLHttpRequest();
    xhr.open("GET", url);
    xhr.setRequestHeader("Accept", "application/json");
    xhr.onload = function () { if (xhr.status === 200) { done(JSON.parse(xhr.responseText)); } };
    xhr.send();
  }
  var box = document.getElementById("broadcast");
  if (box) {
    var stateLabels = labels("state-labels"), statusLabels = labels("status-labels");
    var refresh = function () {
      get(box.getAttribute("data-refresh"), function (b) {
        var status = document.getElementById("status");
        status.textContent = statusLabels[b.status] || b.status;
        status.setAttribute("data-status", b.status);
        var counts = b.counts, parts = [];
        for (var k in counts) { if (counts.hasOwnProperty(k)) { parts.push((stateLabels[k] || k) + " " + counts[k]); } }
        document.getElementById("summary").textContent = parts.join(" · ");
        for (var i = 0; i < b.deliveries.length; i++) {
          var d = b.deliveries[i];
          var row = document.querySelector('tr[data-speaker="' + d.speaker_id + '"]');
          if (!row) { continue; }
          row.className = "state-" + d.state;
          var cell = row.querySelector(".state");
          cell.textContent = stateLabels[d.state] || d.state;
          cell.setAttribute("data-state", d.state);
          row.querySelector(".started").textContent = fmtTime(d.started_at);
          row.querySelector(".finished").textContent = fmtTime(d.finished_at);
          row.querySelector(".reason").textContent = d.reason || "";
        }
        if (b.status !== "done") { setTimeout(refresh, 1500); }
      });
    };
    refresh();
  }
  var table = document.getElementById("speakers");
  if (table) {
    var again = function () {
      get(table.getAttribute("data-refresh"), function (data) {
        var on = 0;
        for (var i = 0; i < data.items.length; i++) {
          var s = data.items[i];
          if (s.online) { on++; }
          var row = table.querySelector('tr[data-speaker="' + s.id + '"]');
          if (!row) { continue; }
          var cell = row.querySelector(".online");
          cell.className = "online " + (s.online ? "on" : "off");
          cell.textContent = window.uiText(s.online ? "online" : "offline");
          var playing = row.querySelector(".playing");
          playing.innerHTML = "";
          if (s.playing) {
            var link = document.createElement("a");
            link.href = table.getAttribute("data-broadcast").replace(/0$/, String(s.playing));
            link.textContent = "#" + s.playing;
            playing.appendChild(link);
          }
        }
        document.getElementById("online-count").textContent = on;
        document.getElementById("offline-count").textContent = data.items.length - on;
        setTimeout(again, 5000);
      });
    };
    setTimeout(again, 5000);
  }
}());
