/* Compose page: text-to-speech preview, upload with progress, browser recording, waveform and loudness. */
(function () {
  var form = document.getElementById("compose");
  if (!form) { return; }
  var csrf = document.querySelector("meta[name=csrf-token]").getAttribute("content");
  var clipsUrl = form.getAttribute("data-clips");
  var clipId = document.getElementById("clip_id");
  var errorBox = document.getElementById("clip-error");
  var progressBox = document.getElementById("progress-box");
  var progress = document.getElementById("upload-progress");
  var progressText = document.getElementById("progress-text");
  var warningLabels = JSON.parse(document.getElementById("warning-labels").textContent);
  var voiceLabels = JSON.parse(document.getElementById("voice-labels").textContent);
  var engineLabels = JSON.parse(document.getElementById("engine-labels").textContent);

  var text = window.uiText;
  function $(id) { return document.getElementById(id); }
  function showError(message) { errorBox.textContent = message || ""; }

  var tabs = document.querySelectorAll(".tab");
  for (var t = 0; t < tabs.length; t++) {
    tabs[t].addEventListener("click", function (ev) {
      var name = ev.target.getAttribute("data-tab");
      for (var i = 0; i < tabs.length; i++) { tabs[i].className = "tab" + (tabs[i] === ev.target ? " active" : ""); }
      var panels = document.querySelectorAll(".panel");
      for (var j = 0; j < panels.length; j++) { panels[j].hidden = panels[j].getAttribute("data-panel") !== name; }
      $("tab").value = name;
    });
  }

  function drawWaveform(values) {
    var canvas = $("waveform"), ctx = canvas.getContext("2d");
    var w = canvas.width, h = canvas.height, n = values.length || 1;
    ctx.clearRect(0, 0, w, h);
    ctx.fillStyle = "#b71c1c";
    for (var i = 0; i < values.length; i++) {
      var bar = Math.max(1, values[i] * h);
      ctx.fillRect(Math.floor(i * w / n), (h - bar) / 2, Math.max(1, Math.floor(w / n) - 1), bar);
    }
  }

  function showClip(clip) {
    clipId.value = clip.id;
    $("preview").hidden = false;
    $("preview-audio").src = clip.url;
    drawWaveform(clip.waveform || []);
    var info = text("clip_info", { s: (clip.duration_ms / 1000).toFixed(1), lufs: clip.loudness_lufs.toFixed(1),
      peak: clip.true_peak_dbtp.toFixed(1) });
    if (clip.engine) {
      info += text("clip_voice", { voice: voiceLabels[clip.voice] || clip.voice,
        engine: engineLabels[clip.engine] || clip.engine });
    }
    if (clip.source_format) { info += text("clip_format", { format: clip.source_format }); }
    $("preview-info").textContent = info;
    var warnings = [];
    for (var i = 0; i < (clip.warnings || []).length; i++) { warnings.push(warningLabels[clip.warnings[i]] || clip.warnings[i]); }
    $("preview-warnings").textContent = warnings.length ? "⚠ " + warnings.join(text("list_separator")) : "";
    $("preview").setAttribute("data-clip", clip.id);
  }

  function request(body, isJson, label) {
    showError("");
    clipId.value = "";
    progressBox.hidden = false;
    progress.value = 0;
    progressText.textContent = label;
    var xhr = new XMLHttpRequest();
    xhr.open("POST", clipsUrl);
    xhr.setRequestHeader("X-CSRFToken", csrf);
    // API errors in the page's language (the user's setting), whatever the browser says
    xhr.setRequestHeader("X-Language", document.documentElement.lang === "en" ? "en" : "zh");
    xhr.setRequestHeader("Accept", "application/json");
    if (isJson) { xhr.setRequestHeader("Content-Type", "application/json"); }
    xhr.upload.onprogress = function (ev) {
      if (ev.lengthComputable) {
        progress.value = Math.round(ev.loaded * 100 / ev.total);
        progressText.textContent = text("uploading_percent", { n: progress.value });
      }
    };
    xhr.upload.onload = function () { progress.removeAttribute("value"); progressText.textContent = text("processing"); };
    xhr.onload = function () {
      progressBox.hidden = true;
      var data = null;
      try { data = JSON.parse(xhr.responseText); } catch (e) { data = null; }
      if (xhr.status === 201 && data) { showClip(data); return; }
      showError(data && data.error ? data.error.message : text("failed_status", { status: xhr.status }));
    };
    xhr.onerror = function () { progressBox.hidden = true; showError(text("network_error")); };
    xhr.send(body);
  }

  function stamp() {  // now, in the deployment's time zone (as every page shows times)
    var zone = document.body.getAttribute("data-tz");
    try {
      return new Intl.DateTimeFormat("zh-CN", { timeZone: zone, month: "numeric", day: "numeric", hour: "2-digit",
        minute: "2-digit", hourCycle: "h23", hour12: false }).format(new Date());
    } catch (e) { return ""; }
  }

  function upload(blob, name, title) {
    var data = new FormData();
    data.append("file", blob, name);
    if (!$("title").value) { $("title").value = title; }
    data.append("title", $("title").value);
    request(data, false, text("uploading"));
  }

  $("rate").addEventListener("input", function () { $("rate-value").textContent = parseFloat($("rate").value).toFixed(1); });
  $("text").addEventListener("input", function () { clipId.value = ""; });
  $("preview-tts").addEventListener("click", function () {
    var body = { text: $("text").value, voice: $("voice").value || null, rate: parseFloat($("rate").value) };
    if ($("title").value) { body.title = $("title").value; }
    request(JSON.stringify(body), true, text("synthesizing"));
  });
  $("file").addEventListener("change", function () {
    if ($("file").files.length) {
      var name = $("file").files[0].name;
      upload($("file").files[0], name, name.replace(/\.[^.]+$/, "") || name);
    }
  });

  var recorder = null, chunks = [], started = 0, timer = null;
  $("record-start").addEventListener("click", function () {
    if (!navigator.mediaDevices || !window.MediaRecorder) {
      showError(text("no_recording"));
      return;
    }
    navigator.mediaDevices.getUserMedia({ audio: true }).then(function (stream) {
      chunks = [];
      var type = MediaRecorder.isTypeSupported("audio/webm;codecs=opus") ? "audio/webm;codecs=opus" : "";
      recorder = type ? new MediaRecorder(stream, { mimeType: type }) : new MediaRecorder(stream);
      recorder.ondataavailable = function (ev) { if (ev.data.size) { chunks.push(ev.data); } };
      recorder.onstop = function () {
        stream.getTracks().forEach(function (track) { track.stop(); });
        clearInterval(timer);
        upload(new Blob(chunks, { type: recorder.mimeType || "audio/webm" }), "recording.webm", text("recording_title", { when: stamp() }));
      };
      recorder.start(250);
      started = Date.now();
      timer = setInterval(function () { $("record-time").textContent = text("recording_time", { s: Math.round((Date.now() - started) / 1000) }); }, 500);
      $("record-start").disabled = true;
      $("record-stop").disabled = false;
    }, function () { showError(text("no_microphone")); });
  });
  $("record-stop").addEventListener("click", function () {
    if (recorder && recorder.state !== "inactive") { recorder.stop(); }
    $("record-start").disabled = false;
    $("record-stop").disabled = true;
    $("record-time").textContent = "";
  });

  form.addEventListener("submit", function () {
    if (clipId.value) { $("file").value = ""; }
    var button = $("send");
    button.disabled = true;
    button.textContent = text("sending");
  });
}());
