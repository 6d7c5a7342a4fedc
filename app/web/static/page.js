// Ancla's pages in the browser: verification (verify.js) shown step by step, and files
// hashed here and looked up. Everything else on the pages works without this script.
// No inline script anywhere: the pages hand their data over in data-* attributes,
// and everything written into a page here is text (textContent), never HTML.

import { formatMessage, sha256Hex, verifyReceipt } from "./verify.js";

function catalogueOf(element) {
  try {
    return JSON.parse(element.dataset.messages || "{}");
  } catch {
    return {};
  }
}

function originOf(url) {
  try {
    return new URL(url, window.location.href).origin;
  } catch {
    return null;
  }
}

function shown(value) {
  if (value === null || value === undefined) return "—";
  return typeof value === "string" ? value : JSON.stringify(value);
}

function shortHash(hash) {
  return hash.length > 18 ? `${hash.slice(0, 10)}…${hash.slice(-4)}` : hash;
}

// -- verification -------------------------------------------------------------------

class Steps {
  constructor(root) {
    this.root = root;
    this.list = root.querySelector("[data-steps]");
    this.outcome = root.querySelector("[data-outcome]");
    this.catalogue = catalogueOf(root);
  }

  say(key, params) {
    return formatMessage(key, params, this.catalogue);
  }

  item(step) {
    let li = this.list.querySelector(`[data-step="${step}"]`);
    if (li) return li;
    // "anchor": where a pending receipt stops, as in the CLI; shown before the chain's steps.
    li = this.list.querySelector("[data-step]").cloneNode(true);
    li.dataset.step = step;
    li.querySelector(".step-name").textContent = this.say(`step.${step}`);
    li.querySelector(".step-id").textContent = step;
    this.list.insertBefore(li, this.list.querySelector('[data-step="anchor.chain"]'));
    return li;
  }

  reset(withRecord) {
    this.list.querySelector('[data-step="anchor"]')?.remove();
    this.list.dataset.verification = "running";
    this.outcome.className = "outcome";
    this.outcome.textContent = this.say("outcome.running");
    for (const li of this.list.querySelectorAll("[data-step]")) {
      const skipped = li.dataset.step === "record" && !withRecord;
      this.mark(li, skipped ? "skipped" : "pending");
    }
  }

  mark(li, result) {
    li.dataset.result = result;
    const label = { pass: "result.pass", fail: "result.fail", skipped: "result.skipped", error: "result.error" }[result];
    li.querySelector("[data-result-text]").textContent = label ? this.say(label) : "";
    if (result === "pending" || result === "skipped") {
      li.querySelector("[data-detail]").textContent = "";
      li.querySelector("[data-trusted]").textContent = "";
      li.querySelector("[data-evidence]").hidden = true;
    }
  }

  show(result) {
    const li = this.item(result.step);
    this.mark(li, result.ok ? "pass" : "fail");
    li.querySelector("[data-detail]").textContent = this.say(result.key, result.params);
    li.querySelector("[data-trusted]").textContent =
      `${this.say("trusted")}: ${this.say(result.trusted, result.trusted_params)}`;
    const evidence = li.querySelector("[data-evidence]");
    evidence.querySelector("[data-expected]").textContent = shown(result.expected);
    evidence.querySelector("[data-actual]").textContent = shown(result.actual);
    evidence.hidden = result.ok;
  }

  finish(outcome, detail) {
    for (const li of this.list.querySelectorAll('[data-result="pending"]')) this.mark(li, "skipped");
    this.outcome.className = `outcome ${outcome}`;
    this.outcome.textContent = this.say(`outcome.${outcome}`) + (detail ? ` ${detail}` : "");
    // For machines (DESIGN §9): "pass" or "fail" once done; "error" if it could not check.
    this.list.dataset.verification = outcome;
  }
}

async function fetchText(url, steps) {
  let response;
  try {
    response = await fetch(url, { headers: { Accept: "application/json" } });
  } catch (error) {
    throw new Error(steps.say("input.fetch", { url, error: error.message }));
  }
  if (!response.ok) throw new Error(steps.say("input.fetch", { url, error: `HTTP ${response.status}` }));
  return response.text();
}

