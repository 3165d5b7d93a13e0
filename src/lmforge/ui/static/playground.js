// lmforge playground: classify or generate with one model version, then send feedback.
// Vanilla JS, no build step. Model output and labels are data: set with textContent only.
(function () {
  "use strict";
  const root = document.getElementById("playground");
  if (!root) return;
  const $ = (id) => document.getElementById(id);
  const task = root.dataset.task;
  const version = root.dataset.version;
  let last = null; // {id, text, output}

  // Changing the version reloads the page for it (the button is there without JS too).
  $("version").addEventListener("change", () => $("pick").submit());

  function status(text) {
    $("status").textContent = text;
  }

  // The session's CSRF token, which every state-changing request must carry (see ui/csrf.py).
  const csrf = document.querySelector('meta[name="csrf-token"]');

  async function post(path, body) {
    const response = await fetch(path, {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf ? csrf.content : "" },
      body: JSON.stringify(body),
      credentials: "same-origin",
    });
    if (response.redirected) {
      // The session ended: the server sent us to the login page.
      window.location = "/login?next=/playground";
      throw new Error("please log in again");
    }
    if (!response.ok) throw new Error(await reason(response));
    return response;
  }

  async function reason(response) {
    try {
      const detail = (await response.json()).detail;
      return typeof detail === "string" ? detail : JSON.stringify(detail);
    } catch (_) {
      if (response.status === 403) return "your key is not allowed to do this";
      return "request failed (" + response.status + ")";
    }
  }

  function showBars(probabilities) {
    const bars = $("bars");
    bars.replaceChildren();
    Object.entries(probabilities).forEach(([label, p], i) => {
      const row = document.createElement("div");
      row.className = i === 0 ? "bar top" : "bar";
      const name = document.createElement("span");
      name.className = "name";
      name.textContent = label;
      const track = document.createElement("span");
      track.className = "track";
      const fill = document.createElement("span");
      fill.className = "fill";
      fill.style.width = (100 * p).toFixed(1) + "%";
      track.appendChild(fill);
      const value = document.createElement("span");
      value.className = "p";
      value.textContent = (100 * p).toFixed(1) + "%";
      row.append(name, track, value);
      bars.appendChild(row);
    });
  }

  function fillLabels(labels, chosen) {
    const select = $("correction");
    if (!select) return;
    select.replaceChildren();
    labels.forEach((label) => {
      const option = document.createElement("option");
      option.value = option.textContent = label;
      option.selected = label === chosen;
      select.appendChild(option);
    });
  }

  async function classify(text) {
    const reply = await (await post("/playground/classify", { version, text })).json();
    $("label").textContent = reply.label;
    $("confidence").textContent = (100 * reply.confidence).toFixed(1) + "%";
    $("meta").textContent = reply.model + " v" + reply.version;
    showBars(reply.probabilities);
    fillLabels(Object.keys(reply.probabilities).sort(), reply.label);
    $("result").hidden = false;
    return { id: reply.id, text, output: reply.label };
  }

  async function generate(text) {
    const body = {
      version,
      text,
      max_new_tokens: parseInt($("max_new_tokens").value, 10) || null,
      temperature: parseFloat($("temperature").value) || 0,
      raw: $("raw").checked,
    };
    const response = await post("/playground/generate", body);
    const output = $("output");
    output.textContent = "";
    $("meta").textContent = "v" + response.headers.get("X-Model-Version");
    $("result").hidden = false;
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      output.textContent += decoder.decode(value, { stream: true });
    }
    output.textContent += decoder.decode();
    const correction = $("correction");
    if (correction) correction.value = output.textContent;
    return { id: response.headers.get("X-Prediction-Id"), text, output: output.textContent };
  }

  $("ask").addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = $("text").value;
    if (!text.trim()) return;
    $("run").disabled = true;
    $("feedback").hidden = true;
    status(task === "classification" ? "classifying…" : "generating…");
    try {
      last = await (task === "classification" ? classify(text) : generate(text));
      status("");
      const sent = $("sent");
      if (sent) sent.hidden = true;
      $("feedback").hidden = false;
    } catch (error) {
      status("error: " + error.message);
    } finally {
      $("run").disabled = false;
    }
  });

  async function send(extra) {
    if (!last) return;
    const sent = $("sent");
    try {
      const reply = await (
        await post("/playground/feedback", { prediction_id: last.id, text: last.text, ...extra })
      ).json();
      sent.className = "msg ok";
      sent.textContent = reply.message;
    } catch (error) {
      sent.className = "msg error";
      sent.textContent = "not saved: " + error.message;
    }
    sent.hidden = false;
  }

  if ($("up")) {
    $("up").addEventListener("click", () => send({ rating: 1 }));
    $("down").addEventListener("click", () => send({ rating: -1 }));
    $("correct").addEventListener("click", () => {
      const value = $("correction").value;
      if (!value.trim()) return;
      send(task === "classification" ? { label: value } : { corrected_output: value });
    });
  }
})();
