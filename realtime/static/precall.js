// The pre-call check, shared by the guest's page (/join) and the consultation page
// (/rtc/consult#...&precall=1): camera preview, microphone level, then a real test call to the
// server's echo peer (realtime/echo.py), which sends the media back. The page measures the round
// trip, the loss and the bitrate of what comes back, and suggests sound only when the link is
// weak (THRESHOLDS, documented in the README). Plain ES2017, no framework: cheap Android phones.
"use strict";
(function () {
  // Audio only is suggested when any one is crossed. A round trip above 400 ms makes talking
  // over each other likely; above 5 % loss video freezes; below 150 kbit/s of returned video
  // the picture is too poor to be worth the sound it starves.
  var THRESHOLDS = { rttMs: 400, lossPct: 5, videoKbps: 150 };
  var SECONDS = 5;  // measured after the test call connects

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text) node.textContent = text;
    return node;
  }
  function sleep(ms) { return new Promise(function (done) { setTimeout(done, ms); }); }

  // The microphone's level, drawn as a bar; `heard` becomes true once anything louder than the
  // noise floor arrives.
  function meter(stream, bar, state) {
    var Context = window.AudioContext || window.webkitAudioContext;
    if (!Context || !stream.getAudioTracks().length) return function () {};
    var context = new Context(), analyser = context.createAnalyser(), running = true;
    analyser.fftSize = 256;
    context.createMediaStreamSource(stream).connect(analyser);
    if (context.resume) context.resume().catch(function () {});
    var samples = new Uint8Array(analyser.fftSize);
    function tick() {
      if (!running) return;
      analyser.getByteTimeDomainData(samples);
      var sum = 0;
      for (var i = 0; i < samples.length; i++) { var v = (samples[i] - 128) / 128; sum += v * v; }
      var level = Math.min(1, Math.sqrt(sum / samples.length) * 4);
      bar.style.width = Math.round(level * 100) + "%";
      if (level > 0.02) state.heard = true;
      setTimeout(tick, 100);  // 10 times a second is plenty, and cheap on an old phone
    }
    tick();
    return function () { running = false; context.close().catch(function () {}); };
  }

  function gathered(pc, ms) {
    return new Promise(function (done) {
      if (pc.iceGatheringState === "complete") return done();
      var timer = setTimeout(done, ms);  // a STUN/TURN server that never answers: go with what we have
      pc.addEventListener("icegatheringstatechange", function () {
        if (pc.iceGatheringState === "complete") { clearTimeout(timer); done(); }
      });
    });
  }
  function connected(pc, ms) {
    return new Promise(function (done, fail) {
      var timer = setTimeout(function () { fail(new Error("timeout")); }, ms);
      function check() {
        if (pc.connectionState === "connected" || pc.iceConnectionState === "connected" || pc.iceConnectionState === "completed") {
          clearTimeout(timer); done();
        } else if (pc.connectionState === "failed" || pc.iceConnectionState === "failed") {
          clearTimeout(timer); fail(new Error("failed"));
        }
      }
      pc.addEventListener("connectionstatechange", check);
      pc.addEventListener("iceconnectionstatechange", check);
      check();
    });
  }

  // One look at the statistics: the selected candidate pair's round trip (STUN checks) and
  // RTCP's (remote-inbound-rtp), what came back (inbound-rtp) and what the echo lost of ours.
  async function snapshot(pc) {
    var report = await pc.getStats(), pairs = {}, selected = null;
    var s = { at: performance.now(), rtt: [], lost: 0, received: 0, remoteLost: 0, sent: 0, videoBytes: 0, bytes: 0 };
    report.forEach(function (r) {
      if (r.type === "candidate-pair") pairs[r.id] = r;
      if (r.type === "transport" && r.selectedCandidatePairId) selected = r.selectedCandidatePairId;
    });
    var pair = selected ? pairs[selected] : null;
    if (!pair) for (var id in pairs) if (pairs[id].nominated && pairs[id].state === "succeeded") pair = pairs[id];
    if (pair && pair.currentRoundTripTime !== undefined) s.rtt.push(pair.currentRoundTripTime * 1000);
    report.forEach(function (r) {
      if (r.type === "inbound-rtp") {
        s.lost += Math.max(0, r.packetsLost || 0); s.received += r.packetsReceived || 0; s.bytes += r.bytesReceived || 0;
        if (r.kind === "video") s.videoBytes += r.bytesReceived || 0;
      } else if (r.type === "remote-inbound-rtp") {
        s.remoteLost += Math.max(0, r.packetsLost || 0);
        if (r.roundTripTime !== undefined) s.rtt.push(r.roundTripTime * 1000);
      } else if (r.type === "outbound-rtp") {
        s.sent += r.packetsSent || 0;
      }
    });
    return s;
  }

  async function measure(pc, seconds, video, onTick) {
    var first = await snapshot(pc), last = first, rtts = [];
    for (var i = 0; i < seconds; i++) {
      await sleep(1000);
      last = await snapshot(pc);
      if (last.rtt.length) rtts.push(Math.max.apply(null, last.rtt));
      onTick(seconds - i - 1);
    }
    rtts.sort(function (a, b) { return a - b; });
    var lost = last.lost - first.lost, received = last.received - first.received;
    var down = lost + received ? (100 * lost) / (lost + received) : (video ? 100 : 0);
    var sent = last.sent - first.sent, up = sent ? (100 * Math.min(sent, last.remoteLost - first.remoteLost)) / sent : 0;
    var elapsed = (last.at - first.at) / 1000 || 1;
    return {
      rtt_ms: rtts.length ? Math.round(rtts[Math.floor(rtts.length / 2)]) : null,  // the median
      loss_pct: Math.round(Math.max(down, up) * 10) / 10,
      kbps: Math.round((8 * (last.bytes - first.bytes)) / elapsed / 1000),
      video_kbps: video ? Math.round((8 * (last.videoBytes - first.videoBytes)) / elapsed / 1000) : null
    };
  }

  function weak(result) {
    return (result.rtt_ms !== null && result.rtt_ms > THRESHOLDS.rttMs) ||
      result.loss_pct > THRESHOLDS.lossPct ||
      (result.video_kbps !== null && result.video_kbps < THRESHOLDS.videoKbps);
  }

  // The test call: our camera and microphone to the echo, for SECONDS once connected.
  async function testCall(options, stream, onTick, state) {
    var pc = new RTCPeerConnection({ iceServers: await options.iceServers() });
    state.pc = pc;  // joining before the end closes it (stop)
    try {
      stream.getTracks().forEach(function (track) { pc.addTrack(track, stream); });
      await pc.setLocalDescription(await pc.createOffer());
      await gathered(pc, 5000);  // non-trickle: the whole offer in one request
      var answer = await options.offer(pc.localDescription.sdp);
      await pc.setRemoteDescription({ type: "answer", sdp: answer.sdp });
      await connected(pc, 10000);
      return await measure(pc, SECONDS, stream.getVideoTracks().length > 0, onTick);
    } finally {
      pc.close();
      state.pc = null;
    }
  }

  // Builds the check in `options.container` and runs it. options: t(key, values) for texts,
  // stream (the camera and microphone the call will use), iceServers() and offer(sdp) (the
  // page's way to reach the echo: async, the latter resolving to {sdp} or throwing
  // {code} on refusal). Returns a controller: .audioOnly() (the person's choice), .stop().
  function start(options) {
    var t = options.t, stream = options.stream, box = options.container;
    var state = { heard: false, result: null, advice: false, running: false, error: null, pc: null };
    box.textContent = "";
    box.className = (box.className + " precall").trim();
    var hasVideo = stream.getVideoTracks().length > 0;
    var preview = el("video", "pc-preview");
    preview.muted = true; preview.autoplay = true; preview.playsInline = true; preview.setAttribute("playsinline", "");
    preview.srcObject = stream;
    preview.hidden = !hasVideo;
    var camera = el("p", "pc-line", t(hasVideo ? "precall_camera_ok" : "precall_camera_none"));
    var micLine = el("div", "pc-line pc-mic");
    var micLabel = el("span", "", t("precall_mic"));
    var track = el("span", "pc-meter"), bar = el("i");
    track.appendChild(bar); micLine.appendChild(micLabel); micLine.appendChild(track);
    var net = el("p", "pc-line pc-net");
    net.setAttribute("role", "status");
    var advice = el("p", "pc-advice");
    advice.hidden = true;
    var choice = el("label", "pc-choice"), box_ = el("input");
    box_.type = "checkbox"; box_.id = "precall-audio-only"; box_.checked = !hasVideo; box_.disabled = !hasVideo;
    choice.appendChild(box_); choice.appendChild(document.createTextNode(" " + t("precall_audio_only")));
    var again = el("button", "pc-again", t("precall_again"));
    again.type = "button";
    [el("h2", "pc-title", t("precall_title")), preview, camera, micLine, net, advice, choice, again].forEach(function (n) { box.appendChild(n); });
    var stopMeter = meter(stream, bar, state);

    async function run() {
      if (state.running) return;
      state.running = true; again.disabled = true; advice.hidden = true; state.error = null;
      box.dataset.state = "testing";
      net.textContent = t("precall_testing", { seconds: SECONDS });
      try {
        var result = await testCall(options, stream, function (left) { net.textContent = t("precall_testing", { seconds: left }); }, state);
        state.result = result;
        state.advice = weak(result);
        net.textContent = t("precall_result", {
          rtt: result.rtt_ms === null ? "?" : result.rtt_ms, loss: result.loss_pct, kbps: result.kbps
        });
        advice.textContent = t(state.advice ? "precall_weak" : "precall_good");
        advice.className = "pc-advice " + (state.advice ? "pc-bad" : "pc-good");
        advice.hidden = false;
        if (state.advice && hasVideo) box_.checked = true;
        box.dataset.state = state.advice ? "weak" : "good";
      } catch (e) {
        state.error = (e && e.code) || "failed";
        net.textContent = t(state.error === "echo_busy" ? "precall_busy" : "precall_failed");
        box.dataset.state = "failed";
      } finally {
        state.running = false; again.disabled = false;
      }
    }
    again.onclick = function () { run().catch(function () {}); };
    run().catch(function () {});
    return {
      state: state,
      thresholds: THRESHOLDS,
      audioOnly: function () { return box_.checked || !hasVideo; },
      stop: function () {
        stopMeter(); preview.srcObject = null; box.hidden = true;
        if (state.pc) state.pc.close();  // the echo notices and lets its place go
      }
    };
  }

  window.SpeanPrecall = { start: start, thresholds: THRESHOLDS, seconds: SECONDS };
})();