async function verify(root, form) {
  const steps = new Steps(root);
  const rpcUrl = form.elements.rpc.value.trim();
  const confirmations = Math.max(1, Number.parseInt(form.elements.confirmations.value, 10) || 1);
  let receipt;
  let recordText = null;
  if (root.dataset.mode === "record") {
    steps.reset(true);
    try {
      [receipt, recordText] = await Promise.all([
        fetchText(root.dataset.receiptUrl, steps),
        fetchText(root.dataset.recordUrl, steps),
      ]);
    } catch (error) {
      steps.finish("error", error.message);
      return;
    }
  } else {
    receipt = root.querySelector("[data-receipt-input]").value.trim();
    const record = root.querySelector("[data-record-input]").value.trim();
    recordText = record === "" ? null : record;
    steps.reset(recordText !== null);
    if (receipt === "") {
      steps.finish("error", steps.say("input.receipt"));
      return;
    }
  }
  const report = await verifyReceipt({
    receipt,
    recordText,
    rpcUrl,
    confirmations,
    onStep: (result) => steps.show(result),
  });
  steps.finish(report.outcome, report.error ? steps.say(report.error.key, report.error.params) : "");
}

const SAVED = "ancla.verificar";

function setupVerification(root) {
  const form = root.querySelector("[data-verify-form]");
  form.addEventListener("submit", (event) => {
    const allowed = originOf(root.dataset.rpcAllowed);
    if (originOf(form.elements.rpc.value.trim()) !== allowed) {
      // Another endpoint: the page is asked again with ?rpc=, so that its policy lets
      // this page connect there (connect-src names only the endpoints given).
      if (root.dataset.mode !== "record") {
        const saved = {
          receipt: root.querySelector("[data-receipt-input]").value,
          record: root.querySelector("[data-record-input]").value,
        };
        window.sessionStorage.setItem(SAVED, JSON.stringify(saved));
      }
      return;
    }
    event.preventDefault();
    verify(root, form);
  });
  for (const input of root.querySelectorAll("input[type=file][data-fills]")) {
    input.addEventListener("change", async () => {
      const file = input.files[0];
      if (file) document.getElementById(input.dataset.fills).value = await file.text();
    });
  }
  const asked = new URLSearchParams(window.location.search).get("verify") === "1";
  if (root.dataset.mode !== "record") {
    const saved = window.sessionStorage.getItem(SAVED);
    window.sessionStorage.removeItem(SAVED);
    if (saved && asked) {
      const { receipt, record } = JSON.parse(saved);
      root.querySelector("[data-receipt-input]").value = receipt;
      root.querySelector("[data-record-input]").value = record;
      verify(root, form);
    }
  } else if (root.dataset.autostart === "true") {
    verify(root, form);
  }
}

// -- a file, hashed here, and the records that bind it ---------------------------------------

function setupDocument(section) {
  const catalogue = catalogueOf(section);
  const say = (key, params) => formatMessage(key, params, catalogue);
  const input = section.querySelector("[data-document-input]");
  const out = section.querySelector("[data-document-result]");

  async function lookup(file) {
    out.replaceChildren(say("document.searching"));
    out.dataset.state = "hashing";
    try {
      const digest = await sha256Hex(await file.arrayBuffer());
      const response = await fetch(`/v1/documents/${digest}`, { headers: { Accept: "application/json" } });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      const found = await response.json();
      out.dataset.sha256 = digest;
      if (found.records.length === 0) {
        out.replaceChildren(say("document.none", { sha256: digest }));
        out.dataset.state = "none";
        return;
      }
      const list = document.createElement("ul");
      list.className = "cards";
      for (const record of found.records) {
        const li = document.createElement("li");
        li.className = "card";
        li.dataset.recordHash = record.hash;
        const link = document.createElement("a");
        link.href = `/r/${record.hash}`;
        link.className = "hash";
        link.textContent = shortHash(record.hash);
        const order = document.createElement("a");
        order.href = `/o/${encodeURIComponent(record.buyer_ruc)}/${encodeURIComponent(record.order_number)}`;
        order.textContent = say("document.order", { number: record.order_number });
        li.append(link, " · ", order, ` · ${record.titles.join(", ")} · ${say(`status.${record.status}`)}`);
        list.append(li);
      }
      out.replaceChildren(say("document.found", { sha256: digest }), list);
      out.dataset.state = "found";
    } catch (error) {
      out.replaceChildren(say("document.error", { error: error.message }));
      out.dataset.state = "error";
    }
  }

  input.addEventListener("change", () => {
    if (input.files[0]) lookup(input.files[0]);
  });
  section.addEventListener("dragover", (event) => {
    event.preventDefault();
    section.classList.add("dragging");
  });
  section.addEventListener("dragleave", () => section.classList.remove("dragging"));
  section.addEventListener("drop", (event) => {
    event.preventDefault();
    section.classList.remove("dragging");
    const file = event.dataTransfer?.files?.[0];
    if (file) lookup(file);
  });
}

for (const root of document.querySelectorAll("[data-verify-root]")) setupVerification(root);
for (const section of document.querySelectorAll("[data-document-drop]")) setupDocument(section);
