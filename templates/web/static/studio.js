// The playbook studio's editor (/admin/playbooks/{id}): CodeMirror 6 (the vendored bundle's
// global CM) in YAML mode with line numbers and a lint gutter. As HQ types, the text goes to
// POST /api/v1/playbooks/validate (debounced) and each error is shown at its line and column
// with its hint; Preview asks POST /api/v1/playbooks/preview, Save PUT /api/v1/playbooks/{id}.
// Every word shown comes from the page (#studio-words), none from here.
(function () {
  "use strict";
  const words = JSON.parse(document.getElementById("studio-words").textContent);
  const data = JSON.parse(document.getElementById("studio-data").textContent);
  const csrf = document.getElementById("csrf").value;
  const source = document.getElementById("source");
  const problems = document.getElementById("problems");
  const state = document.getElementById("check-state");
  const saveState = document.getElementById("save-state");
  const previewBox = document.getElementById("preview");
  const form = document.getElementById("preview-form");
  let view = null;
  let sequence = 0;

  function fill(template, values) {
    return template.replace(/\{(\w+)\}/g, (_, key) => String(values[key]));
  }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
    for (const child of children) node.append(child);
    return node;
  }

  function text() {
    return view ? view.state.doc.toString() : source.value;
  }

  async function call(method, url, body) {
    const response = await fetch(url, {
      method,
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
      body: JSON.stringify(body),
    });
    let answer = {};
    try {
      answer = await response.json();
    } catch (e) {
      answer = {};
    }
    return { status: response.status, answer };
  }

  function where(problem) {
    return fill(words.at, problem);
  }

  function showProblems(errors, warnings) {
    problems.replaceChildren();
    for (const [list, kind] of [[errors, "error"], [warnings, "warning"]]) {
      for (const p of list) {
        const item = el("li", { "data-line": p.line, "data-col": p.col, class: kind },
          `${where(p)}: ${p.message}`);
        if (p.hint) item.append(el("span", { class: "muted" }, `（${p.hint}）`));
        item.addEventListener("click", () => jump(p.line, p.col));
        problems.append(item);
      }
    }
    state.textContent = errors.length
      ? `${errors.length} ${words.errors}` + (warnings.length ? ` · ${warnings.length} ${words.warnings}` : "")
      : words.ok + (warnings.length ? ` · ${warnings.length} ${words.warnings}` : "");
    state.className = errors.length ? "error" : "muted";
    state.dataset.errors = String(errors.length);
  }

  // The steps of the text as it is now (the timeline above is the running version's).
  function showSteps(timeline) {
    const list = document.getElementById("live-steps");
    if (!timeline.length) return; // text with errors: keep the last steps that checked
    list.replaceChildren();
    for (const entry of timeline) {
      if (entry.kind !== "step") continue;
      const day = entry.day ? fill(words.day, { day: Math.round(entry.day * 10) / 10 }) : words.day0;
      const action = words.actions[entry.action] || entry.action;
      list.append(el("li", { "data-step": entry.id }, el("strong", {}, day),
        ` · ${entry.name || action}`, el("span", { class: "muted" }, " · ", el("code", {}, entry.at))));
    }
  }

  function span(doc, problem) {
    const line = doc.line(Math.min(Math.max(problem.line, 1), doc.lines));
    const from = line.from + Math.min(Math.max(problem.col - 1, 0), line.length);
    const rest = doc.sliceString(from, line.to);
    const word = rest.match(/^[^\s,\]}]+/);
    return { from, to: from + (word ? word[0].length : 0) };
  }

  function jump(line, col) {
    if (!view) return;
    const { from } = span(view.state.doc, { line, col });
    view.dispatch({ selection: { anchor: from }, scrollIntoView: true });
    view.focus();
  }

  async function check() {
    const mine = ++sequence;
    state.textContent = words.checking;
    let result;
    try {
      result = await call("POST", "/api/v1/playbooks/validate", { name: data.id, text: text(), lang: data.lang });
    } catch (e) {
      result = { status: 0, answer: {} };
    }
    if (mine !== sequence) return null; // a newer check is on its way
    if (result.status !== 200) {
      const reason = (result.answer.error && result.answer.error.reason) || String(result.status);
      const failed = { line: 1, col: 1, message: `${words.failed}: ${reason}`, hint: null };
      showProblems([failed], []);
      return { errors: [failed], warnings: [] };
    }
    showProblems(result.answer.errors, result.answer.warnings);
    showSteps(result.answer.timeline);
    return result.answer;
  }

  function diagnostics(doc, answer) {
    const list = [];
    for (const [items, severity] of [[answer.errors, "error"], [answer.warnings, "warning"]]) {
      for (const p of items) {
        const { from, to } = span(doc, p);
        list.push({
          from,
          to,
          severity,
          message: `${where(p)}: ${p.message}` + (p.hint ? `（${p.hint}）` : ""),
        });
      }
    }
    return list;
  }

  function startEditor() {
    if (!window.CM) {
      let timer = null;
      source.addEventListener("input", () => {
        clearTimeout(timer);
        timer = setTimeout(check, 500);
      });
      check();
      return;
    }
    const lint = CM.linter(async (current) => {
      const answer = await check();
      return answer ? diagnostics(current.state.doc, answer) : [];
    }, { delay: 500 });
    view = new CM.EditorView({
      doc: source.value,
      extensions: [CM.basicSetup, CM.yaml(), CM.lintGutter(), lint, CM.EditorView.lineWrapping],
      parent: document.getElementById("editor"),
    });
    document.getElementById("editor-card").classList.add("studio-ready");
    window.studio = { view, check };
  }

  function local(iso) {
    return iso.replace("T", " ").replace(/:\d\d([+-]\d\d:\d\d|Z)$/, " $1");
  }

  async function preview() {
    previewBox.replaceChildren(el("p", { class: "muted" }, words.previewing));
    const body = { name: data.id, text: text(), lang: data.lang };
    if (form.store.value) body.store = form.store.value;
    if (form.added_at.value) body.added_at = form.added_at.value;
    const { status, answer } = await call("POST", "/api/v1/playbooks/preview", body);
    previewBox.replaceChildren();
    if (status !== 200) {
      const reason = (answer.error && answer.error.reason) || String(status);
      previewBox.append(el("p", { class: "error" }, reason));
      return;
    }
    showProblems(answer.errors, answer.warnings);
    if (!answer.preview) {
      previewBox.append(el("p", { class: "error" }, words.fix_first));
      return;
    }
    const shown = answer.preview;
    previewBox.append(el("p", { class: "muted" },
      `${words.zone}: ${shown.zone} · ${words.added}: ${local(shown.added_at)} · ${words.enrolled}: ${local(shown.enrolled_at)}`));
    for (const step of shown.steps) {
      const box = el("div", { class: "preview-step", "data-step": step.id });
      const name = step.name || words.actions[step.action] || step.action;
      const notes = [step.immediate ? words.immediate : "", step.moved ? words.moved : ""].filter(Boolean);
      box.append(el("strong", {}, name));
      if (step.name) box.append(` · ${words.actions[step.action] || step.action}`);
      box.append(el("div", { class: "muted" },
        `${words.due}: ${local(step.due_local)}` + (notes.length ? ` · ${notes.join(" · ")}` : "") +
        ` · ${words.expires}: ${local(step.expires_local)}`));
      if (step.error) {
        box.append(el("p", { class: "error" }, `${words.cannot_render}: ${step.error}`));
      } else if (step.message !== null) {
        box.append(el("div", {}, step.to === "customer" ? words.to_customer : words.to_guide));
        box.append(el("pre", { "data-testid": "message" }, step.message));
      } else {
        box.append(el("div", { class: "muted" }, words.no_message));
      }
      previewBox.append(box);
    }
  }

  async function save() {
    saveState.className = "muted";
    saveState.textContent = words.saving;
    const body = { text: text() };
    if (data.version) body.base_version = data.version;
    const { status, answer } = await call("PUT", `/api/v1/playbooks/${encodeURIComponent(data.id)}`, body);
    if (status === 200) {
      saveState.className = "";
      saveState.textContent = answer.unchanged ? words.unchanged : fill(words.saved, answer);
      if (!answer.unchanged) setTimeout(() => window.location.reload(), 600);
      return;
    }
    saveState.className = "error";
    if (status === 422 && answer.errors) {
      saveState.textContent = words.refused;
      showProblems(answer.errors, []);
      if (view) view.dispatch(CM.setDiagnostics(view.state, diagnostics(view.state.doc, { errors: answer.errors, warnings: [] })));
      return;
    }
    saveState.textContent = (answer.error && answer.error.reason) || String(status);
  }

  document.getElementById("preview-button").addEventListener("click", preview);
  document.getElementById("save-button").addEventListener("click", save);
  startEditor();
})();
