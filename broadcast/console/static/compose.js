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
    var info = "时长 " + (clip.duration_ms / 1000).toFixed(1) + " 秒 · 响度 " + clip.loudness_lufs.toFixed(1) +
      " LUFS · 峰值 " + clip.true_peak_dbtp.toFixed(1) + " dBTP";
    if (clip.engine) {
      info += " · 发音人 " + (voiceLabels[clip.voice] || clip.voice) + "（" + (engineLabels[clip.engine] || clip.engine) + "）";
    }
    if (clip.source_format) { info += " · 原始格式 " + clip.source_format; }
    $("preview-info").textContent = info;
    var warnings = [];
    for (var i = 0; i < (clip.warnings || []).length; i++) { warnings.push(warningLabels[clip.warnings[i]] || clip.warnings[i]); }
    $("preview-warnings").textContent = warnings.length ? "⚠ " + warnings.join("；") : "";
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
    xhr.setRequestHeader("X-Language", "zh");  // the console speaks Chinese whatever the browser says
    xhr.setRequestHeader("Accept", "application/json");
    if (isJson) { xhr.setRequestHeader("Content-Type", "application/json"); }
    xhr.upload.onprogress = function (ev) {
      if (ev.lengthComputable) {
        progress.value = Math.round(ev.loaded * 100 / ev.total);
        progressText.textContent = "上传中 " + progress.value + "%";
      }
    };
    xhr.upload.onload = function () { progress.removeAttribute("value"); progressText.textContent = "正在处理音频…"; };
    xhr.onload = function () {
      progressBox.hidden = true;
      var data = null;
      try { data = JSON.parse(xhr.responseText); } catch (e) { data = null; }
      if (xhr.status === 201 && data) { showClip(data); return; }
      showError(data && data.error ? data.error.message : "处理失败（" + xhr.status + "）");
    };
    xhr.onerror = function () { progressBox.hidden = true; showError("网络错误，请重试。"); };
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
    request(data, false, "上传中…");
  }

  $("rate").addEventListener("input", function () { $("rate-value").textContent = parseFloat($("rate").value).toFixed(1); });
  $("text").addEventListener("input", function () { clipId.value = ""; });
  $("preview-tts").addEventListener("click", function () {
    var body = { text: $("text").value, voice: $("voice").value || null, rate: parseFloat($("rate").value) };
    if ($("title").value) { body.title = $("title").value; }
    request(JSON.stringify(body), true, "正在合成语音…");
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
      showError("此浏览器不支持录音，请改用上传录音文件（录音需要 HTTPS 或本机访问）。");
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
        upload(new Blob(chunks, { type: recorder.mimeType || "audio/webm" }), "recording.webm", "现场录音 " + stamp());
      };
      recorder.start(250);
      started = Date.now();
      timer = setInterval(function () { $("record-time").textContent = "录音中 " + Math.round((Date.now() - started) / 1000) + " 秒"; }, 500);
      $("record-start").disabled = true;
      $("record-stop").disabled = false;
    }, function () { showError("无法使用麦克风，请检查浏览器权限。"); });
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
    button.textContent = "正在发布…";
  });
}());
